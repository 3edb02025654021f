// No acknowledged lock is silently lost when the state directory's filesystem fails (issue 11.4):
// the state directory is a real ext4 on a loop device mounted errors=remount-ro; the fault is the
// kernel's own (/sys/fs/ext4/<dev>/trigger_fs_error: the journal aborts, the filesystem turns
// read-only, dirty pages never reach the disk); the repair is umount + e2fsck -y + mount; then the
// daemon starts again on the same state directory. Every lock acknowledged before the fault must be
// held again (the kernel says so, and another host cannot take it) or reported as LeaseLost.
// Before the staging file was synced before each reply, locks acknowledged 0.2-5 s before the fault
// came back neither held nor reported (the staging file lost its last lines).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, tmpdir, until } from '../helpers/daemon.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { diskImages } from '../helpers/state-dir.js';

function run(cmd: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim() };
}

/** ext4 on a loop device, mounted errors=remount-ro, that the test can break and repair. */
interface FailingFs {
  readonly dir: string;
  readonly dev: string;
  /** The kernel's own ext4 error: journal aborted, remounted read-only. */
  fault(): void;
  /** umount, e2fsck -y, mount again (what an operator does). */
  repair(): string;
  cleanup(): void;
}

function failingExt4(base: string): FailingFs | string {
  const image = path.join(base, 'state.img');
  const dir = path.join(base, 'state');
  fs.mkdirSync(dir);
  fs.writeFileSync(image, '');
  fs.truncateSync(image, 64 * 1024 * 1024);
  const mkfs = run('mkfs.ext4', ['-q', '-F', image]);
  if (mkfs.code !== 0) return `mkfs.ext4 failed: ${mkfs.out}`;
  const loop = run('losetup', ['-f', '--show', image]);
  if (loop.code !== 0) return `losetup failed (no loop devices in this kernel, or not root): ${loop.out}`;
  let dev = loop.out.split('\n')[0]!;
  const mount = () => run('mount', ['-t', 'ext4', '-o', 'errors=remount-ro', dev, dir]);
  const m = mount();
  if (m.code !== 0) {
    run('losetup', ['-d', dev]);
    return `mount of ${dev} failed: ${m.out}`;
  }
  const trigger = `/sys/fs/ext4/${path.basename(dev)}/trigger_fs_error`;
  if (!fs.existsSync(trigger)) {
    run('umount', [dir]);
    run('losetup', ['-d', dev]);
    return `${trigger} does not exist (this kernel cannot force an ext4 error)`;
  }
  return {
    dir,
    get dev() {
      return dev;
    },
    fault: () => fs.writeFileSync(trigger, '1'),
    repair: () => {
      const u = run('umount', [dir]);
      if (u.code !== 0) throw new Error(`umount ${dir}: ${u.out}`);
      // Right after umount the device can still be open for a moment (udev probing it): retry.
      let f = run('e2fsck', ['-y', dev]);
      for (let k = 0; k < 6 && f.code === 8 && /in use/.test(f.out); k++) {
        spawnSync('sleep', ['0.5']);
        f = run('e2fsck', ['-y', dev]);
      }
      if (f.code === 8 && /in use/.test(f.out)) {
        // Still mounted elsewhere: a mount namespace made meanwhile (another test's `unshare
        // --mount`) keeps its own copy of the mount, and with it the errored filesystem. Repair the
        // image file and mount it through a new loop device (the old one goes when that copy does).
        run('losetup', ['-d', dev]);
        f = run('e2fsck', ['-y', image]);
        const again = run('losetup', ['-f', '--show', image]);
        if (again.code !== 0) throw new Error(`losetup after repair: ${again.out}`);
        dev = again.out.split('\n')[0]!;
      }
      // 0: clean, 1: errors corrected; anything else is a repair that did not work.
      if (f.code !== 0 && f.code !== 1) throw new Error(`e2fsck -y ${dev} exited ${f.code}: ${f.out}`);
      const mounted = mount();
      if (mounted.code !== 0) throw new Error(`mount ${dev} after repair: ${mounted.out}`);
      return f.out;
    },
    cleanup: () => {
      run('umount', [dir]);
      run('losetup', ['-d', dev]);
    },
  };
}

