// A start in a new boot (issue 11.3): locks whose owner no live process stands for (control API,
// JSON lines) are released and journaled, not re-taken forever; after_reboot = "retake" keeps them.
// The reboot is simulated with VMLOCKD_BOOT_ID_FILE (the boot id the daemon reads).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { TestDaemon, UUID1, UUID2, UUID3, tmpdir, until } from '../helpers/daemon.js';
import { RemoteClient } from '../helpers/remote-client.js';

const test = suite('a start after a reboot');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

async function scenario(opts: { conf?: string; reboot: boolean }) {
  const root = tmpdir('vmlockd-reboot-');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const [a, b] = ['a', 'b'].map((n) => path.join(images, `${n}.img`));
  for (const d of [a!, b!]) fs.writeFileSync(d, '');
  const bootFile = path.join(root, 'boot_id');
  fs.writeFileSync(bootFile, '11111111-aaaa-4aaa-8aaa-111111111111\n');
  const extra = opts.conf ? ['--config', opts.conf] : [];
  const opt = { stateDir: path.join(root, 'state'), lockspace: path.join(root, 'lockspace'), hostId: 'hv-boot', extra, env: { VMLOCKD_BOOT_ID_FILE: bootFile } };
  const d1 = new TestDaemon(opt);
  running.push(await d1.start());
  assert.is(d1.cli(['acquire', '--vm', UUID1, a!]).code, 0);
  const ev = d1.cli(['ingest', '-'], { input: JSON.stringify({ type: 'started', vm: { uuid: UUID2 }, disks: [{ path: b! }] }) + '\n' });
  assert.is(ev.code, 0, ev.stderr + ev.stdout);
  await d1.kill('SIGKILL');
  if (opts.reboot) fs.writeFileSync(bootFile, '22222222-bbbb-4bbb-8bbb-222222222222\n');
  const d2 = new TestDaemon(opt);
  running.push(await d2.start());
  const locks = JSON.parse(d2.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string } }>;
  const facts = JSON.parse(d2.cli(['audit', '--kind', 'LockReleased,DaemonStarted', '--json', '--limit', '0']).stdout) as Array<{ seq: number; kind: string; payload: Record<string, any> }>;
  // The other host's view: can it take the disks?
  const other = new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace: opt.lockspace, hostId: 'hv-other', socket: path.join(root, 'b.sock') });
  running.push(await other.start());
  const free = [a!, b!].filter((d) => other.cli(['check', '--vm', UUID3, d]).code === 0);
  return { locks, facts, free, a: a!, b: b! };
}

test('another boot id: control-API and JSON-lines locks are released and journaled; another host may take the disks', async () => {
  const r = await scenario({ reboot: true });
  assert.equal(r.locks, []);
  const rel = r.facts.filter((f) => f.kind === 'LockReleased' && f.payload.source === 'reboot');
  assert.equal(rel.map((f) => f.payload.owner.uuid).sort(), [UUID1, UUID2].sort());
  assert.match(rel[0]!.payload.reason, 'the host rebooted');
  const starts = r.facts.filter((f) => f.kind === 'DaemonStarted');
  assert.is(starts.at(-1)!.payload.bootId, '22222222-bbbb-4bbb-8bbb-222222222222');
  assert.equal(r.free.sort(), [r.a, r.b].sort());
  // The start reads in order: DaemonStarted first, then what the start released (issue 11, item 5).
  const start = r.facts.findIndex((f) => f.kind === 'DaemonStarted' && f.payload.bootId === '22222222-bbbb-4bbb-8bbb-222222222222');
  const releases = r.facts.map((f, i) => (f.kind === 'LockReleased' && f.payload.source === 'reboot' ? i : -1)).filter((i) => i >= 0);
  assert.ok(start >= 0 && releases.every((i) => i > start), `DaemonStarted before the reboot releases: ${r.facts.map((f) => `${f.seq}:${f.kind}`).join(' ')}`);
  assert.ok(releases.every((i) => r.facts[i]!.seq > r.facts[start]!.seq), 'by seq too');
});

test('the same boot: every lock is re-taken', async () => {
  const r = await scenario({ reboot: false });
  assert.is(r.locks.length, 2);
  assert.equal(r.free, []);
});

test('after_reboot = "retake": locks are re-taken after a reboot too', async () => {
  const conf = path.join(tmpdir(), 'vmlockd.conf');
  fs.writeFileSync(conf, 'after_reboot = "retake"\n');
  const r = await scenario({ reboot: true, conf });
  assert.is(r.locks.length, 2);
  assert.equal(r.free, []);
});

