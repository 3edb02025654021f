import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { VmlockdError } from '../../src/engine/errors.js';
import {
  FrameReader,
  LOCK_PROGRAM,
  MSG_TYPE,
  PROC,
  checkFlags,
  decodeCall,
  decodeFailed,
  decodeHeader,
  defaultLockspaceExists,
  lockspaceExists,
  lockspaceMissing,
  noProgram,
  notRegistered,
  openFailed,
  ownerNotHolding,
  restricted,
  unexpectedStatus,
  unknownProc,
  type RpcErrorSpec,
  encodeCall,
  encodeErrorReply,
  encodeFrame,
  encodeKeepalive,
  encodeOkReply,
  notLocked,
  resourceBusy,
  type Header,
} from '../../src/events/virtlockd/codec.js';
import { LockClient, LockRpcError } from '../../src/events/virtlockd/client.js';

const FILES = '/var/lib/libvirt/lockd/files';
const LEASE = '0590089b1c3be5b105c84e8a36464becebe44b1764e00a3c1ee9ffaeb1b1c487';
const OWNER_A = { uuid: '00112233445566778899aabbccddeeff', name: 'vm-a', id: 1, pid: 4242 };
const OWNER_B = { uuid: 'ffeeddcc-bbaa-9988-7766-554433221100', name: 'vm-b', id: 2, pid: 4343 };
// Captured from virtlockd 9.0.0 (VIRTLOCKD_PROTOCOL.md §6 (a), (c), (e), (g)).
const REG_A = '000000400ea7beef000000010000000100000000000000000000000000112233445566778899aabbccddeeff00000004766d2d61000000010000109200000000';
const ACQUIRE_1 =
  '000000840ea7beef00000001000000060000000000000001000000000000001c2f7661722f6c69622f6c6962766972742f6c6f636b642f66696c6573000000403035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383700000002';
const RELEASE_2 =
  '000000840ea7beef00000001000000070000000000000002000000000000001c2f7661722f6c69622f6c6962766972742f6c6f636b642f66696c6573000000403035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383700000000';
const UNKNOWN_9 = '000000200ea7beef000000010000000900000000000000050000000000000000';
const UNKNOWN_9_REPLY =
  '000000800ea7beef000000010000000900000001000000050000000100000027000000070000000100000014756e6b6e6f776e2070726f6365647572653a203900000002000000000000000100000002257300000000000100000014756e6b6e6f776e2070726f6365647572653a203900000000ffffffffffffffff00000000';

// ── a tiny in-test server built on the codec ────────────────────────────────────────────────

interface EchoServer {
  readonly path: string;
  /** Every frame received, hex, in order. */
  readonly received: string[];
  /** Highest number of calls seen waiting for a reply at once on one connection. */
  maxInFlight: number;
  close(): Promise<void>;
}