const uuid = (v: number, i: number) => `dddddddd-000${v}-4000-8000-${String(i).padStart(12, '0')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: Array<() => void | Promise<unknown>> = [];
test.after.each(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
});

/**
 * Acquire locks in groups at several moments before the fault (about 3 s, 1.5 s, 0.5 s and 0.2 s),
 * break the state directory's filesystem, then `whileBroken` (kill the daemon, or keep it running
 * read-only and look), repair, restart on the same state directory, and check every lock.
 */
async function scenario(
  variant: number,
  whileBroken: (d: TestDaemon, ctx: { disk: (i: number) => string; lockspace: string; state: string; held: number[] }) => Promise<void>,
  extra: string[] = [],
): Promise<{ found: number; held: number } | undefined> {
  const base = tmpdir('vmlockd-durable-');
  const ext4 = failingExt4(base);
  if (typeof ext4 === 'string') {
    // Only a kernel without loop devices or without ext4's trigger_fs_error gets here (the suite runs as root).
    console.log(`  skipped: durability suite: the state directory's filesystem cannot be failed here: ${ext4}`);
    return undefined;
  }
  cleanups.push(() => {
    ext4.cleanup();
    fs.rmSync(base, { recursive: true, force: true });
  });
  const state = ext4.dir;
  const lockspace = path.join(base, 'lockspace');
  const disk = diskImages(base);
  // The socket outside the state directory, so the repair's umount does not depend on it.
  const a = new TestDaemon({ stateDir: state, lockspace, hostId: 'a', socket: path.join(base, 'a.sock'), extra });
  cleanups.push(() => a.kill('SIGKILL'));
  await a.start(60_000);

  const acked: Array<{ i: number; at: number }> = [];
  let next = 1;
  const acquireGroup = (n: number) => {
    for (let k = 0; k < n; k++) {
      const i = next++;
      const r = a.cli(['acquire', '--vm', uuid(variant, i), disk(i)]);
      assert.is(r.code, 0, `acquire d${i}: ${r.stdout}${r.stderr}`);
      acked.push({ i, at: Date.now() });
    }
  };
  acquireGroup(3);
  await sleep(1500);
  acquireGroup(3);
  await sleep(1000);
  acquireGroup(3);
  await sleep(300);
  acquireGroup(2);
  await sleep(200);
  const faultAt = Date.now();
  ext4.fault();
  const before = acked.map((x) => faultAt - x.at);
  console.log(`  variant ${variant}: ${acked.length} locks acknowledged ${Math.min(...before)}-${Math.max(...before)} ms before the fault`);

  await whileBroken(a, { disk, lockspace, state, held: acked.map((x) => x.i) });
  if (a.proc!.exitCode === null && a.proc!.signalCode === null) await a.kill('SIGKILL');
  ext4.repair();

  const again = new TestDaemon({ stateDir: state, lockspace, hostId: 'a', socket: path.join(base, 'a.sock'), extra });
  cleanups.push(() => again.kill('SIGKILL'));
  await again.start(60_000);
  const locks = JSON.parse(again.cli(['locks', '--json']).stdout) as Array<{ disk: string; owner?: { uuid: string } }>;
  const lost = JSON.parse(again.cli(['audit', '--kind', 'LeaseLost', '--json', '--limit', '0']).stdout) as Array<{ disk: string | null; payload: any }>;
  const silentlyLost: string[] = [];
  for (const { i } of acked) {
    const held = locks.some((l) => l.disk === disk(i)) && kernelHeld(lockspace, disk(i));
    const reported = lost.some((f) => f.disk === disk(i) || JSON.stringify(f.payload).includes(disk(i)));
    if (!held && !reported) silentlyLost.push(`d${i} (acknowledged ${faultAt - acked.find((x) => x.i === i)!.at} ms before the fault)`);
  }
  assert.equal(silentlyLost, [], `locks silently lost after the repair and restart: ${silentlyLost.join(', ')}\n${again.stderr}`);

  // Another host on the same lockspace cannot take any of them.
  const b = new TestDaemon({ stateDir: path.join(base, 'state-b'), lockspace, hostId: 'b', socket: path.join(base, 'b.sock') });
  cleanups.push(() => b.kill('SIGKILL'));
  await b.start(60_000);
  for (const { i } of acked) {
    if (!locks.some((l) => l.disk === disk(i))) continue;
    const r = b.cli(['acquire', '--vm', uuid(9, i), disk(i)]);
    assert.is(r.code, 3, `host b acquired d${i}, which host a had acknowledged before the fault: ${r.stdout}${r.stderr}`);
  }
  const retaken = JSON.parse(again.cli(['audit', '--kind', 'Reacquired', '--json', '--limit', '0']).stdout) as Array<{ payload: { found?: boolean } }>;
  const found = retaken.filter((f) => f.payload.found === true).length;
  if (found > 0) {
    // Loud, and visible in status: found, not remembered.
    assert.match(again.stderr, /FOUND \d+ lock\(s\)/);
    assert.is(JSON.parse(again.cli(['status', '--json']).stdout).started?.found, found);
  }
  return { found, held: locks.length };
}

