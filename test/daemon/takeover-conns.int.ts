// `serve --takeover` keeps the virtlockd-protocol clients (issue 11, item 2): QEMU's and libvirtd's
// established connections are handed to the new daemon with their state (owner registered, restrict
// flag, a frame half received), as virtlockd keeps its clients across a re-exec. A client connected
// through a take-over is answered on the same connection afterwards, and its close afterwards
// releases its locks by the close rule in the new daemon.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { ACQUIRE_FLAG, PROC, decodeReply, encodeCall } from '../../src/events/virtlockd/codec.js';
import fsExt from 'fs-ext';
import { native } from '../../src/engine/native.js';
import { TestDaemon, UUID2, tmpdir, until } from '../helpers/daemon.js';
import { UUID_A, UUID_B } from '../helpers/protocol-serve.js';
import { HandoffPlayer } from '../helpers/handoff.js';
import { RemoteClient } from '../helpers/remote-client.js';

const test = suite('serve --takeover: established virtlockd-protocol connections');
const running: TestDaemon[] = [];
const clients: RemoteClient[] = [];
test.after.each(async () => {
  for (const c of clients.splice(0)) await c.kill();
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function site() {
  const root = tmpdir('vmlockd-takeover-conns-');
  const vsock = path.join(root, 'run', 'virtlockd-sock');
  const opts = { stateDir: path.join(root, 'state'), lockspace: path.join(root, 'lockspace'), hostId: 'hv-tc', socket: path.join(root, 'vmlockd.sock'), extra: ['--virtlockd-socket', vsock] };
  return { root, vsock, leases: path.join(root, 'leases'), opts };
}

type Fact = { seq: number; kind: string; payload: Record<string, any> };
const facts = (d: TestDaemon, kind: string): Fact[] => JSON.parse(d.cli(['audit', '--json', '--kind', kind, '--limit', '0']).stdout) as Fact[];
const held = (d: TestDaemon): string[] =>
  (JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ name: string; vm: { uuid: string } }>).map((l) => `${l.vm.uuid.slice(0, 8)}:${l.name}`).sort();

async function takeOver(s: ReturnType<typeof site>, cur: TestDaemon, env?: NodeJS.ProcessEnv): Promise<TestDaemon> {
  const next = new TestDaemon({ ...s.opts, extra: [...s.opts.extra, '--takeover'], ...(env ? { env } : {}) });
  running.push(next);
  await next.start(60_000);
  assert.equal(await cur.exit!, { code: 0, signal: null }, `old daemon: ${cur.stderr}`);
  return next;
}

test('a QEMU-like owner keeps its connection through a take-over: answered on it afterwards; its close and its exit then release its locks by the close rule', async () => {
  const s = site();
  let cur = new TestDaemon(s.opts);
  running.push(await cur.start());
  await until('the virtlockd socket', () => fs.existsSync(s.vsock));
  const lv = await LockClient.connect(s.vsock);
  await lv.createLockspace(s.leases);
  await lv.close();
  // Two QEMU-like processes, each registered on its own connection with its own pid.
  const q1 = await RemoteClient.spawn(s.vsock);
  const q2 = await RemoteClient.spawn(s.vsock);
  clients.push(q1, q2);
  assert.equal(await q1.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
  assert.equal(await q1.do({ op: 'acquire', path: s.leases, name: 'a1', autocreate: true }), { ok: true });
  assert.equal(await q2.do({ op: 'register', uuid: UUID_B, name: 'vm-b', pid: 'self' }), { ok: true });
  assert.equal(await q2.do({ op: 'acquire', path: s.leases, name: 'b1', autocreate: true }), { ok: true });
  assert.equal(await q2.do({ op: 'restrict' }), { ok: true });

  // Twice: a connection handed over is handed over again.
  for (let i = 0; i < 2; i++) cur = await takeOver(s, cur);
  const st = JSON.parse(cur.cli(['status', '--json']).stdout);
  assert.equal([st.started.how, st.started.adopted, st.started.connections], ['takeover', 2, 2], JSON.stringify(st.started));

  // The same connections, answered by the new daemon, with their state: owner registered, restricted.
  assert.equal(await q1.do({ op: 'acquire', path: s.leases, name: 'a2', autocreate: true }), { ok: true }, 'q1 answered on its connection');
  const r = await q2.do({ op: 'acquire', path: s.leases, name: 'b2', autocreate: true });
  assert.equal([r.ok, (r as { code?: number }).code], [false, 29], `q2 is still restricted: ${JSON.stringify(r)}`);
  assert.equal(held(cur), ['00112233:a1', '00112233:a2', 'ffeeddcc:b1']);

  // q1 closes its connection while its process still runs: only the close rule can release that.
  assert.equal(await q1.do({ op: 'close' }), { ok: true });
  await until('the close rule for q1', () => facts(cur, 'OwnerGone').some((f) => f.payload.pid === q1.pid));
  const g1 = facts(cur, 'OwnerGone').find((f) => f.payload.pid === q1.pid)!;
  assert.equal([g1.payload.alive, g1.payload.released], [true, 2]);
  // q2 exits: the kernel closes its connection, held by the new daemon.
  await q2.kill();
  await until('q2\'s lock released', () => held(cur).length === 0);
  const g2 = facts(cur, 'OwnerGone').find((f) => f.payload.pid === q2.pid)!;
  assert.is(g2.payload.released, 1);
});

test('a frame half sent before the take-over is completed afterwards and answered on the same connection; the close rule applies there', async () => {
  const s = site();
  const cur = new TestDaemon(s.opts);
  running.push(await cur.start());
  await until('the virtlockd socket', () => fs.existsSync(s.vsock));
  // This process is the owner: its own pid on its own connection.
  const c = await LockClient.connect(s.vsock);
  await c.createLockspace(s.leases);
  await c.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: process.pid });
  const frame = encodeCall(PROC.ACQUIRE_RESOURCE, 7, { path: s.leases, name: 'half', flags: ACQUIRE_FLAG.AUTOCREATE });
  const cut = Math.floor(frame.length / 2);
  assert.is(await c.send(frame.subarray(0, cut), { timeoutMs: 300 }), null, 'no answer to half a frame');
  const next = await takeOver(s, cur);
  const reply = await c.send(frame.subarray(cut), { timeoutMs: 20_000 });
  assert.ok(reply !== null, `no answer after the take-over: ${next.stderr}`);
  const d = decodeReply(reply!);
  assert.equal([d.kind, d.header.serial], ['ok', 7]);
  assert.equal(held(next), ['00112233:half']);
  await c.close();
  await until('the close rule in the new daemon', () => held(next).length === 0);
  assert.equal(
    facts(next, 'OwnerGone').map((f) => [f.payload.pid, f.payload.alive, f.payload.released]),
    [[process.pid, true, 1]],
  );
});

