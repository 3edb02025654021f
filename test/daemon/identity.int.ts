// Resource identity against real daemons and real files: one inode is one resource however many
// paths name it (hard links), and an inode match counts only while the held path still names it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { rpcError, serve } from '../helpers/protocol-serve.js';
import { UUID1, UUID2, cli, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
async function daemon(dir: string, id: string, extra: string[] = []): Promise<TestDaemon> {
  const d = await startDaemon({ stateDir: path.join(dir, `state-${id}`), lockspace: path.join(dir, 'lockspace'), hostId: id, extra });
  running.push(d);
  return d;
}
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function images(): { dir: string; disk: (name: string) => string } {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'images'));
  return {
    dir,
    disk: (name) => {
      const p = path.join(dir, 'images', name);
      if (!fs.existsSync(p)) fs.writeFileSync(p, 'image');
      return p;
    },
  };
}

function lockedVms(d: TestDaemon): string[] {
  const r = d.cli(['locks', '--json']);
  assert.is(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ vm: { uuid: string } }>).map((l) => l.vm.uuid);
}

test('two hard links named in one acquire are one resource: releasing one alias keeps the disk held', async () => {
  const c = images();
  const a = c.disk('a');
  const a2 = path.join(c.dir, 'images', 'a2');
  const a3 = path.join(c.dir, 'images', 'a3');
  fs.linkSync(a, a2);
  fs.linkSync(a, a3);
  const d = await daemon(c.dir, 'hv-a');
  const r = d.cli(['acquire', '--vm', UUID1, a, a2]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  // One lock file for the inode, not one per alias.
  assert.equal(fs.readdirSync(path.join(c.dir, 'lockspace')).filter((f) => !f.startsWith('.')), [sha256Hex(a)]);
  assert.is(d.cli(['acquire', '--vm', UUID2, a3]).code, 3);
  const rel = d.cli(['release', '--vm', UUID1, a2]);
  assert.is(rel.code, 0, rel.stderr);
  // Releasing by one alias released the inode's one resource: nothing of A's is left.
  assert.equal(lockedVms(d), []);
  // Taken again by A under one alias, then named by another alias in a later command: the same resource.
  assert.is(d.cli(['acquire', '--vm', UUID1, a]).code, 0);
  assert.match(d.cli(['acquire', '--vm', UUID1, a2]).stdout, 'already');
  const b = d.cli(['acquire', '--vm', UUID2, a3]);
  assert.is(b.code, 3, b.stdout + b.stderr);
  assert.equal(lockedVms(d), [UUID1]);
});

test('hard links across commands: releasing one alias of a disk held through two never frees the other', async () => {
  const c = images();
  const a = c.disk('a');
  const a2 = path.join(c.dir, 'images', 'a2');
  const a3 = path.join(c.dir, 'images', 'a3');
  fs.linkSync(a, a2);
  fs.linkSync(a, a3);
  const d = await daemon(c.dir, 'hv-a');
  assert.is(d.cli(['acquire', '--vm', UUID1, a]).code, 0);
  assert.is(d.cli(['acquire', '--vm', UUID1, a2]).code, 0);
  assert.is(d.cli(['release', '--vm', UUID1, a2]).code, 0);
  assert.is(d.cli(['acquire', '--vm', UUID2, a3]).code, 0, 'the inode is free once its one resource is released');
  assert.equal(lockedVms(d), [UUID2]);
  // And the restart folds the same identity back from the journal.
  await d.kill('SIGKILL');
  const again = await daemon(c.dir, 'hv-a');
  const r = again.cli(['acquire', '--vm', UUID1, a]);
  assert.is(r.code, 3, r.stdout + r.stderr);
});

test('a disk renamed under its lock is still that disk (same inode and birth time); a new file that reuses a deleted disk\'s inode is another disk', async () => {
  const c = images();
  const a = c.disk('a.qcow2');
  const z = path.join(c.dir, 'images', 'z.qcow2');
  assert.ok(fs.statSync(a).birthtimeMs > 0, 'this filesystem records birth times');
  const d = await daemon(c.dir, 'hv-a');
  assert.is(d.cli(['acquire', '--vm', UUID1, a]).code, 0);
  // Renamed while held (QEMU keeps writing through its descriptor): the new name is the held disk.
  fs.renameSync(a, z);
  const r = d.cli(['acquire', '--vm', UUID2, z]);
  assert.is(r.code, 3, `another VM must not get the renamed held disk: ${r.stdout}${r.stderr}`);
  assert.match(d.cli(['acquire', '--vm', UUID1, z]).stdout, 'already');
  assert.not.ok(fs.existsSync(path.join(c.dir, 'lockspace', sha256Hex(z))), 'no second lock file for the renamed disk');
  assert.equal(lockedVms(d), [UUID1]);
  // The journal keeps the birth time: after a SIGKILL and restart the renamed disk is still held.
  await d.kill('SIGKILL');
  const d2 = await daemon(c.dir, 'hv-a');
  assert.is(d2.cli(['acquire', '--vm', UUID2, z]).code, 3, 'the restarted daemon knows the renamed disk');
  // A new file that reuses a deleted held disk's inode (ext4 hands it out at once).
  const b = c.disk('b.qcow2');
  assert.is(d2.cli(['acquire', '--vm', UUID1, b]).code, 0);
  const ino = fs.statSync(b).ino;
  fs.rmSync(b);
  const y = c.disk('y.qcow2');
  if (fs.statSync(y).ino !== ino) {
    console.log(`  (the filesystem did not reuse inode ${ino} for y.qcow2; the rename case above covers the rule)`);
    return;
  }
  const other = d2.cli(['acquire', '--vm', UUID2, y]);
  assert.is(other.code, 0, `y.qcow2 is not the deleted b.qcow2: ${other.stdout}${other.stderr}`);
});

test('a start whose lockspace or naming differs from the held locks\' is refused in one line (exit 1); the same start with the old setting goes on', async () => {
  const c = images();
  const disk = c.disk('d.qcow2');
  const ls1 = path.join(c.dir, 'ls1');
  const stateDir = path.join(c.dir, 'state');
  const start = (lockspace: string) => startDaemon({ stateDir, lockspace, hostId: 'hv-a' });
  const d1 = await start(ls1);
  running.push(d1);
  assert.is(d1.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  assert.is((await d1.kill('SIGTERM')).code, 0);
  for (const [lockspace, now] of [
    [path.join(c.dir, 'ls2'), `file lockspace ${path.join(c.dir, 'ls2')}`],
    ['', 'direct mode'],
  ] as const) {
    const r = cli(['serve', '--state-dir', stateDir, '--socket', path.join(stateDir, 'vmlockd.sock'), '--host-id', 'hv-a', '--lockspace', lockspace]);
    assert.is(r.code, 1, `lockspace ${JSON.stringify(lockspace)}: ${r.stdout}${r.stderr}`);
    assert.not.match(r.stdout, 'listening on');
    const lines = r.stderr.trim().split('\n');
    assert.is(lines.length, 1, r.stderr);
    assert.match(lines[0]!, `disk ${disk}: held in file lockspace ${ls1}, this start names it in ${now}`);
    assert.match(lines[0]!, `--lockspace ${ls1}`);
  }
  // Nothing was taken under the new names, and the old setting still starts and re-takes the lock.
  assert.not.ok(fs.existsSync(path.join(c.dir, 'ls2', sha256Hex(disk))));
  const d2 = await start(ls1);
  running.push(d2);
  assert.is(d2.cli(['acquire', '--vm', UUID2, disk]).code, 3);
  assert.is(d2.cli(['release', '--vm', UUID1]).code, 0);
  assert.is((await d2.kill('SIGTERM')).code, 0);
  // With nothing held, the new lockspace is fine.
  const d3 = await start(path.join(c.dir, 'ls2'));
  running.push(d3);
  assert.is(d3.cli(['acquire', '--vm', UUID2, disk]).code, 0);
});

/** Block device nodes this machine has (loop devices), for the LVM naming test. */
function blockDevices(): string[] {
  return ['/dev/loop5', '/dev/loop6', '/dev/loop7', '/dev/loop4'].filter((p) => {
    try {
      return fs.statSync(p).isBlockDevice();
    } catch {
      return false;
    }
  });
}

test('lvm_lockspace_dir: /dev disks are named by LV UUID (lvs, as virtlockd), two paths of one LV on two hosts conflict, and an unreadable identity is refused', async () => {
  const devs = blockDevices();
  if (devs.length < 3) {
    console.log(`  SKIPPED: needs 3 block devices among /dev/loop4-7, found ${devs.length}`);
    return;
  }
  const [lvA, lvB, notLv] = devs as [string, string, string];
  const c = images();
  // A scripted lvs earlier on PATH: this machine has no device-mapper. It prints the recorded output
  // (libvirt's example UUID, two-space padded) for both paths of "one LV", and fails like lvs does
  // for a device that is not an LV.
  const bin = path.join(c.dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(
    path.join(bin, 'lvs'),
    `#!/bin/sh\nfor last; do :; done\ncase "$last" in\n  ${lvA}|${lvB}) printf '  06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky\\n' ;;\n  *) echo "  Volume group not found" >&2; exit 5 ;;\nesac\n`,
    { mode: 0o755 },
  );
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath}`;
  try {
    const lvmDir = path.join(c.dir, 'lvmvolumes');
    const conf = path.join(c.dir, 'vmlockd.conf');
    fs.writeFileSync(conf, `lvm_lockspace_dir = "${lvmDir}"\n`);
    const a = await daemon(c.dir, 'hv-a', ['--config', conf]);
    const b = await daemon(c.dir, 'hv-b', ['--config', conf]);
    const r = a.cli(['acquire', '--vm', UUID1, lvA]);
    assert.is(r.code, 0, r.stdout + r.stderr);
    assert.equal(fs.readdirSync(lvmDir).filter((n) => !n.startsWith('.')), ['06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky']);
    const locks = JSON.parse(a.cli(['locks', '--json']).stdout) as Array<{ kind: string; lockspace: string; disk: string }>;
    assert.equal(locks.map((l) => [l.kind, l.lockspace, l.disk]), [['lvm', lvmDir, lvA]]);
    // The same LV reached by another path on another host: the same lock file, so refused.
    const other = b.cli(['acquire', '--vm', UUID2, lvB]);
    assert.is(other.code, 3, other.stdout + other.stderr);
    // Not an LV and no SCSI lockspace: refused as bad input, no lock file anywhere for it.
    const refused = a.cli(['acquire', '--vm', UUID2, notLv]);
    assert.is(refused.code, 2, refused.stdout + refused.stderr);
    assert.match(refused.stderr, `block device ${notLv} has no identity vmlockd can read (no LV UUID from lvs)`);
    assert.not.ok(fs.existsSync(path.join(c.dir, 'lockspace', sha256Hex(notLv))));
    // Files outside /dev keep file-lockspace naming.
    assert.is(a.cli(['acquire', '--vm', UUID2, c.disk('plain.img')]).code, 0);
    assert.ok(fs.existsSync(path.join(c.dir, 'lockspace', sha256Hex(path.join(c.dir, 'images', 'plain.img')))));
    // Released by the path it was taken with.
    assert.is(a.cli(['release', '--vm', UUID1, lvA]).code, 0);
    assert.is(b.cli(['acquire', '--vm', UUID2, lvB]).code, 0);
  } finally {
    process.env.PATH = savedPath;
  }
});

test('who and generation resolve a hard link of a held disk as acquire does, and fail in one line (exit 1) when the lockspace is missing', async () => {
  const c = images();
  const a = c.disk('a');
  const a3 = path.join(c.dir, 'images', 'a3');
  fs.linkSync(a, a3);
  const lockspace = path.join(c.dir, 'lockspace');
  const d = await daemon(c.dir, 'hv-a');
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'web1', a]).code, 0);
  assert.is(d.cli(['acquire', '--vm', UUID2, a3]).code, 3, 'acquire refuses the link');
  const w = cli(['who', a3, '--lockspace', lockspace, '--json']);
  assert.is(w.code, 0, w.stderr);
  const answer = JSON.parse(w.stdout) as { state: string; canonical: string; path: string; holders: Array<{ owner?: { uuid: string } }> };
  assert.is(answer.state, 'exclusive', 'who must not say free for a hard link of a held disk');
  assert.is(answer.canonical, a);
  assert.is(answer.path, a3);
  assert.is(answer.holders[0]?.owner?.uuid, UUID1);
  const g = cli(['generation', a3, '--lockspace', lockspace]);
  assert.is(g.stdout.trim(), '1', g.stdout + g.stderr);
  for (const cmd of ['who', 'generation']) {
    const missing = cli([cmd, a, '--lockspace', path.join(c.dir, 'no-such-lockspace')]);
    assert.is(missing.code, 1, `${cmd}: ${missing.stdout}${missing.stderr}`);
    assert.is(missing.stdout, '');
    assert.is(missing.stderr.trim().split('\n').length, 1, missing.stderr);
    assert.match(missing.stderr, `cannot tell who holds ${a}: lockspace ${path.join(c.dir, 'no-such-lockspace')} cannot be read (ENOENT)`);
  }
});

test('acquire refuses a missing disk or a directory as bad input (exit 2) unless --create / "create": true says it will be created; invalid UTF-8 is refused', async () => {
  const c = images();
  const d = await daemon(c.dir, 'hv-a');
  const missing = path.join(c.dir, 'nonexistent-dir', 'foo.img');
  const r = d.cli(['acquire', '--vm', UUID1, missing]);
  assert.is(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, `disk ${missing} does not exist`);
  const dir = d.cli(['acquire', '--vm', UUID1, path.join(c.dir, 'images')]);
  assert.is(dir.code, 2, dir.stdout + dir.stderr);
  assert.match(dir.stderr, 'is a directory, not a disk image');
  assert.is(d.cli(['acquire', '--vm', UUID1, '--create', path.join(c.dir, 'images')]).code, 2, 'a directory is never a disk');
  assert.equal(lockedVms(d), [], 'no lock taken by a refused command');
  const created = d.cli(['acquire', '--vm', UUID1, '--create', missing]);
  assert.is(created.code, 0, created.stdout + created.stderr);
  // The JSON-lines door: the same rule, and "create": true as the explicit equivalent.
  const later = path.join(c.dir, 'images', 'later.img');
  const lines = [
    { type: 'started', vm: { uuid: UUID2 }, disks: [{ path: later }] },
    { type: 'started', vm: { uuid: UUID2 }, disks: [{ path: later, create: true }] },
    { type: 'started', vm: { uuid: UUID2 }, disks: [{ path: path.join(c.dir, 'images', 'bad-\uFFFD.img'), create: true }] },
  ];
  const ing = d.cli(['ingest', '-'], { input: lines.map((l) => JSON.stringify(l)).join('\n') + '\n' });
  const out = ing.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status: string; code?: string; message?: string });
  assert.is(out[0]!.code, 'VMLOCKD_ERR_BAD_INPUT', ing.stdout);
  assert.match(out[0]!.message!, `disk ${later} does not exist`);
  assert.is(out[1]!.status, 'ok', ing.stdout);
  assert.is(out[2]!.code, 'VMLOCKD_ERR_BAD_INPUT', ing.stdout);
  assert.match(out[2]!.message!, 'U+FFFD');
  // Releasing a disk that has gone since is still allowed.
  fs.rmSync(path.join(c.dir, 'nonexistent-dir'), { recursive: true, force: true });
  assert.is(d.cli(['release', '--vm', UUID1, missing]).code, 0);
});

test('a lone UTF-16 surrogate (a JSON "\\ud800" escape): in a VM name it is journaled as U+FFFD and the chain verifies; in a disk path it is refused and takes no lock', async () => {
  const c = images();
  const d = await daemon(c.dir, 'h1');
  const disk = c.disk('named.img');
  // Written by hand: JSON.stringify would never produce a lone surrogate escape from our side.
  const lines = [
    `{"type":"started","vm":{"uuid":"${UUID1}","name":"bad\\ud800x"},"disks":[{"path":${JSON.stringify(disk)}}]}`,
    `{"type":"started","vm":{"uuid":"${UUID2}"},"disks":[{"path":${JSON.stringify(path.join(c.dir, 'images', 'x')).slice(0, -1)}\\udc00.img","create":true}]}`,
  ];
  const ing = d.cli(['ingest', '-'], { input: lines.join('\n') + '\n' });
  const out = ing.stdout.trim().split('\n').map((l) => JSON.parse(l) as { status: string; code?: string; message?: string });
  assert.is(out[0]!.status, 'ok', ing.stdout + ing.stderr);
  assert.is(out[1]!.code, 'VMLOCKD_ERR_BAD_INPUT', ing.stdout);
  assert.match(out[1]!.message!, 'lone UTF-16 surrogate', out[1]!.message);
  assert.equal(lockedVms(d), [UUID1], 'the refused path took no lock');
  // Before, SQLite stored the name's surrogate as other bytes than the hash covered: `journal
  // verify` called the fact altered and publication stopped at it for good.
  const v = cli(['journal', 'verify', '--state-dir', path.join(c.dir, 'state-h1')]);
  assert.is(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, 'hash chain intact');
  const locks = d.cli(['locks', '--json']);
  assert.match(locks.stdout, 'bad\uFFFDx');
});

test('one image in direct lockspace (virtlockd protocol) and by path (API) is one resource, whichever takes it first', async () => {
  for (const protocolFirst of [true, false]) {
    const c = images();
    const img = c.disk('direct3.img');
    const { daemon: d, socket } = await serve(c.dir);
    running.push(d);
    const client = await LockClient.connect(socket);
    try {
      await client.register({ uuid: UUID1, name: 'vm-proto', id: 1, pid: 4242 });
      if (protocolFirst) {
        await client.acquire('', img, { autocreate: true });
        const api = d.cli(['acquire', '--vm', UUID2, img]);
        assert.is(api.code, 3, `the API VM must not get a disk the protocol VM holds: ${api.stdout}${api.stderr}`);
      } else {
        assert.is(d.cli(['acquire', '--vm', UUID2, img]).code, 0);
        const e = await rpcError(client.acquire('', img, { autocreate: true }));
        assert.ok(e, 'the protocol VM must not get a disk the API VM holds');
      }
      assert.equal(lockedVms(d), [protocolFirst ? UUID1 : UUID2]);
    } finally {
      await client.close();
    }
    await d.kill('SIGKILL');
  }
});

test('lvm_lockspace_dir: a symlink or device node outside /dev to a held LV is that LV, in either order', async () => {
  const devs = blockDevices();
  if (devs.length < 1) {
    console.log('  SKIPPED: needs a block device among /dev/loop4-7');
    return;
  }
  const lv = devs[0]!;
  const c = images();
  const bin = path.join(c.dir, 'bin');
  fs.mkdirSync(bin);
  // The scripted lvs answers for the /dev path only, as real lvs names devices under /dev.
  fs.writeFileSync(path.join(bin, 'lvs'), `#!/bin/sh\nfor last; do :; done\ncase "$last" in\n  ${lv}) printf '  06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky\\n' ;;\n  *) echo "  Volume group not found" >&2; exit 5 ;;\nesac\n`, { mode: 0o755 });
  const link = path.join(c.dir, 'images', 'lo.link');
  fs.symlinkSync(lv, link);
  const node = path.join(c.dir, 'images', 'lo.node');
  const st = fs.statSync(lv);
  const mknod = spawnSync('mknod', [node, 'b', String(Math.floor(st.rdev / 256) & 0xfff), String((st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00))]);
  const haveNode = mknod.status === 0 && fs.statSync(node).isBlockDevice() && fs.statSync(node).rdev === st.rdev;
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath}`;
  try {
    const lvmDir = path.join(c.dir, 'lvmvolumes');
    const conf = path.join(c.dir, 'vmlockd.conf');
    fs.writeFileSync(conf, `lvm_lockspace_dir = "${lvmDir}"\n`);
    const d = await daemon(c.dir, 'hv-a', ['--config', conf]);
    const others = haveNode ? [link, node] : [link];
    for (const other of others) {
      // /dev path first, then the alias outside /dev.
      assert.is(d.cli(['acquire', '--vm', UUID1, lv]).code, 0);
      const r = d.cli(['acquire', '--vm', UUID2, other]);
      assert.is(r.code, 3, `${other}: ${r.stdout}${r.stderr}`);
      assert.equal(lockedVms(d), [UUID1]);
      assert.is(d.cli(['release', '--vm', UUID1]).code, 0);
      // The alias first: named by the LV's identity too, so the /dev path is refused.
      const first = d.cli(['acquire', '--vm', UUID2, other]);
      if (other === link) {
        assert.is(first.code, 0, first.stdout + first.stderr);
        assert.is(d.cli(['acquire', '--vm', UUID1, lv]).code, 3);
        assert.equal(lockedVms(d), [UUID2]);
        assert.is(d.cli(['release', '--vm', UUID2]).code, 0);
      } else {
        // A node outside /dev whose identity lvs cannot read is refused, never named by its path.
        assert.is(first.code, 2, first.stdout + first.stderr);
      }
    }
    assert.not.ok(fs.existsSync(path.join(c.dir, 'lockspace', sha256Hex(lv))), 'no file-lockspace lock for the LV');
    assert.not.ok(fs.existsSync(path.join(c.dir, 'lockspace', sha256Hex(node))), 'no file-lockspace lock for the node');
    if (!haveNode) console.log('  (mknod failed: the device-node case was not run)');
  } finally {
    process.env.PATH = savedPath;
  }
});

test('a direct lease (virtlockd protocol) shared with an API VM on one image is released by its RELEASE, not only at disconnect', async () => {
  const c = images();
  const img = c.disk('shared.img');
  const { daemon: d, socket } = await serve(c.dir);
  running.push(d);
  assert.is(d.cli(['acquire', '--vm', UUID2, '--shared', img]).code, 0);
  const client = await LockClient.connect(socket);
  try {
    await client.register({ uuid: UUID1, name: 'vm-proto', id: 1, pid: 4242 });
    await client.acquire('', img, { shared: true, autocreate: true });
    assert.equal(lockedVms(d).sort(), [UUID1, UUID2].sort());
    await client.release('', img);
    assert.equal(lockedVms(d), [UUID2], 'the protocol VM released its share; the API VM keeps its own');
  } finally {
    await client.close();
  }
});

test('a protocol RELEASE frees the lease it took, even when its name has since become a link of another held image', async () => {
  const c = images();
  const m = c.disk('m.img');
  const p = c.disk('p.img');
  const m2 = path.join(path.dirname(m), 'm2.img');
  fs.linkSync(m, m2);
  const { daemon: d, socket } = await serve(c.dir);
  running.push(d);
  assert.is(d.cli(['acquire', '--vm', UUID2, '--shared', m]).code, 0);
  const client = await LockClient.connect(socket);
  try {
    await client.register({ uuid: UUID1, name: 'vm-proto', id: 1, pid: 4242 });
    await client.acquire('', p, { autocreate: true });
    await client.acquire('', m2, { shared: true, autocreate: true }); // the same image as m: m's resource
    fs.rmSync(m2);
    fs.linkSync(p, m2); // the name now reaches p
    await client.release('', m2);
    // The share of m went; the exclusive lease of p stays with the protocol VM.
    assert.is(d.cli(['acquire', '--vm', '33333333-3333-4333-8333-333333333333', p]).code, 3, 'p is still the protocol VM\'s');
    const locks = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string }; disk: string }>;
    assert.equal(locks.filter((l) => l.vm.uuid === UUID1).map((l) => path.basename(l.disk)), ['p.img']);
  } finally {
    await client.close();
  }
});

test.run();