test('SIGKILL while the state directory is read-only after an ext4 error: after e2fsck and a restart every acknowledged lock is held again', async () => {
  await scenario(1, async (d) => {
    await d.kill('SIGKILL');
  });
});

test('the daemon stays up while its state directory is read-only: refuses new commands naming EROFS, keeps held locks; after e2fsck and a restart every lock is held again', async () => {
  await scenario(2, async (d, { disk, lockspace, state, held }) => {
    // A new command cannot be journaled: refused, naming EROFS and the file, and no lock taken.
    let refused: { code: string; message: string } | undefined;
    await until('an acquisition refused on the read-only state directory', () => {
      const r = d.cli(['acquire', '--json', '--vm', uuid(2, 900), disk(900)]);
      if (r.code === 0) {
        // Written before the kernel noticed? Then it was journaled: let it go and try again.
        d.cli(['release', '--vm', uuid(2, 900)]);
        return false;
      }
      refused = JSON.parse(r.stdout);
      return true;
    }, 30_000);
    assert.is(refused!.code, 'VMLOCKD_ERR_JOURNAL');
    assert.match(refused!.message, /EROFS/);
    assert.ok(refused!.message.includes(state), refused!.message);
    assert.not.ok(kernelHeld(lockspace, disk(900)), 'the refused acquisition left its lock behind');
    // A release cannot be journaled either: the lock stays.
    const rel = d.cli(['release', '--json', '--vm', uuid(2, held[0]!)]);
    assert.is(rel.code, 1, rel.stdout + rel.stderr);
    assert.match(JSON.parse(rel.stdout).message, /still held/);
    // Every held lock stays held while the daemon runs read-only, and status says why.
    const st = JSON.parse(d.cli(['status', '--json']).stdout);
    assert.is(st.journalTrouble?.refusing, true);
    assert.is(st.journalTrouble?.stage?.errno, 'EROFS');
    await sleep(1500);
    for (const i of held) assert.ok(kernelHeld(lockspace, disk(i)), `d${i} dropped while the state directory was read-only`);
    assert.is(d.proc!.exitCode, null, `the daemon died on a read-only state directory:\n${d.stderr}`);
    assert.match(d.stderr, /filesystem is read-only.*every held lock stays held/);
    // A stop that cannot journal its last facts still stops.
    const exit = await d.kill('SIGTERM');
    assert.is(exit.signal, null, `SIGTERM on a read-only state directory: ${JSON.stringify(exit)}\n${d.stderr}`);
  });
});

test('journal_sync = "write": what the journal lost is found in the lockspace holder records, held again and journaled as found', async () => {
  const r = await scenario(
    3,
    async (d) => {
      await d.kill('SIGKILL');
    },
    ['--journal-sync', 'write'],
  );
  if (r === undefined) return;
  // Without the fdatasync the staging file's unsynced tail is gone after the repair (all 11 of 11
  // in every run here: nothing reaches the disk before the 30 s dirty-page expiry), so the locks
  // come back through the lockspace scan, each Reacquired with found: true.
  console.log(`  variant 3: ${r.found} of ${r.held} held locks came back as found`);
  assert.ok(r.found > 0, `no lock was journaled as found (${r.held} held): did the staging file keep them all?`);
});