test('a new daemon gone after STOP: the old one serves its handed-over connections again', async () => {
  const s = site();
  const cur = new TestDaemon(s.opts);
  running.push(await cur.start());
  await until('the virtlockd socket', () => fs.existsSync(s.vsock));
  const q = await RemoteClient.spawn(s.vsock);
  clients.push(q);
  assert.equal(await q.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
  assert.equal(await q.do({ op: 'createLockspace', path: s.leases }), { ok: true });
  assert.equal(await q.do({ op: 'acquire', path: s.leases, name: 'a1', autocreate: true }), { ok: true });
  // The new daemon's half of the protocol up to DONE (this process plays it), then gone.
  const play = new HandoffPlayer(s.opts.stateDir).upToDone('TAKEOVER conns');
  assert.is(play.text.split('\n').filter((l) => l.startsWith('CONN ')).length, 1, play.text.slice(0, 200));
  play.goAway();
  await until('the old daemon serving again', () => cur.cli(['status', '--json']).code === 0, 20_000);
  const st = JSON.parse(cur.cli(['status', '--json']).stdout);
  assert.equal([st.pid, st.started.how, st.started.connections], [cur.proc!.pid, 'resumed', 1]);
  // The same connection, answered by the same (old) process.
  assert.equal(await q.do({ op: 'acquire', path: s.leases, name: 'a2', autocreate: true }), { ok: true });
  assert.equal(held(cur), ['00112233:a1', '00112233:a2']);
  await q.kill();
  await until('the close rule', () => held(cur).length === 0);
});

test('a new daemon SIGSTOPped half-way: the old one gives up after VMLOCKD_TAKEOVER_TIMEOUT_MS, kills it and serves on with every lock and connection', async () => {
  const s = site();
  // Short enough to wait out; long enough for the later, real take-over of 600 locks on a loaded machine.
  const env = { VMLOCKD_TAKEOVER_TIMEOUT_MS: '25000' };
  // log_level info: the old daemon's "handed over" line is the moment to stop the new one.
  const conf = path.join(s.root, 'vmlockd.conf');
  fs.writeFileSync(conf, 'log_level = "info"\n');
  s.opts.extra.push('--config', conf);
  let cur = new TestDaemon({ ...s.opts, env });
  running.push(await cur.start());
  await until('the virtlockd socket', () => fs.existsSync(s.vsock));
  // Enough locks that the new daemon's start takes a while after DONE: it is stopped inside it.
  const images = path.join(s.root, 'images');
  fs.mkdirSync(images);
  const disks = Array.from({ length: 600 }, (_, i) => path.join(images, `d${i}.img`));
  for (const d of disks) fs.writeFileSync(d, '');
  const acq = cur.cli(['acquire', '--vm', UUID_B, ...disks]);
  assert.is(acq.code, 0, acq.stderr);
  const q = await RemoteClient.spawn(s.vsock);
  clients.push(q);
  assert.equal(await q.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
  assert.equal(await q.do({ op: 'createLockspace', path: s.leases }), { ok: true });
  assert.equal(await q.do({ op: 'acquire', path: s.leases, name: 'a1', autocreate: true }), { ok: true });

  let stopped: TestDaemon | undefined;
  for (let attempt = 0; attempt < 3 && !stopped; attempt++) {
    const next = new TestDaemon({ ...s.opts, extra: [...s.opts.extra, '--takeover'], env });
    running.push(next);
    // SIGSTOP the new daemon the moment the old one has handed everything over (DONE): it is then
    // inside its start, holding copies of every lock, the sockets and the state directory.
    const old = cur;
    const onErr = (d: Buffer | string) => {
      if (String(d).includes('takeover: handed over') && next.proc) next.proc.kill('SIGSTOP');
    };
    old.proc!.stderr!.on('data', onErr);
    const started = next.start(60_000).then(
      () => 'up' as const,
      () => 'failed' as const,
    );
    await until('the hand-off', () => old.stderr.includes('takeover: handed over'), 60_000);
    old.proc!.stderr!.off('data', onErr);
    const raced = await Promise.race([old.exit!.then(() => 'old exited' as const), new Promise((r) => setTimeout(r, 3000)).then(() => 'waiting' as const)]);
    if (raced === 'old exited') {
      // The new daemon was up before the signal landed: it serves; try again from it.
      next.proc!.kill('SIGCONT');
      assert.is(await started, 'up');
      cur = next;
      continue;
    }
    stopped = next;
  }
  assert.ok(stopped, 'the new daemon could be stopped half-way');
  // The deadline passes: the old daemon kills the stopped one and serves again, same process.
  const exit = await Promise.race([stopped.exit!, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`the stopped new daemon is still there 60 s on; the old daemon: ${cur.stderr.slice(-2000)}`)), 60_000))]);
  assert.is(exit.signal, 'SIGKILL', `the stopped new daemon was killed: ${JSON.stringify(exit)}`);
  assert.match(cur.stderr, /was not up within 25000 ms; killing it/);
  await until('the old daemon serving again', () => cur.cli(['status', '--json']).code === 0, 30_000).catch((e: Error) => {
    throw new Error(`${e.message}\nold daemon (exit ${cur.proc!.exitCode}): ${cur.stderr.slice(-3000)}`);
  });
  const st = JSON.parse(cur.cli(['status', '--json']).stdout);
  assert.equal([st.pid, st.locks, st.started.how], [cur.proc!.pid, 601, 'resumed']);
  assert.is(cur.proc!.exitCode, null);
  // Every lock still held: another host gets none; the QEMU-like client is answered on its connection.
  const other = new TestDaemon({ stateDir: path.join(s.root, 'state-b'), lockspace: s.opts.lockspace, hostId: 'hv-tc-b', socket: path.join(s.root, 'b.sock') });
  running.push(await other.start());
  for (const d of [disks[0]!, disks[299]!, disks[599]!]) assert.is(other.cli(['acquire', '--vm', UUID2, d]).code, 3, `${d} should still be held`);
  assert.equal(await q.do({ op: 'acquire', path: s.leases, name: 'a2', autocreate: true }), { ok: true });
  // A later take-over works, and the connection comes along again.
  const next = await takeOver(s, cur, env);
  assert.is(JSON.parse(next.cli(['status', '--json']).stdout).locks, 602);
  await q.kill();
  await until('the close rule in the new daemon', () => !held(next).some((h) => h.startsWith('00112233')));
});

