// Real daemons, real OFD locks, real signals. Each test has its own state dirs and lockspace.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/engine/native.js';
import { sha256Hex } from '../../src/engine/resolve.js';
import { UUID1, UUID2, UUID3, cli, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { journalFacts } from '../helpers/settled.js';
import { tracked } from '../helpers/tracked.js';
import { cluster, type Cluster } from '../helpers/cluster-dir.js';

function host(c: Cluster, id: string): Promise<TestDaemon> {
  return startDaemon({ stateDir: path.join(c.dir, `state-${id}`), lockspace: c.lockspace, hostId: id });
}

/** Who holds byte 0 of a lock file, as the kernel sees it from a fresh description. */
function kernelHolder(file: string): string | null {
  const fd = fs.openSync(file, 'r');
  try {
    return native.ofdGetLk(fd, 'write', 0, 1)?.type ?? null;
  } finally {
    fs.closeSync(fd);
  }
}


const { running, track } = tracked(test);
const facts = journalFacts;

test('two daemons on one lockspace exclude each other, and a release lets the other in', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const b = await track(host(c, 'hv-b'));
  const disk = c.disk('a.qcow2');
  const r1 = a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]);
  assert.is(r1.code, 0, r1.stderr);
  assert.match(r1.stdout, `acquired ${disk}`);
  const r2 = b.cli(['acquire', '--vm', UUID2, '--name', 'web2', disk]);
  assert.is(r2.code, 3, r2.stdout + r2.stderr);
  assert.match(r2.stderr, `disk ${disk} is held exclusively`);
  const r3 = a.cli(['release', '--vm', UUID1]);
  assert.is(r3.code, 0, r3.stderr);
  assert.is(b.cli(['acquire', '--vm', UUID2, disk]).code, 0);
  assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 3);
});

test('two VMs on one daemon exclude each other; the refusal names the holder VM and host', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const disk = c.disk('a.qcow2');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  const r = a.cli(['acquire', '--vm', UUID2, '--name', 'web2', disk]);
  assert.is(r.code, 3);
  assert.match(r.stderr, `disk ${disk} is held exclusively by VM web1 (uuid ${UUID1}) on host hv-a since`);
  const refused = facts(a.opts.stateDir, 'LockRefused');
  assert.is(refused.length, 1);
  assert.is(refused[0]!.payload.holder.owner.uuid, UUID1);
});

test('shared locks coexist across VMs and hosts and block an exclusive one', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const b = await track(host(c, 'hv-b'));
  const disk = c.disk('shared.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--shared', disk]).code, 0);
  assert.is(a.cli(['acquire', '--vm', UUID2, '--shared', disk]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID3, '--shared', disk]).code, 0);
  assert.is(b.cli(['acquire', '--vm', '44444444-4444-4444-8444-444444444444', disk]).code, 3);
  assert.is(a.cli(['acquire', '--vm', '55555555-5555-4555-8555-555555555555', disk]).code, 3);
  // One shared holder leaving keeps the kernel lock for the others on that host.
  assert.is(a.cli(['release', '--vm', UUID1]).code, 0);
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(disk))), 'read');
  assert.is(b.cli(['acquire', '--vm', '44444444-4444-4444-8444-444444444444', disk]).code, 3);
});

test('one file under another name (symlink, //, ..) is the same resource and is refused', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const b = await track(host(c, 'hv-b'));
  const disk = c.disk('a.qcow2');
  const link = path.join(c.dir, 'link.qcow2');
  fs.symlinkSync(disk, link);
  assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  for (const alias of [link, disk.replace('/images/', '//images//'), path.join(c.dir, 'images', '..', 'images', 'a.qcow2').replace('/images/a', '/images/../images/a')]) {
    const same = a.cli(['acquire', '--vm', UUID2, alias]);
    assert.is(same.code, 3, `${alias}: ${same.stdout}${same.stderr}`);
    assert.is(b.cli(['acquire', '--vm', UUID3, alias]).code, 3, alias);
  }
  // A hard link has no path rule in common with the original: the (dev, inode) check catches it.
  const hard = path.join(c.dir, 'hard.qcow2');
  fs.linkSync(disk, hard);
  assert.is(a.cli(['acquire', '--vm', UUID2, hard]).code, 3);
  // The lock file is named after the canonical path, so every host agrees on it; mode 0600.
  const lockFile = path.join(c.lockspace, sha256Hex(disk));
  assert.is(fs.statSync(lockFile).mode & 0o777, 0o600);
  assert.is(fs.readdirSync(c.lockspace).filter((f) => !f.startsWith('.')).length, 1);
});