for (const reboot of [false, true]) {
test(reboot
  ? 'another boot id: every protocol lock is released (an owner whose pid and start time check out too: no process outlives a reboot); control-API locks are released'
  : 'the same boot (a restart): protocol locks are kept for a live owner and released for a dead one; control-API locks are re-taken', async () => {
  const root = tmpdir('vmlockd-reboot-proto-');
  const ls = path.join(root, 'leases');
  const disk = path.join(root, 'api.img');
  fs.writeFileSync(disk, '');
  const bootFile = path.join(root, 'boot_id');
  fs.writeFileSync(bootFile, '11111111-aaaa-4aaa-8aaa-111111111111\n');
  const vsock = path.join(root, 'run', 'virtlockd-sock');
  const opt = { stateDir: path.join(root, 'state'), lockspace: path.join(root, 'lockspace'), hostId: 'hv-boot-p', extra: ['--virtlockd-socket', vsock], env: { VMLOCKD_BOOT_ID_FILE: bootFile } };
  const d1 = new TestDaemon(opt);
  running.push(await d1.start());
  await until('the virtlockd socket', () => fs.existsSync(vsock));
  // Two QEMU-like owners, each registering its own pid on its own connection, as QEMU does.
  const live = await RemoteClient.spawn(vsock);
  const dead = await RemoteClient.spawn(vsock);
  try {
    const lv = await LockClient.connect(vsock);
    await lv.createLockspace(ls);
    await lv.close();
    for (const [q, uuid, name] of [[live, UUID1, 'live'], [dead, UUID2, 'dead']] as const) {
      assert.equal(await q.do({ op: 'register', uuid, name: `vm-${name}`, pid: 'self' }), { ok: true });
      assert.equal(await q.do({ op: 'acquire', path: ls, name: `${name}-disk`, autocreate: true }), { ok: true });
    }
    assert.is(d1.cli(['acquire', '--vm', UUID3, disk]).code, 0);
    await d1.kill('SIGKILL');
    // One owner's process is gone, the other still runs (its pid and start time check out). After a
    // real reboot none would; the simulated one (a new boot id) shows the live-looking one is not trusted.
    await dead.kill();
    if (reboot) fs.writeFileSync(bootFile, '22222222-bbbb-4bbb-8bbb-222222222222\n');
    const d2 = new TestDaemon(opt);
    running.push(await d2.start());
    const held = () => (JSON.parse(d2.cli(['locks', '--json']).stdout) as Array<{ name: string; vm: { uuid: string } }>).map((l) => `${l.vm.uuid}:${l.name}`).sort();
    const facts = () => JSON.parse(d2.cli(['audit', '--json', '--limit', '0']).stdout) as Array<{ seq: number; kind: string; payload: Record<string, any> }>;
    const started = facts().filter((f) => f.kind === 'DaemonStarted').at(-1)!;
    if (reboot) {
      assert.equal(held(), [], 'no protocol or control-API lock survives a reboot');
      const rel = facts().filter((f) => f.kind === 'LockReleased' && f.seq > started.seq && f.payload.source === 'reboot');
      assert.equal(rel.map((f) => f.payload.owner.uuid).sort(), [UUID1, UUID2, UUID3].sort());
      assert.match(JSON.stringify(rel), 'was a process of the previous boot');
      return;
    }
    await until('the dead owner\'s protocol lock released', () => !held().some((h) => h.startsWith(UUID2)), 20_000);
    assert.equal(held().filter((h) => !h.startsWith(UUID3)), [`${UUID1}:live-disk`], "only the live owner's protocol lock is held");
    assert.ok(held().some((h) => h.startsWith(UUID3)), 'the control-API lock is re-taken in the same boot');
    const gone = facts().filter((f) => f.kind === 'OwnerGone' && f.seq > started.seq);
    assert.equal(gone.map((f) => [f.payload.owner.uuid, f.payload.pid, f.payload.released]), [[UUID2, dead.pid, 1]]);
    // Still the live owner's: it releases on its own connection, which vmlockd kept watching.
    await live.kill();
    await until('the live owner\'s lock released once it exits', () => !held().some((h) => h.startsWith(UUID1)), 20_000);
  } finally {
    await live.kill();
    await dead.kill();
  }
});
}

test.run();