test('the old daemon SIGKILLed half-way: the new one adopts what it received, says so in status, and another host gets nothing', async () => {
  const s = site();
  const conf = path.join(s.root, 'vmlockd.conf');
  fs.writeFileSync(conf, 'log_level = "info"\n');
  s.opts.extra.push('--config', conf);
  let cur = new TestDaemon(s.opts);
  running.push(await cur.start());
  const images = path.join(s.root, 'images');
  fs.mkdirSync(images);
  const disks = [1, 2, 3, 4].map((i) => path.join(images, `d${i}.img`));
  for (const d of disks) fs.writeFileSync(d, '');
  assert.is(cur.cli(['acquire', '--vm', UUID_A, ...disks]).code, 0);
  const other = new TestDaemon({ stateDir: path.join(s.root, 'state-b'), lockspace: s.opts.lockspace, hostId: 'hv-tc-b', socket: path.join(s.root, 'b.sock') });
  running.push(await other.start());
  let halfway: TestDaemon | undefined;
  for (let attempt = 0; attempt < 3 && !halfway; attempt++) {
    const old = cur;
    const next = new TestDaemon({ ...s.opts, extra: [...s.opts.extra, '--takeover'] });
    running.push(next);
    // The old daemon has sent its locks (END) and is about to stop: freeze it there, then kill it.
    const onErr = (d: Buffer | string) => {
      if (String(d).includes('takeover: sent')) old.proc!.kill('SIGSTOP');
    };
    old.proc!.stderr!.on('data', onErr);
    const up = next.start(60_000);
    await until('the locks sent', () => old.stderr.includes('takeover: sent'), 60_000);
    old.proc!.stderr!.off('data', onErr);
    old.proc!.kill('SIGKILL');
    await up;
    cur = next;
    if (/(went away|stopped answering) half-way/.test(next.stderr)) halfway = next;
  }
  assert.ok(halfway, 'the old daemon could be killed half-way');
  const st = JSON.parse(halfway.cli(['status', '--json']).stdout);
  assert.equal([st.locks, st.started.how, st.started.adopted, st.started.retaken, st.started.lost], [4, 'takeover', 4, 0, 0], JSON.stringify(st.started));
  for (const d of disks) assert.is(other.cli(['acquire', '--vm', UUID2, d]).code, 3, `${d} should be held by the new daemon`);
  // The human form says it too.
  assert.match(halfway.cli(['status']).stdout, /started: how=takeover, adopted=4, retaken=0/);
});