test('"acquired" is answered only once the kernel lock is held and its fact is journaled (invariant 1)', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const disk = c.disk('a.qcow2');
  const r = a.cli(['acquire', '--vm', UUID1, disk, '--json']);
  assert.is(r.code, 0);
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(disk))), 'write');
  const acquired = facts(a.opts.stateDir, 'LockAcquired');
  assert.is(acquired.length, 1);
  assert.is(acquired[0]!.payload.disk, disk);
});

test('an all-or-nothing acquire that is refused for one disk takes none of them', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const b = await track(host(c, 'hv-b'));
  const d1 = c.disk('one.img');
  const d2 = c.disk('two.img');
  assert.is(b.cli(['acquire', '--vm', UUID2, d2]).code, 0);
  assert.is(a.cli(['acquire', '--vm', UUID1, d1, d2]).code, 3);
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(d1))), null);
  assert.equal(JSON.parse(a.cli(['locks', '--json']).stdout), []);
});

test('SIGKILL then restart: the daemon re-takes every lock it held (journal: Reacquired)', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const d1 = c.disk('a.img');
  const d2 = c.disk('b.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, d1]).code, 0);
  assert.is(a.cli(['acquire', '--vm', UUID2, '--shared', d2]).code, 0);
  await a.kill('SIGKILL');
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(d1))), null, 'the kernel drops the locks of a dead process');
  await a.start();
  running.push(a);
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(d1))), 'write');
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(d2))), 'read');
  const re = facts(a.opts.stateDir, 'Reacquired');
  assert.equal(re.map((f) => f.payload.disk).sort(), [d1, d2].sort());
  const locks = JSON.parse(a.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
  assert.is(locks.length, 2);
  const b = await track(host(c, 'hv-b'));
  assert.is(b.cli(['acquire', '--vm', UUID3, d1]).code, 3);
});

test('SIGKILL while the acquisitions are only in the staging file: the restart moves them into SQLite and re-takes the locks', async () => {
  const c = cluster();
  // Staged facts wait an hour for SQLite, so everything after start-up is only in journal.db-stage.
  process.env.VMLOCKD_JOURNAL_FLUSH_MS = '3600000';
  let a: TestDaemon;
  try {
    a = await track(host(c, 'hv-a'));
  } finally {
    delete process.env.VMLOCKD_JOURNAL_FLUSH_MS;
  }
  const d1 = c.disk('a.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'staged', d1]).code, 0);
  assert.equal(facts(a.opts.stateDir, 'LockAcquired'), [], 'acknowledged, but not yet in SQLite');
  assert.ok(fs.statSync(path.join(a.opts.stateDir, 'journal.db-stage')).size > 0);
  await a.kill('SIGKILL');
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(d1))), null);
  await a.start();
  running.push(a);
  assert.is(kernelHolder(path.join(c.lockspace, sha256Hex(d1))), 'write', 're-taken from the staged fact');
  assert.equal(facts(a.opts.stateDir, 'LockAcquired').map((f) => f.payload.disk), [d1]);
  assert.equal(facts(a.opts.stateDir, 'Reacquired').map((f) => f.payload.disk), [d1]);
});

test('VMLOCKD_JOURNAL_FLUSH_MS that is not a whole number of milliseconds stops the start with a message naming it', async () => {
  const c = cluster();
  const r = cli(['serve', '--state-dir', path.join(c.dir, 'state'), '--lockspace', c.lockspace, '--socket', path.join(c.dir, 'd.sock')], { env: { VMLOCKD_JOURNAL_FLUSH_MS: 'soon' } });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, 'VMLOCKD_JOURNAL_FLUSH_MS must be a whole number of milliseconds');
});

test('a lock another host took while the daemon was down becomes LeaseLost, loudly, and is not stolen back', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const b = await track(host(c, 'hv-b'));
  const disk = c.disk('a.img');
  const kept = c.disk('kept.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk, kept]).code, 0);
  await a.kill('SIGKILL');
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'intruder', disk]).code, 0);
  await a.start();
  running.push(a);
  assert.match(a.stderr, `LEASE LOST: disk ${disk} of VM web1`);
  const lost = facts(a.opts.stateDir, 'LeaseLost');
  assert.is(lost.length, 1);
  assert.is(lost[0]!.payload.disk, disk);
  assert.is(lost[0]!.payload.holder.mode, 'exclusive');
  const locks = JSON.parse(a.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
  assert.equal(locks.map((l) => l.disk), [kept]);
  // B still holds it: A did not steal it back.
  assert.is(a.cli(['acquire', '--vm', UUID3, disk]).code, 3);
});

