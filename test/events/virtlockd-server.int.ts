// vmlockd's virtlockd protocol server against the real thing: one conformance scenario run against the
// real /usr/sbin/virtlockd and against a real vmlockd daemon, compared reply by reply; then what only
// vmlockd does (journal, holder names, restarts, peers, max_clients), all through real processes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LockClient, LockRpcError } from '../../src/events/virtlockd/client.js';
import { encodeFrame, LOCK_PROGRAM } from '../../src/events/virtlockd/codec.js';
import { ROOT, TestDaemon, tmpdir } from '../helpers/daemon.js';
import {
  DIFFERENCES,
  NOBODY,
  VECTOR_REPLIES,
  compare,
  describe,
  differencesSeen,
  freshWork,
  runScenario,
  virtlockdSkipReason,
  virtlockdTarget,
  vmlockdTarget,
  type Observations,
} from '../helpers/protocol-suite.js';
import { RemoteClient } from '../helpers/remote-client.js';

const IS_ROOT = process.getuid?.() === 0;
// One path for both targets: replies that name a path then compare byte for byte.
const WORK = path.join(os.tmpdir(), `vmlockd-protocol-work-${process.pid}`);
const SKIP = virtlockdSkipReason();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const UUID_A = '00112233-4455-6677-8899-aabbccddeeff';
const UUID_B = 'ffeeddcc-bbaa-9988-7766-554433221100';

let realObs: Observations | null = null;
let oursObs: Observations | null = null;

test.after(() => {
  rmSync(WORK, { recursive: true, force: true });
});

/** Every §6 vector reply, byte for byte (vec_d_busy may carry the listed holder suffix). */
function checkVectors(obs: Observations, target: string, allowBusySuffix: boolean): void {
  for (const [key, want] of Object.entries(VECTOR_REPLIES)) {
    if (allowBusySuffix && key === 'vec_d_busy') {
      assert.ok(DIFFERENCES[0]!.applies(key, want, obs[key]), `${target} ${key}: ${describe(obs[key])}`);
      continue;
    }
    assert.is(obs[key], want, `${target} ${key}: ${describe(obs[key])}`);
  }
}

if (SKIP) {
  const why = `virtlockd-server.int: the real-virtlockd half of the conformance suite is skipped: ${SKIP}`;
  console.log(why);
  if (process.env.CI === 'true') test('the real virtlockd is installed in CI', () => assert.unreachable(why));
} else {
  test('given the real virtlockd, when the scenario runs, then it answers the captured §6 vectors', async () => {
    const t = virtlockdTarget();
    const info = await t.start();
    try {
      realObs = await runScenario(info.socket, freshWork(WORK, info.clientUid), info.clientUid);
      if (info.foreignUid !== null) {
        const peer = await runScenario(info.socket, freshWork(WORK, info.foreignUid), info.foreignUid, 'peer');
        assert.equal(peer, { peer_reply: null, peer_closed: true }, 'a peer with another uid is closed without a frame');
      }
    } finally {
      await t.stop();
    }
    checkVectors(realObs, 'virtlockd', false);
  });
}