/** Answers OK to every call, except ACQUIRE of "held" (busy) and RELEASE of "free" (not locked). */
async function startEchoServer(dir: string, replyDelayMs = 0): Promise<EchoServer> {
  const path = join(dir, 'echo.sock');
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const state = { maxInFlight: 0 };
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    const reader = new FrameReader();
    let inFlight = 0;
    const answer = (bytes: Buffer): void => {
      setTimeout(() => {
        inFlight--;
        if (!sock.destroyed) sock.write(bytes);
      }, replyDelayMs);
    };
    sock.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        if (f.kind === 'fatal') {
          sock.destroy();
          return;
        }
        received.push(f.bytes.toString('hex'));
        const d = decodeCall(f.bytes);
        switch (d.kind) {
          case 'call': {
            inFlight++;
            state.maxInFlight = Math.max(state.maxInFlight, inFlight);
            const c = d.call;
            if (c.proc === PROC.ACQUIRE_RESOURCE && c.name === 'held') answer(encodeErrorReply(d.header, resourceBusy(c.name)));
            else if (c.proc === PROC.RELEASE_RESOURCE && c.name === 'free') answer(encodeErrorReply(d.header, notLocked(c.name)));
            else answer(encodeOkReply(d.header));
            break;
          }
          case 'error':
            inFlight++;
            answer(encodeErrorReply(d.header, d.error));
            break;
          case 'reply':
            sock.write(d.reply);
            break;
          case 'drop':
            break;
          case 'close':
            sock.destroy();
            return;
          default: {
            const _exhaustive: never = d;
            throw new Error(`unhandled ${String(_exhaustive)}`);
          }
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    received,
    get maxInFlight() {
      return state.maxInFlight;
    },
    set maxInFlight(v: number) {
      state.maxInFlight = v;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

let dir = '';
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmlockd-vlk-'));
});
test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('given a fresh connection, when the client registers, acquires and releases, then its frames are the plugin\'s bytes', async () => {
  const srv = await startEchoServer(dir);
  try {
    const c = await LockClient.connect(srv.path);
    assert.is(c.nextSerial, 0);
    await c.register(OWNER_A);
    await c.acquire(FILES, LEASE, { autocreate: true });
    await c.release(FILES, LEASE);
    await c.createLockspace(FILES);
    await c.newLockspace('/x');
    await c.createResource('/x', 'r');
    await c.deleteResource('/x', 'r');
    await c.acquire('/x', 'r', { shared: true, autocreate: true });
    await c.restrict();
    await c.close();
    assert.equal(srv.received.slice(0, 3), [REG_A, ACQUIRE_1, RELEASE_2]);
    assert.is(srv.received[3], encodeCall(PROC.CREATE_LOCKSPACE, 3, { path: FILES }).toString('hex'));
    const procs = srv.received.map((h) => [Buffer.from(h, 'hex').readInt32BE(12), Buffer.from(h, 'hex').readUInt32BE(20)]);
    assert.equal(procs, [
      [1, 0], [6, 1], [7, 2], [8, 3], [3, 4], [4, 5], [5, 6], [6, 7], [2, 8],
    ]);
    assert.is(Buffer.from(srv.received[7]!, 'hex').readUInt32BE(Buffer.from(srv.received[7]!, 'hex').length - 4), 3, 'SHARED|AUTOCREATE');
    assert.ok(c.closed);
  } finally {
    await srv.close();
  }
});

test('given an ERROR reply, when a call fails, then it rejects with code, domain and message and the connection stays usable', async () => {
  const srv = await startEchoServer(dir);
  try {
    const c = await LockClient.connect(srv.path);
    await c.register({ ...OWNER_B });
    const err = await c.acquire(FILES, 'held', { autocreate: true }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.instance(err, LockRpcError);
    const e = err as LockRpcError;
    assert.equal([e.code, e.domain, e.message], [87, 51, "resource busy: Lockspace resource 'held' is locked"]);
    assert.equal([e.proc, e.serial, e.rpc.str1, e.rpc.int1], [PROC.ACQUIRE_RESOURCE, 1, 'resource busy: %s', -1]);
    const e2 = (await c.release(FILES, 'free').catch((x: unknown) => x)) as LockRpcError;
    assert.equal([e2.code, e2.domain, e2.message], [87, 51, "resource busy: Lockspace resource 'free' is not locked"]);
    await c.release(FILES, 'other');
    assert.is(c.nextSerial, 4);
    await c.close();
  } finally {
    await srv.close();
  }
});

test('given several calls issued at once, then the client keeps one outstanding request at a time, in order', async () => {
  const srv = await startEchoServer(dir, 20);
  try {
    const c = await LockClient.connect(srv.path);
    await Promise.all([c.register(OWNER_A), c.acquire(FILES, 'a'), c.acquire(FILES, 'b'), c.release(FILES, 'a')]);
    assert.is(srv.maxInFlight, 1);
    assert.equal(
      srv.received.map((h) => Buffer.from(h, 'hex').readUInt32BE(20)),
      [0, 1, 2, 3],
    );
    await c.close();
  } finally {
    await srv.close();
  }
});

test('given raw frames, when sent, then replies, drops and closes are told apart', async () => {
  const srv = await startEchoServer(dir);
  try {
    const c = await LockClient.connect(srv.path);
    assert.is((await c.send(Buffer.from(UNKNOWN_9, 'hex')))?.toString('hex'), UNKNOWN_9_REPLY);
    assert.is((await c.send(encodeKeepalive(1)))?.toString('hex'), encodeKeepalive(2).toString('hex'));
    const message: Header = { prog: LOCK_PROGRAM, vers: 1, proc: 2, type: MSG_TYPE.MESSAGE, serial: 0, status: 0 };
    assert.is(await c.send(encodeFrame(message, Buffer.alloc(4)), { timeoutMs: 150 }), null, 'MESSAGE is dropped');
    assert.not.ok(c.closed, 'and the connection stays usable');
    await c.register(OWNER_A);
    assert.is(await c.send(Buffer.from('00000014', 'hex')), null, 'length 20 closes the connection');
    assert.ok(await c.waitClosed(1000));
    const after = await c.restrict().catch((e: unknown) => e);
    assert.instance(after, VmlockdError);
    assert.is((after as VmlockdError).code, 'VMLOCKD_ERR_IO');
  } finally {
    await srv.close();
  }
});

test('given no socket, when connecting, then VMLOCKD_ERR_UNREACHABLE names the path', async () => {
  const missing = join(dir, 'nobody-here.sock');
  const e = await LockClient.connect(missing).catch((x: unknown) => x);
  assert.instance(e, VmlockdError);
  assert.is((e as VmlockdError).code, 'VMLOCKD_ERR_UNREACHABLE');
  assert.match((e as VmlockdError).message, missing);
});

// ── against the real virtlockd, when installed ──────────────────────────────────────────────

const VIRTLOCKD = process.env.VIRTLOCKD_BIN ?? '/usr/sbin/virtlockd';

// Runs as the daemon's user: an unprivileged virtlockd accepts only peers with its own uid, and a
// privileged one would take the system socket, so as root both sides drop to nobody.
const SCENARIO = `
const fs = await import('node:fs');
const { LockClient } = await import(process.env.CLIENT_URL);
const codec = await import(process.env.CODEC_URL);
const { SOCK, LS, LEASE } = process.env;
const out = { replies: {} };
const hexOf = (b) => (b === null ? null : b.toString('hex'));
// every ERROR reply is kept as raw bytes; the test re-encodes what it expects and compares
const rec = (label, p) => p.then(() => { out.replies[label] = 'OK'; }, (e) => { out.replies[label] = e.reply ? e.reply.toString('hex') : String(e); });
const c0 = await LockClient.connect(SOCK);
await c0.createLockspace(LS);
await c0.createLockspace(LS);
await c0.createLockspace('');
await c0.close();
const a = await LockClient.connect(SOCK);
await a.register({ uuid: '00112233445566778899aabbccddeeff', name: 'vm-a', id: 1, pid: 4242 });
await a.acquire(LS, LEASE, { autocreate: true });
out.leaseAfterAcquire = fs.existsSync(LS + '/' + LEASE);
const b = await LockClient.connect(SOCK);
await b.register({ uuid: 'ffeeddccbbaa99887766554433221100', name: 'vm-b', id: 2, pid: 4343 });
await rec('busy', b.acquire(LS, LEASE, { autocreate: true }));
await a.release(LS, LEASE);
out.leaseAfterRelease = fs.existsSync(LS + '/' + LEASE);
await rec('notLocked', b.release(LS, LEASE));
await rec('acquireSharedAgain', a.acquire(LS, 'sh', { shared: true, autocreate: true }));
await rec('ownerNotHolding', b.release(LS, 'sh'));
const d = await LockClient.connect(SOCK);
await rec('notRegistered', d.acquire(LS, 'x', { autocreate: true }));
await rec('registerIdZero', d.register({ uuid: '00000000000000000000000000000001', name: 'z', id: 0, pid: 1 }));
await d.register({ uuid: '00000000000000000000000000000002', name: 'vm-d', id: 4, pid: 5555 });
await rec('badFlags', d.acquire(LS, 'x', { flags: 6 }));
await rec('badRestrictFlags', d.restrict(1));
await rec('lockspaceMissing', d.acquire(LS + '-nope', 'x', { autocreate: true }));
await rec('openFailed', d.acquire(LS, 'missing-file'));
await rec('defaultLockspaceExists', d.newLockspace(''));
await rec('lockspaceExists', d.newLockspace(LS));
const e = await LockClient.connect(SOCK);
const H = (over) => ({ prog: codec.LOCK_PROGRAM, vers: 1, proc: 2, type: 0, serial: 9, status: 0, ...over });
const flags0 = Buffer.alloc(4);
out.raw = {
  unknown9: hexOf(await e.send(Buffer.from(process.env.UNKNOWN_9, 'hex'))),
  wrongProg: hexOf(await e.send(codec.encodeFrame(H({ prog: codec.LOCK_PROGRAM + 1 }), flags0))),
  wrongVers: hexOf(await e.send(codec.encodeFrame(H({ vers: 2 }), flags0))),
  badStatus: hexOf(await e.send(codec.encodeFrame(H({ status: 1 }), flags0))),
  proc0: hexOf(await e.send(codec.encodeFrame(H({ proc: 0 }), flags0))),
  tooLongName: hexOf(await e.send(codec.encodeFrame(H({ proc: 8 }), Buffer.concat([Buffer.from('00010001', 'hex'), Buffer.alloc(65540, 0x61)])))),
  ping: hexOf(await e.send(codec.encodeKeepalive(1))),
  message: hexOf(await e.send(codec.encodeFrame(H({ type: 2 }), flags0), { timeoutMs: 300 })),
  reply: hexOf(await e.send(codec.encodeFrame(H({ type: 1 }), flags0), { timeoutMs: 300 })),
  extraBytes: hexOf(await e.send(codec.encodeFrame(H({ proc: 8 }), Buffer.concat([Buffer.from('00000000', 'hex'), Buffer.alloc(8, 0xee)])))),
  withFdsZero: hexOf(await e.send(codec.encodeFrame(H({ type: 4 }), Buffer.concat([Buffer.alloc(4), flags0])))),
};
out.openAfterDrops = !e.closed;
// virtlockd reads length-4 bytes before it finds the header missing, so the 16 bytes must follow
out.raw.short = hexOf(await e.send(Buffer.concat([Buffer.from('00000014', 'hex'), Buffer.alloc(16)])));
out.closedAfterShort = await e.waitClosed(2000);
const f = await LockClient.connect(SOCK);
out.raw.tiny = hexOf(await f.send(Buffer.from('00000003', 'hex')));
out.closedAfterTiny = await f.waitClosed(2000);
await d.restrict();
await rec('restricted', d.acquire(LS, 'x', { autocreate: true }));
for (const c of [a, b, d, e, f]) await c.close();
console.log(JSON.stringify(out));
`;

async function waitFor(path: string, ms: number): Promise<boolean> {
  for (let t = 0; t < ms; t += 50) {
    if (existsSync(path)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

if (existsSync(VIRTLOCKD)) {
  test('given the real virtlockd, when two owners contend for one lease, then replies are the documented bytes', async () => {
    const root = mkdtempSync(join(tmpdir(), 'vmlockd-real-'));
    const asNobody = process.getuid?.() === 0;
    const drop = asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
    for (const d of ['run', 'config', 'cache', 'home', 'ls-parent']) mkdirSync(join(root, d), { mode: 0o700 });
    if (asNobody) for (const d of ['', 'run', 'config', 'cache', 'home', 'ls-parent']) chownSync(join(root, d), 65534, 65534);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: join(root, 'home'),
      XDG_RUNTIME_DIR: join(root, 'run'),
      XDG_CONFIG_HOME: join(root, 'config'),
      XDG_CACHE_HOME: join(root, 'cache'),
    };
    const sock = join(root, 'run', 'libvirt', 'virtlockd-sock');
    const ls = join(root, 'ls-parent', 'files');
    const argv = [...drop, VIRTLOCKD, '--timeout=30'];
    let daemon: ChildProcess | undefined;
    try {
      daemon = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      daemon.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      assert.ok(await waitFor(sock, 5000), `virtlockd did not create ${sock}: ${stderr}`);
      const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
      const child = [...drop, process.execPath, '--import', 'tsx', '--input-type=module', '-e', SCENARIO];
      const { stdout } = await promisify(execFile)(child[0]!, child.slice(1), {
        cwd: repoRoot,
        env: {
          ...env,
          CLIENT_URL: pathToFileURL(join(repoRoot, 'src/events/virtlockd/client.ts')).href,
          CODEC_URL: pathToFileURL(join(repoRoot, 'src/events/virtlockd/codec.ts')).href,
          SOCK: sock,
          LS: ls,
          LEASE,
          UNKNOWN_9,
        },
        timeout: 20000,
      });
      const out = JSON.parse(stdout.trim().split('\n').pop()!) as {
        replies: Record<string, string>;
        raw: Record<string, string | null>;
        [k: string]: unknown;
      };
      // Each ERROR reply must equal the codec's encoding of the expected error for that reply's header.
      const same = (label: string, got: string | null | undefined, spec: RpcErrorSpec): void => {
        assert.ok(typeof got === 'string' && got.length >= 56, `${label}: no reply (${String(got)})`);
        assert.is(got, encodeErrorReply(decodeHeader(Buffer.from(got!, 'hex')), spec).toString('hex'), label);
      };
      same('busy', out.replies.busy, resourceBusy(LEASE));
      same('notLocked', out.replies.notLocked, notLocked(LEASE));
      assert.is(out.replies.acquireSharedAgain, 'OK');
      same('ownerNotHolding', out.replies.ownerNotHolding, ownerNotHolding(4343));
      same('notRegistered', out.replies.notRegistered, notRegistered());
      same('registerIdZero', out.replies.registerIdZero, notRegistered());
      same('badFlags', out.replies.badFlags, checkFlags(PROC.ACQUIRE_RESOURCE, 6)!);
      same('badRestrictFlags', out.replies.badRestrictFlags, checkFlags(PROC.RESTRICT, 1)!);
      same('lockspaceMissing', out.replies.lockspaceMissing, lockspaceMissing(ls + '-nope'));
      same('openFailed', out.replies.openFailed, openFailed(join(ls, 'missing-file'), 2));
      same('defaultLockspaceExists', out.replies.defaultLockspaceExists, defaultLockspaceExists());
      same('lockspaceExists', out.replies.lockspaceExists, lockspaceExists(ls));
      same('restricted', out.replies.restricted, restricted());
      assert.is(out.raw.unknown9, UNKNOWN_9_REPLY);
      same('wrongProg', out.raw.wrongProg, noProgram(LOCK_PROGRAM + 1, 1));
      assert.is(decodeHeader(Buffer.from(out.raw.wrongProg!, 'hex')).prog, LOCK_PROGRAM + 1, 'header echoes the caller prog');
      same('wrongVers', out.raw.wrongVers, noProgram(LOCK_PROGRAM, 2));
      same('badStatus', out.raw.badStatus, unexpectedStatus(1));
      same('proc0', out.raw.proc0, unknownProc(0));
      same('tooLongName', out.raw.tooLongName, decodeFailed());
      assert.is(out.raw.ping, encodeKeepalive(2).toString('hex'));
      assert.is(out.raw.message, null, 'MESSAGE dropped');
      assert.is(out.raw.reply, null, 'REPLY dropped');
      assert.is(out.raw.extraBytes, encodeOkReply(decodeHeader(Buffer.from(out.raw.extraBytes!, 'hex'))).toString('hex'));
      // CALL_WITH_FDS with 0 fds is dispatched as a call (unregistered RESTRICT), as decodeCall assumes
      same('withFdsZero', out.raw.withFdsZero, notRegistered());
      assert.is(out.openAfterDrops, true);
      assert.is(out.raw.short, null);
      assert.is(out.closedAfterShort, true, 'length 20 closes the connection');
      assert.is(out.raw.tiny, null);
      assert.is(out.closedAfterTiny, true, 'length 3 closes the connection');
      assert.is(out.leaseAfterAcquire, true);
      assert.is(out.leaseAfterRelease, false, 'AUTOCREATE lease file is unlinked on the last release');
    } finally {
      if (daemon && daemon.exitCode === null) {
        const exited = new Promise((r) => daemon!.once('exit', r));
        daemon.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      }
      rmSync(root, { recursive: true, force: true });
    }
  });
} else {
  console.log(`virtlockd-client.int: skipping the real-virtlockd test: ${VIRTLOCKD} is not installed`);
}

test.run();