// review23a: another host took the disk while this daemon was down and released it again before the
// restart. The lock file is free, so the re-take succeeded and said nothing: the VM that kept running
// here had shared its disk with another VM in the gap. The record's generation proves the intrusion.
test('a lock another host took and released while the daemon was down is LeaseLost, loudly, then taken again', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const b = await track(host(c, 'hv-b'));
  const disk = c.disk('a.img');
  const kept = c.disk('kept.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk, kept]).code, 0);
  await a.kill('SIGKILL');
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'intruder', disk]).code, 0);
  assert.is(b.cli(['release', '--vm', UUID2, disk]).code, 0);
  await a.start();
  running.push(a);
  assert.match(a.stderr, `LEASE LOST: disk ${disk} of VM web1`);
  const lost = facts(a.opts.stateDir, 'LeaseLost');
  assert.is(lost.length, 1, JSON.stringify(lost));
  assert.is(lost[0]!.payload.disk, disk);
  assert.is(lost[0]!.payload.holder.host, 'hv-b');
  assert.is(lost[0]!.payload.holder.owner.uuid, UUID2);
  assert.match(lost[0]!.payload.reason, 'released');
  // The VM still runs here: the disk is taken again for it, under a generation above the intruder's.
  const again = facts(a.opts.stateDir, 'Reacquired');
  assert.equal(again.map((f) => f.payload.disk).sort(), [disk, kept].sort());
  const ofDisk = again.find((f) => f.payload.disk === disk)!;
  assert.ok(ofDisk.payload.generation > lost[0]!.payload.holder.generation, JSON.stringify({ again: ofDisk.payload, lost: lost[0]!.payload }));
  assert.is(b.cli(['acquire', '--vm', UUID2, disk]).code, 3);
  // The kept disk nobody touched is no loss.
  assert.not.match(a.stderr, `LEASE LOST: disk ${kept}`);
});

test('a restart after a SIGKILL re-takes its own locks without a LeaseLost when nobody came between', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const disk = c.disk('a.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  await a.kill('SIGKILL');
  await a.start();
  running.push(a);
  assert.is(a.cli(['release', '--vm', UUID1, disk]).code, 0);
  assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  await a.kill('SIGKILL');
  await a.start();
  running.push(a);
  assert.equal(facts(a.opts.stateDir, 'LeaseLost'), []);
  assert.is(facts(a.opts.stateDir, 'Reacquired').length, 2);
});

test('SIGTERM exits 0 within 5 s, journals DaemonStopped, and the next start re-takes the locks', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const disk = c.disk('a.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  const t0 = Date.now();
  const exit = await a.kill('SIGTERM');
  assert.ok(Date.now() - t0 < 5000, `stopped in ${Date.now() - t0} ms`);
  assert.equal(exit, { code: 0, signal: null });
  const stopped = facts(a.opts.stateDir, 'DaemonStopped');
  assert.is(stopped.length, 1);
  assert.is(stopped[0]!.payload.held, 1);
  assert.not.ok(fs.existsSync(a.socket), 'socket removed');
  await a.start();
  running.push(a);
  assert.is(facts(a.opts.stateDir, 'Reacquired').length, 1);
});

test('malformed input gets an error naming the field, is journaled, and changes no lock', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const disk = c.disk('a.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  const before = a.cli(['locks', '--json']).stdout;
  const lines = [
    '{not json',
    JSON.stringify({ type: 'exploded', vm: { uuid: UUID2 }, disks: [] }),
    JSON.stringify({ type: 'started', vm: { uuid: 'not-a-uuid' }, disks: [{ path: disk }] }),
    JSON.stringify({ type: 'started', vm: { uuid: UUID2 }, disks: [{ path: 'relative.img' }] }),
    JSON.stringify({ type: 'started', vm: { uuid: UUID2 }, disks: [{ path: disk, readonly: 'yes' }] }),
    JSON.stringify({ type: 'stopped', vm: { uuid: UUID1 }, at: 'yesterday' }),
    JSON.stringify({ type: 'started', vm: { uuid: UUID2 } }),
  ];
  const r = a.cli(['ingest', '-'], { input: lines.join('\n') + '\n' });
  assert.is(r.code, 2, r.stdout + r.stderr);
  const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.is(out.length, lines.length);
  const messages = out.map((o) => o.message as string);
  assert.ok(out.every((o) => o.status === 'error' && o.code === 'VMLOCKD_ERR_BAD_INPUT'), r.stdout);
  assert.match(messages[0]!, 'not valid JSON');
  assert.match(messages[1]!, 'type must be one of');
  assert.match(messages[2]!, 'vm.uuid must be a UUID');
  assert.match(messages[3]!, 'disks[0].path must be an absolute path');
  assert.match(messages[4]!, 'disks[0].readonly must be true or false');
  assert.match(messages[5]!, 'at must be an ISO-8601 time');
  assert.match(messages[6]!, 'disks is required');
  assert.is(a.cli(['locks', '--json']).stdout, before);
  assert.is(facts(a.opts.stateDir, 'InputRejected').length, lines.length);
  // The CLI refuses bad arguments itself, with exit 2.
  const bad = a.cli(['acquire', '--vm', 'nope', disk]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, '--vm must be a UUID');
  assert.is(a.cli(['acquire', '--vm', UUID2, 'relative/path.img']).code, 2);
});