test('given vmlockd serving the protocol, when the scenario runs, then it answers every §6 vector', async () => {
  const t = vmlockdTarget();
  const info = await t.start();
  try {
    oursObs = await runScenario(info.socket, freshWork(WORK, info.clientUid), info.clientUid);
    if (info.foreignUid !== null) {
      // Let the foreign peer past the file mode (0600), so SO_PEERCRED is what refuses it.
      for (let p = path.dirname(info.socket); p !== os.tmpdir(); p = path.dirname(p)) chmodSync(p, 0o755);
      chmodSync(info.socket, 0o666);
      const peer = await runScenario(info.socket, freshWork(WORK, info.foreignUid), info.foreignUid, 'peer');
      assert.equal(peer, { peer_reply: null, peer_closed: true }, 'a peer with another uid is closed without a frame');
      const rejected = JSON.parse(t.daemon().cli(['audit', '--json', '--kind', 'InputRejected']).stdout) as Array<{ payload: { message: string } }>;
      assert.ok(
        rejected.some((f) => f.payload.message.includes(`with uid ${info.foreignUid}`)),
        'the refused peer is journaled with its uid',
      );
    }
  } finally {
    await t.stop();
  }
  checkVectors(oursObs, 'vmlockd', true);
  // Beyond virtlockd: the busy reply names the holder after virtlockd's own text.
  const busy = Buffer.from(oursObs.vec_d_busy as string, 'hex').toString('latin1');
  assert.match(busy, "resource busy: Lockspace resource '0590089b1c3be5b105c84e8a36464becebe44b1764e00a3c1ee9ffaeb1b1c487' is locked: disk ");
  assert.match(busy, `held exclusively by VM vm-a (uuid ${UUID_A}) on host hv-test`);
  assert.is(oursObs.close_alive_owner_signalled, 'not signalled');
});

if (!SKIP) {
  test('given both runs, then every reply is the same except the differences docs/protocol.md lists', () => {
    assert.ok(realObs && oursObs, 'both scenario runs completed');
    const problems = compare(realObs!, oursObs!);
    assert.equal(problems, [], `unlisted differences:\n${problems.join('\n')}`);
    // A listed difference that no longer shows is stale: drop it from the list and the doc.
    const seen = differencesSeen(realObs!, oursObs!);
    assert.equal([...seen].sort(), DIFFERENCES.map((d) => d.id).sort());
    assert.ok(Object.keys(realObs!).length > 120, `the scenario ran to the end (${Object.keys(realObs!).length} cases)`);
  });
}

test('given docs/protocol.md, then it lists every deliberate difference the suite allows', () => {
  const doc = readFileSync(path.join(ROOT, 'docs', 'protocol.md'), 'utf8');
  for (const d of DIFFERENCES) assert.ok(doc.includes(d.id), `docs/protocol.md does not mention ${d.id} (${d.reason})`);
});

// ── vmlockd only ─────────────────────────────────────────────────────────────────────────────

interface Served {
  readonly daemon: TestDaemon;
  readonly socket: string;
  readonly dir: string;
}

async function serve(dir: string, opts: { lockspace?: string; hostId?: string; config?: string; state?: string } = {}): Promise<Served> {
  const socket = path.join(dir, 'run', 'virtlockd-sock');
  const daemon = new TestDaemon({
    stateDir: opts.state ?? path.join(dir, 'state'),
    socket: path.join(dir, 'vmlockd.sock'),
    lockspace: opts.lockspace ?? path.join(dir, 'lockspace'),
    hostId: opts.hostId ?? 'hv1',
    extra: ['--virtlockd-socket', socket, ...(opts.config ? ['--config', opts.config] : [])],
  });
  await daemon.start();
  for (let i = 0; i < 60 && !existsSync(socket); i++) await sleep(50);
  if (!existsSync(socket)) {
    // A live daemon's pipes would keep the test runner from ever exiting.
    await daemon.kill('SIGKILL');
    assert.unreachable(`no virtlockd socket at ${socket}: is registerVirtlockd(daemon) called in src/main.ts?\n${daemon.stderr}`);
  }
  return { daemon, socket, dir };
}

function audit(d: TestDaemon, kind: string): Array<{ payload: Record<string, any>; ownerName?: string }> {
  const r = d.cli(['audit', '--json', '--kind', kind, '--limit', '1000']);
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function rpcError(p: Promise<unknown>): Promise<LockRpcError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  assert.instance(e, LockRpcError);
  return e as LockRpcError;
}