// review13b (HIGH): the killed process had moved its staged facts into SQLite (WAL written, not
// synced under synchronous=NORMAL); the restart found nothing new to move, yet cut the staging file
// and preallocate() zeroed and synced it: the only synced copy of acknowledged facts was gone before
// the WAL reached the disk. An ext4 error then lost seq 1-7 and the daemon could not start ("seq 8
// does not follow seq 0"). Recovery now syncs the WAL whenever the staging file held any line.
test('SIGKILL after the facts moved into SQLite, restart at once, then an ext4 error: acknowledged facts survive and the daemon starts', async () => {
  const base = tmpdir('vmlockd-durable-');
  const ext4 = failingExt4(base);
  if (typeof ext4 === 'string') {
    console.log(`  skipped: ${ext4}`);
    return;
  }
  cleanups.push(() => {
    ext4.cleanup();
    fs.rmSync(base, { recursive: true, force: true });
  });
  const lockspace = path.join(base, 'lockspace');
  const disk = diskImages(base);
  const mk = () => {
    const d = new TestDaemon({ stateDir: ext4.dir, lockspace, hostId: 'a', socket: path.join(base, 'a.sock') });
    cleanups.push(() => d.kill('SIGKILL'));
    return d;
  };
  const a = mk();
  await a.start(60_000);
  for (let i = 1; i <= 3; i++) {
    const r = a.cli(['acquire', '--vm', uuid(4, i), disk(i)]);
    assert.is(r.code, 0, `acquire d${i}: ${r.stdout}${r.stderr}`);
  }
  // Moved into SQLite (the flush runs 2 ms after an append): what is staged is already in the WAL.
  const stage = path.join(ext4.dir, 'journal.db-stage');
  await until('the staged facts moved into SQLite', () => {
    const r = a.cli(['audit', '--kind', 'LockAcquired', '--json', '--limit', '0']);
    return r.code === 0 && (JSON.parse(r.stdout) as unknown[]).length === 3 && !/not yet in the journal/.test(r.stderr);
  }, 30_000);
  assert.ok(fs.existsSync(stage), `no staging file at ${stage}`);
  await a.kill('SIGKILL');
  // A restart at once (systemd's Restart=): the staging file is cut and zeroed; the WAL must be synced first.
  const b = mk();
  await b.start(60_000);
  ext4.fault();
  await b.kill('SIGKILL');
  ext4.repair();
  const c = mk();
  try {
    await c.start(60_000);
  } catch (e) {
    assert.unreachable(`the daemon cannot start after the repair: ${(e as Error).message}\n${c.stderr}`);
  }
  const acquired = JSON.parse(c.cli(['audit', '--kind', 'LockAcquired', '--json', '--limit', '0']).stdout) as Array<{ disk: string | null }>;
  const missing = [1, 2, 3].filter((i) => !acquired.some((f) => f.disk === disk(i)));
  assert.equal(missing.map((i) => `d${i}`), [], `acknowledged LockAcquired facts lost from the journal\n${c.stderr}`);
});

/**
 * "listening on" comes before the start's last step, binding handoff.sock in the state directory: a
 * fault before that fails the start (EROFS) and the daemon exits. Wait for it before the fault.
 */
async function startFinished(d: TestDaemon, stateDir: string): Promise<void> {
  const handoff = path.join(stateDir, 'handoff.sock');
  for (let i = 0; i < 400 && !fs.existsSync(handoff); i++) await sleep(50);
  assert.ok(fs.existsSync(handoff), `no ${handoff}\n${d.stderr}`);
}