test('ingest applies events in order: start acquires, pause keeps, stop releases, one result per line', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const d1 = c.disk('a.img');
  const d2 = c.disk('b.img');
  const vm = { uuid: UUID1, name: 'web1' };
  const lines = [
    { type: 'started', vm, disks: [{ path: d1 }, { path: d2, shareable: true }, { path: '/cdrom.iso', readonly: true }] },
    { type: 'suspended', vm },
    { type: 'started', vm: { uuid: UUID2, name: 'web2' }, disks: [{ path: d1 }] },
    { type: 'disk_detached', vm, disks: [{ path: d2 }] },
    { type: 'stopped', vm },
    { type: 'started', vm: { uuid: UUID2, name: 'web2' }, disks: [{ path: d1 }] },
  ].map((l) => JSON.stringify(l));
  const r = a.cli(['ingest', '-'], { input: lines.join('\n') });
  const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(out.map((o) => o.status), ['ok', 'ok', 'refused', 'ok', 'ok', 'ok']);
  assert.equal(out[0].acquired.map((d: { path: string; mode: string }) => [d.path, d.mode]), [[d1, 'exclusive'], [d2, 'shared']]);
  assert.equal(out[3].released.map((d: { path: string }) => d.path), [d2]);
  assert.is(r.code, 3);
  const locks = JSON.parse(a.cli(['locks', '--json']).stdout) as Array<{ disk: string; vm: { uuid: string } }>;
  assert.equal(locks.map((l) => [l.disk, l.vm.uuid]), [[d1, UUID2]]);
});

test('a second daemon on the same state directory refuses to start and names the pid holding it', async () => {
  const c = cluster();
  const a = await track(host(c, 'hv-a'));
  const r = cli(['serve', '--state-dir', a.opts.stateDir, '--socket', path.join(c.dir, 'other.sock'), '--lockspace', c.lockspace]);
  assert.is(r.code, 1);
  assert.match(r.stderr, `another vmlockd (pid ${a.proc!.pid}) is already running on state directory`);
});

test('direct mode (--lockspace "") locks byte 0 of the image itself and never the bytes QEMU uses', async () => {
  const dir = tmpdir();
  const disk = path.join(dir, 'direct.img');
  fs.writeFileSync(disk, Buffer.alloc(4096));
  const a = await track(startDaemon({ stateDir: path.join(dir, 'state'), lockspace: '', hostId: 'hv-a' }));
  assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  const fd = fs.openSync(disk, 'r');
  try {
    assert.equal(native.ofdGetLk(fd, 'write', 0, 1), { type: 'write', start: 0, len: 1, pid: -1 });
    assert.is(native.ofdGetLk(fd, 'write', 100, 200), null, 'QEMU bytes 100+ and 200+ stay free');
  } finally {
    fs.closeSync(fd);
  }
  const missing = a.cli(['acquire', '--vm', UUID2, path.join(dir, 'nope.img')]);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, 'does not exist');
});

test('metrics_address serves Prometheus metrics: locks held and facts by kind', async () => {
  const c = cluster();
  const port = 20000 + Math.floor(Math.random() * 20000);
  const a = await track(startDaemon({ stateDir: path.join(c.dir, 'state'), lockspace: c.lockspace, hostId: 'hv-m', extra: ['--metrics-address', `127.0.0.1:${port}`] }));
  assert.is(a.cli(['acquire', '--vm', UUID1, c.disk('a.img')]).code, 0);
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(text, /^vmlockd_locks_held 1$/m);
  assert.match(text, /^vmlockd_facts_total\{kind="LockAcquired"\} 1$/m);
  assert.match(text, /^# TYPE vmlockd_seconds_since_verified gauge$/m);
});

test('the CLI says clearly when the daemon is unreachable (exit 1)', () => {
  const r = cli(['locks', '--socket', path.join(tmpdir(), 'none.sock')]);
  assert.is(r.code, 1);
  assert.match(r.stderr, 'cannot reach vmlockd at');
});

test.run();