test('given a disk locked through the control API, when a plugin client asks for its lease, then busy names the disk path and the holder', async () => {
  const dir = tmpdir('vmlockd-vs-');
  const s = await serve(dir);
  try {
    const disk = path.join(dir, 'images', 'web.qcow2');
    mkdirSync(path.dirname(disk));
    writeFileSync(disk, '');
    const api = s.daemon.cli(['acquire', '--vm', UUID_A, '--name', 'web1', disk]);
    assert.is(api.code, 0, api.stderr);
    const c = await LockClient.connect(s.socket);
    const ls = path.join(dir, 'lockspace');
    await c.createLockspace(ls);
    await c.register({ uuid: UUID_B, name: 'web2', id: 2, pid: 4343 });
    const e = await rpcError(c.acquire(ls, sha(disk), { autocreate: true }));
    assert.equal([e.code, e.domain], [87, 51]);
    assert.ok(e.message.startsWith(`resource busy: Lockspace resource '${sha(disk)}' is locked: disk ${disk} is held exclusively by VM web1 (uuid ${UUID_A}) on host hv1 since `), e.message);
    assert.is(e.rpc.str1, 'resource busy: %s');
    assert.is(e.rpc.str2, e.message.slice('resource busy: '.length));
    await c.close();
  } finally {
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given protocol locks, then `vmlockd locks` and the journal show them, and bad frames are journaled without a lock change', async () => {
  const dir = tmpdir('vmlockd-vs-');
  const s = await serve(dir);
  try {
    const ls = path.join(dir, 'files');
    const c = await LockClient.connect(s.socket);
    await c.createLockspace(ls);
    await c.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: 4242 });
    await c.acquire(ls, 'lease1', { autocreate: true });
    await c.acquire(ls, 'lease2', { shared: true, autocreate: true });
    const locks = JSON.parse(s.daemon.cli(['locks', '--json']).stdout) as Array<Record<string, any>>;
    assert.equal(
      locks.map((l) => [l.resource, l.mode, l.vm.uuid, l.source]).sort(),
      [
        [path.join(ls, 'lease1'), 'exclusive', UUID_A, 'virtlockd'],
        [path.join(ls, 'lease2'), 'shared', UUID_A, 'virtlockd'],
      ],
    );
    const bad = await LockClient.connect(s.socket);
    const reply = await bad.send(encodeFrame({ prog: LOCK_PROGRAM, vers: 1, proc: 42, type: 0, serial: 3, status: 0 }));
    assert.ok(reply !== null, 'unknown procedure is answered');
    await bad.send(Buffer.from('00000003', 'hex'));
    assert.ok(await bad.waitClosed(2000), 'a length under 28 closes the connection');
    await c.release(ls, 'lease1');
    await c.close();
    const acquired = audit(s.daemon, 'LockAcquired');
    assert.equal(acquired.map((f) => [f.payload.name, f.payload.source]), [['lease1', 'virtlockd'], ['lease2', 'virtlockd']]);
    assert.equal(audit(s.daemon, 'LockReleased').map((f) => f.payload.name), ['lease1']);
    const rejected = audit(s.daemon, 'InputRejected').map((f) => f.payload.message as string);
    assert.ok(rejected.some((m) => m.includes('unknown procedure: 42')), rejected.join('\n'));
    assert.ok(rejected.some((m) => m.includes('frame length word 3')), rejected.join('\n'));
    assert.equal(JSON.parse(s.daemon.cli(['locks', '--json']).stdout).length, 1, 'lease2 still held; bad frames changed nothing');
  } finally {
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given a lease held through vmlockd, then a second vmlockd and a real virtlockd on the same lockspace are refused, and the other way round', async () => {
  const dir = tmpdir('vmlockd-vs-');
  chmodSync(dir, 0o755); // virtlockd runs as nobody and must reach the lockspace
  const ls = path.join(dir, 'shared-ls', 'files');
  mkdirSync(ls, { recursive: true, mode: 0o755 });
  const realUid = IS_ROOT ? NOBODY : process.getuid!();
  if (IS_ROOT) {
    chownSync(path.dirname(ls), NOBODY, NOBODY);
    chownSync(ls, NOBODY, NOBODY);
  }
  const served: Served[] = [];
  const real = SKIP ? null : virtlockdTarget();
  const clients: RemoteClient[] = [];
  try {
    const one = await serve(path.join(dir, 'one'), { hostId: 'hv1' });
    served.push(one);
    const two = await serve(path.join(dir, 'two'), { hostId: 'hv2' });
    served.push(two);
    const realInfo = real ? await real.start() : null;
    const a = await LockClient.connect(one.socket);
    await a.createLockspace(ls);
    await a.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: 4242 });
    await a.acquire(ls, 'r1', { autocreate: true });
    // virtlockd (as nobody) must be able to open the lease read-write to try its lock.
    if (IS_ROOT) chownSync(path.join(ls, 'r1'), NOBODY, NOBODY);
    const b = await LockClient.connect(two.socket);
    await b.createLockspace(ls);
    await b.register({ uuid: UUID_B, name: 'vm-b', id: 2, pid: 4343 });
    const e2 = await rpcError(b.acquire(ls, 'r1', { autocreate: true }));
    assert.equal([e2.code, e2.domain], [87, 51], e2.message);
    const e2s = await rpcError(b.acquire(ls, 'r1', { shared: true, autocreate: true }));
    assert.equal([e2s.code, e2s.domain], [87, 51], 'shared against exclusive');
    if (realInfo) {
      const v = await RemoteClient.spawn(realInfo.socket, { uid: realUid });
      clients.push(v);
      assert.equal(await v.do({ op: 'createLockspace', path: ls }), { ok: true });
      assert.equal(await v.do({ op: 'register', uuid: '0123456789abcdef0123456789abcdef', name: 'vm-c', id: 3, pid: 4444 }), { ok: true });
      const r = await v.do({ op: 'acquire', path: ls, name: 'r1', autocreate: true });
      assert.equal(r.ok ? null : [r.code, r.domain, r.message], [87, 51, "resource busy: Lockspace resource 'r1' is locked"], 'virtlockd F_SETLK vs our OFD lock');
      // And the other way: virtlockd holds r2, both vmlockd daemons are refused by the kernel.
      assert.equal(await v.do({ op: 'acquire', path: ls, name: 'r2', autocreate: true }), { ok: true });
      const e3 = await rpcError(a.acquire(ls, 'r2', { autocreate: true }));
      assert.equal([e3.code, e3.domain], [87, 51], e3.message);
      assert.match(e3.message, 'is locked: disk ');
      const e4 = await rpcError(b.acquire(ls, 'r2', { shared: true, autocreate: true }));
      assert.equal([e4.code, e4.domain], [87, 51], e4.message);
      assert.equal(await v.do({ op: 'release', path: ls, name: 'r2' }), { ok: true });
      await a.acquire(ls, 'r2', { autocreate: true });
    }
    await a.release(ls, 'r1');
    await b.acquire(ls, 'r1', { autocreate: true });
    await a.close();
    await b.close();
  } finally {
    for (const c of clients) await c.kill();
    await real?.stop();
    for (const x of served) await x.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
  if (SKIP) console.log(`virtlockd-server.int: the mixed virtlockd/vmlockd half was skipped: ${SKIP}`);
});