test('serving again waits while the state directory is still locked (a new daemon not yet fully gone) instead of exiting with every lock', async () => {
  const s = site();
  const cur = new TestDaemon(s.opts);
  running.push(await cur.start());
  const images = path.join(s.root, 'images');
  fs.mkdirSync(images);
  const disk = path.join(images, 'd.img');
  fs.writeFileSync(disk, '');
  assert.is(cur.cli(['acquire', '--vm', UUID_A, disk]).code, 0);
  // This process plays a new daemon that got as far as the instance guard, then went away while
  // something of it (here: this process) still holds the guard for a moment.
  const play = new HandoffPlayer(s.opts.stateDir).upToDone('TAKEOVER conns');
  const guard = fs.openSync(path.join(s.opts.stateDir, 'vmlockd.pid'), 'r+');
  fsExt.flockSync(guard, 'exnb');
  play.goAway();
  await until('the old daemon trying again', () => cur.stderr.includes('trying again'), 20_000);
  fs.closeSync(guard);
  await until('the old daemon serving again', () => cur.cli(['status', '--json']).code === 0, 20_000);
  assert.is(cur.proc!.exitCode, null, cur.stderr);
  const st = JSON.parse(cur.cli(['status', '--json']).stdout);
  assert.equal([st.pid, st.locks, st.started.how], [cur.proc!.pid, 1, 'resumed']);
});

test.run();