// review13b (MEDIUM): a bad /v1/events line was answered (VMLOCKD_ERR_BAD_INPUT) on a microtask,
// before the group commit of its InputRejected fact: with the journal failing the fact was never
// written, yet the client had its answer. The answer now waits for the fact like any reply.
test('a bad ingest line is answered only once its InputRejected fact is durable: on a read-only journal the answer names the journal error', async () => {
  const base = tmpdir('vmlockd-durable-');
  const ext4 = failingExt4(base);
  if (typeof ext4 === 'string') {
    console.log(`  skipped: ${ext4}`);
    return;
  }
  cleanups.push(() => {
    ext4.cleanup();
    fs.rmSync(base, { recursive: true, force: true });
  });
  const d = new TestDaemon({ stateDir: ext4.dir, lockspace: path.join(base, 'lockspace'), hostId: 'a', socket: path.join(base, 'a.sock') });
  cleanups.push(() => d.kill('SIGKILL'));
  await d.start(60_000);
  await startFinished(d, ext4.dir);
  ext4.fault();
  const net = await import('node:net');
  const body = '{not json\n';
  const text = await new Promise<string>((resolve, reject) => {
    const c = net.connect(d.socket);
    const parts: Buffer[] = [];
    c.on('data', (b: Buffer) => parts.push(b));
    c.on('error', reject);
    c.on('close', () => resolve(Buffer.concat(parts).toString('utf8')));
    c.write(`POST /v1/events HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/x-ndjson\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  });
  const answer = text.split('\n').find((l) => l.startsWith('{"line"'));
  assert.ok(answer !== undefined, text);
  const a = JSON.parse(answer!) as { line: number; status: string; code: string; message: string };
  assert.is(a.line, 1);
  assert.is(a.code, 'VMLOCKD_ERR_JOURNAL', `answered although its InputRejected fact could not be written: ${answer}\n${d.stderr.slice(-600)}`);
  assert.match(a.message, /EROFS|read-only/, a.message);
  assert.match(a.message, /refused \(/, a.message);
});

// The virtlockd protocol server answered a rejected frame (RPC error, INVALID_ARG, bad flags) and
// closed a connection whose frame was too malformed to answer before the frame's InputRejected fact
// was written: with the journal failing, the client had a definite answer for a rejection the audit
// trail never got. Both now wait for the fact's group commit like any reply; a rejection the journal
// could not record is answered INTERNAL_ERROR 1/51 naming it and the journal's error (docs/protocol.md D14).
async function protocolDaemon(base: string, stateDir: string): Promise<{ d: TestDaemon; vsock: string }> {
  const vsock = path.join(base, 'virtlockd-sock');
  const d = new TestDaemon({ stateDir, lockspace: path.join(base, 'lockspace'), hostId: 'a', socket: path.join(base, 'a.sock'), extra: ['--virtlockd-socket', vsock] });
  cleanups.push(() => d.kill('SIGKILL'));
  await d.start(60_000);
  for (let i = 0; i < 200 && !fs.existsSync(vsock); i++) await sleep(50);
  assert.ok(fs.existsSync(vsock), `no virtlockd socket at ${vsock}\n${d.stderr}`);
  await startFinished(d, stateDir);
  return { d, vsock };
}

interface RawConn {
  readonly socket: import('node:net').Socket;
  readonly received: Buffer[];
  closed: boolean;
}

async function rawConn(socketPath: string): Promise<RawConn> {
  const net = await import('node:net');
  const socket = net.createConnection(socketPath);
  const r: RawConn = { socket, received: [], closed: false };
  socket.on('data', (c: Buffer) => r.received.push(c));
  socket.on('close', () => (r.closed = true));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return r;
}

/** A CALL to a program vmlockd does not serve: answered with an RPC error, journaled as InputRejected. */
function wrongProgramFrame(serial: number): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(28, 0);
  b.writeUInt32BE(0x12345678, 4); // prog
  b.writeUInt32BE(1, 8); // vers
  b.writeInt32BE(1, 12); // proc
  b.writeInt32BE(0, 16); // CALL
  b.writeUInt32BE(serial, 20);
  b.writeInt32BE(0, 24); // OK
  return b;
}

test('virtlockd protocol: a rejected frame is answered only once its InputRejected fact is durable: on a read-only journal the answer is INTERNAL_ERROR naming the journal error', async () => {
  const base = tmpdir('vmlockd-durable-');
  const ext4 = failingExt4(base);
  if (typeof ext4 === 'string') {
    console.log(`  skipped: ${ext4}`);
    return;
  }
  cleanups.push(() => {
    ext4.cleanup();
    fs.rmSync(base, { recursive: true, force: true });
  });
  const { d, vsock } = await protocolDaemon(base, ext4.dir);
  const { decodeReply } = await import('../../src/events/virtlockd/codec.js');
  const { LockClient, LockRpcError } = await import('../../src/events/virtlockd/client.js');
  // Before the fault: a lease held, so a repeat ACQUIRE by its owner is refused (not re-entrant),
  // which the server journals itself as LockRefused (the engine has no fact for it).
  const ls = path.join(base, 'leases');
  const holder = await LockClient.connect(vsock);
  cleanups.push(() => holder.close().catch(() => undefined));
  await holder.createLockspace(ls);
  // pid 0: no owner pid to watch, so no registry line is needed after the fault.
  await holder.register({ uuid: 'dddddddd-0009-4000-8000-000000000002', name: 'vm2', id: 2, pid: 0 });
  await holder.acquire(ls, 'lease-a', { autocreate: true });
  ext4.fault();
  // A frame the protocol answers with an RPC error (wrong program).
  const r = await rawConn(vsock);
  r.socket.write(wrongProgramFrame(7));
  await until('the reply to the wrong-program frame', () => Buffer.concat(r.received).length >= 28 || r.closed, 30_000);
  const reply = decodeReply(Buffer.concat(r.received));
  assert.is(reply.kind, 'error');
  const e = (reply as { error: { code: number; domain: number; message: string | null } }).error;
  assert.is(e.code, 1, `answered ${e.code}/${e.domain} "${e.message}" although its InputRejected fact could not be written\n${d.stderr.slice(-600)}`);
  assert.is(e.domain, 51);
  assert.match(e.message ?? '', /refused \(bad frame from pid \d+: Cannot find program/);
  assert.match(e.message ?? '', /EROFS|read-only/);
  r.socket.destroy();
  // A call the server itself refuses as INVALID_ARG (a resource name outside the lockspace).
  const c = await LockClient.connect(vsock);
  try {
    // pid 0: no owner pid to watch, so the registry file (on the read-only filesystem) is not written.
    await c.register({ uuid: 'dddddddd-0009-4000-8000-000000000001', name: 'vm1', id: 1, pid: 0 });
    const err = await c.acquire('', 'relative/name', {}).then(
      () => null,
      (x: unknown) => x,
    );
    assert.instance(err, LockRpcError);
    const x = err as InstanceType<typeof LockRpcError>;
    assert.is(x.code, 1, `answered ${x.code}/${x.domain} "${x.message}" although its InputRejected fact could not be written`);
    assert.match(x.message, /refused \(a resource in the default lockspace/);
    assert.match(x.message, /EROFS|read-only/);
  } finally {
    await c.close().catch(() => undefined);
  }
  // The repeat ACQUIRE: its refusal's LockRefused fact cannot be written, so it is not answered as a refusal.
  const again = await holder.acquire(ls, 'lease-a', { autocreate: true }).then(
    () => null,
    (x: unknown) => x,
  );
  assert.instance(again, LockRpcError);
  const y = again as InstanceType<typeof LockRpcError>;
  assert.is(y.code, 1, `answered ${y.code}/${y.domain} "${y.message}" although its LockRefused fact could not be written`);
  assert.match(y.message, /refused \(resource busy: Lockspace resource 'lease-a' is locked.*\), but the journal could not record its LockRefused fact/);
});

test('virtlockd protocol: a frame too malformed to answer closes its connection only once its InputRejected fact is durable, and an answered one is answered only then (journal filesystem frozen)', async () => {
  const base = tmpdir('vmlockd-durable-');
  const ext4 = failingExt4(base);
  if (typeof ext4 === 'string') {
    console.log(`  skipped: ${ext4}`);
    return;
  }
  let frozen = false;
  const thaw = () => {
    if (frozen) spawnSync('fsfreeze', ['-u', ext4.dir]);
    frozen = false;
  };
  cleanups.push(() => {
    thaw();
    ext4.cleanup();
    fs.rmSync(base, { recursive: true, force: true });
  });
  const { d, vsock } = await protocolDaemon(base, ext4.dir);
  // Let the start's facts settle into SQLite first: nothing is written while the daemon idles.
  await sleep(1000);
  const short = await rawConn(vsock);
  const answered = await rawConn(vsock);
  // fsfreeze: every write to the journal's filesystem blocks until the thaw (the kernel's own freeze).
  const f = run('fsfreeze', ['-f', ext4.dir]);
  if (f.code !== 0) {
    console.log(`  skipped: fsfreeze failed: ${f.out}`);
    return;
  }
  frozen = true;
  cleanups.push(thaw);
  const tooShort = Buffer.alloc(4);
  tooShort.writeUInt32BE(8, 0); // a length word below the 28-byte minimum: the connection is closed
  short.socket.write(tooShort);
  answered.socket.write(wrongProgramFrame(9));
  // Nothing may reach the clients while the facts cannot be written (before: the close and the reply came at once).
  await sleep(1500);
  const early = { closed: short.closed, replied: answered.received.length > 0 };
  thaw();
  assert.equal(early, { closed: false, replied: false }, 'a rejection reached its client while its InputRejected fact could not be written');
  await until('the malformed frame\'s connection closed after the thaw', () => short.closed, 30_000);
  await until('the wrong-program reply after the thaw', () => answered.received.length > 0, 30_000);
  answered.socket.destroy();
  const rejected = d.cli(['audit', '--json', '--kind', 'InputRejected', '--limit', '100']);
  assert.is(rejected.code, 0, rejected.stderr);
  const messages = (JSON.parse(rejected.stdout) as Array<{ payload: { message: string } }>).map((x) => x.payload.message);
  assert.ok(messages.some((m) => /below the 28-byte minimum/.test(m)), messages.join('\n'));
  assert.ok(messages.some((m) => /Cannot find program/.test(m)), messages.join('\n'));
});

test.run();