test('given an owner process holding a lease, when vmlockd is SIGKILLed and restarted, then the lock is re-taken, the lockspace remembered, the owner never signalled, and released once it exits', async () => {
  const dir = tmpdir('vmlockd-vs-');
  const ls = path.join(dir, 'files');
  let s = await serve(dir);
  const owner = await RemoteClient.spawn(s.socket);
  try {
    assert.equal(await owner.do({ op: 'createLockspace', path: ls }), { ok: true });
    assert.equal(await owner.do({ op: 'register', uuid: UUID_A, name: 'qemu-a', pid: 'self' }), { ok: true });
    assert.equal(await owner.do({ op: 'acquire', path: ls, name: 'disk0', autocreate: true }), { ok: true });
    assert.equal(await owner.do({ op: 'restrict' }), { ok: true });
    await s.daemon.kill('SIGKILL');
    s = await serve(dir);
    const reacquired = audit(s.daemon, 'Reacquired');
    assert.equal(reacquired.map((f) => [f.payload.name, f.payload.owner.uuid]), [['disk0', UUID_A]]);
    const other = await LockClient.connect(s.socket);
    await other.register({ uuid: UUID_B, name: 'vm-b', id: 2, pid: 4343 });
    // No CREATE_LOCKSPACE after the restart: a virtlockd restart would answer "does not exist" here.
    const busy = await rpcError(other.acquire(ls, 'disk0', { autocreate: true }));
    assert.equal([busy.code, busy.domain], [87, 51], busy.message);
    assert.match(busy.message, 'by VM qemu-a');
    assert.is(owner.proc.exitCode, null, 'the owner process still runs');
    assert.equal(owner.signals, [], 'and was never signalled');
    // Its connection died with the old daemon; when the process exits, the lock goes.
    await owner.kill();
    let freed = false;
    for (let i = 0; i < 50 && !freed; i++) {
      await sleep(200);
      freed = await other.acquire(ls, 'disk0', { autocreate: true }).then(
        () => true,
        () => false,
      );
    }
    assert.ok(freed, 'the dead owner\'s lock was released');
    const gone = audit(s.daemon, 'OwnerGone');
    assert.equal(gone.map((f) => [f.payload.owner.uuid, f.payload.pid, f.payload.alive, f.payload.released]), [[UUID_A, owner.pid, false, 1]]);
    await other.close();
  } finally {
    await owner.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given an owner whose own connection closes while it runs, then its locks are released, OwnerGone says alive, a warning is logged, and it is not signalled', async () => {
  const dir = tmpdir('vmlockd-vs-');
  const ls = path.join(dir, 'files');
  const s = await serve(dir);
  const owner = await RemoteClient.spawn(s.socket);
  try {
    await owner.do({ op: 'createLockspace', path: ls });
    await owner.do({ op: 'register', uuid: UUID_A, name: 'qemu-a', pid: 'self' });
    assert.equal(await owner.do({ op: 'acquire', path: ls, name: 'd1', autocreate: true }), { ok: true });
    assert.equal(await owner.do({ op: 'acquire', path: ls, name: 'd2', shared: true, autocreate: true }), { ok: true });
    assert.equal(await owner.do({ op: 'close' }), { ok: true });
    let gone: ReturnType<typeof audit> = [];
    for (let i = 0; i < 30 && gone.length === 0; i++) {
      await sleep(100);
      gone = audit(s.daemon, 'OwnerGone');
    }
    assert.equal(gone.map((f) => [f.payload.owner.uuid, f.payload.pid, f.payload.alive, f.payload.released, f.payload.source]), [[UUID_A, owner.pid, true, 2, 'virtlockd']]);
    assert.match(s.daemon.stderr, `pid ${owner.pid}`);
    assert.match(s.daemon.stderr, 'does not signal it');
    assert.equal(JSON.parse(s.daemon.cli(['locks', '--json']).stdout), []);
    await sleep(500);
    assert.is(owner.proc.exitCode, null);
    assert.equal(owner.signals, []);
  } finally {
    await owner.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given max_clients = 2, when a third client connects, then it is closed and journaled while the others keep working', async () => {
  const dir = tmpdir('vmlockd-vs-');
  const conf = path.join(dir, 'vmlockd.conf');
  writeFileSync(conf, 'max_clients = 2\n');
  const s = await serve(dir, { config: conf });
  try {
    const c1 = await LockClient.connect(s.socket);
    const c2 = await LockClient.connect(s.socket);
    await c1.createLockspace('');
    const c3 = await LockClient.connect(s.socket);
    assert.ok(await c3.waitClosed(2000), 'the third connection is closed');
    await c2.createLockspace('');
    await c1.close();
    await sleep(100);
    const c4 = await LockClient.connect(s.socket);
    await c4.createLockspace('');
    await c2.close();
    await c4.close();
    assert.ok(audit(s.daemon, 'InputRejected').some((f) => String(f.payload.message).includes('max_clients (2)')));
  } finally {
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
