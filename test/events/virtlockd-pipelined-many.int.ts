// review28b (proto28, debdd05: ACQUIRE/RELEASE answered by callback, the reply and the next frame in a
// microtask): many raw connections at once, each pipelining its whole session in one write
// (REGISTER, an ACQUIRE of one contested disk, its own disk taken, released and taken again), some
// closing right after the write (mid-call). Every reply must come on its own connection, in its
// serial order, with its own proc; the contested disk goes to exactly one owner; nothing is left
// in flight.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rmSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { ACQUIRE_FLAG, FrameReader, PROC, decodeReply, encodeCall } from '../../src/events/virtlockd/codec.js';
import { tmpdir } from '../helpers/daemon.js';
import { locks, serve, until } from '../helpers/protocol-serve.js';

interface Conn {
  readonly i: number;
  readonly socket: net.Socket;
  readonly replies: Array<{ serial: number; proc: number; ok: boolean }>;
  readonly sent: Array<{ serial: number; proc: number }>;
  closed: boolean;
}

const uuidOf = (i: number): string => `00000000-0000-4000-8000-${(0x28b000 + i).toString(16).padStart(12, '0')}`;

async function open(sockPath: string, i: number): Promise<Conn> {
  const socket = net.createConnection(sockPath);
  const c: Conn = { i, socket, replies: [], sent: [], closed: false };
  const reader = new FrameReader();
  socket.on('data', (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      if (f.kind !== 'frame') continue;
      const d = decodeReply(f.bytes);
      c.replies.push({ serial: d.header.serial, proc: d.header.proc, ok: d.kind !== 'error' });
    }
  });
  socket.on('close', () => (c.closed = true));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return c;
}

test('given many connections pipelining acquire/release at once, some closing mid-call, then replies never cross, keep their order, and one owner gets the contested disk', async () => {
  const dir = tmpdir('vmlockd-r28b-pipe-');
  const ls = path.join(dir, 'files');
  const s = await serve(dir);
  const conns: Conn[] = [];
  try {
    const lv = await LockClient.connect(s.socket);
    await lv.createLockspace(ls);
    await lv.close();
    const N = Number(process.env.R28B_N ?? 24);
    for (let i = 0; i < N; i++) conns.push(await open(s.socket, i));
    for (const c of conns) {
      // Serials unique across connections: a reply that crossed connections is seen.
      const base = (c.i + 1) * 1000;
      const calls: Array<[number, Buffer]> = [];
      const add = (proc: number, frame: (serial: number) => Buffer) => {
        const serial = base + calls.length;
        calls.push([proc, frame(serial)]);
        c.sent.push({ serial, proc });
      };
      add(PROC.REGISTER, (n) => encodeCall(PROC.REGISTER, n, { owner: { uuid: uuidOf(c.i), name: `vm-${c.i}`, id: c.i + 1, pid: 50_000 + c.i }, flags: 0 }));
      add(PROC.ACQUIRE_RESOURCE, (n) => encodeCall(PROC.ACQUIRE_RESOURCE, n, { path: ls, name: 'contested', flags: ACQUIRE_FLAG.AUTOCREATE }));
      for (let k = 0; k < Number(process.env.R28B_K ?? 3); k++) {
        add(PROC.ACQUIRE_RESOURCE, (n) => encodeCall(PROC.ACQUIRE_RESOURCE, n, { path: ls, name: `own-${c.i}`, flags: ACQUIRE_FLAG.AUTOCREATE }));
        add(PROC.RELEASE_RESOURCE, (n) => encodeCall(PROC.RELEASE_RESOURCE, n, { path: ls, name: `own-${c.i}`, flags: 0 }));
      }
      add(PROC.ACQUIRE_RESOURCE, (n) => encodeCall(PROC.ACQUIRE_RESOURCE, n, { path: ls, name: `own-${c.i}`, flags: ACQUIRE_FLAG.AUTOCREATE | ACQUIRE_FLAG.SHARED }));
      c.socket.write(Buffer.concat(calls.map(([, b]) => b)));
    }
    // Every third connection goes away while its calls are in flight.
    for (const c of conns) if (c.i % 3 === 2) c.socket.destroy();
    const open_ = conns.filter((c) => c.i % 3 !== 2);
    await until('every open connection answered', () => open_.every((c) => c.replies.length >= c.sent.length), 60_000);
    for (const c of conns) {
      const want = c.sent.slice(0, c.replies.length);
      assert.equal(
        c.replies.map((r) => [r.serial, r.proc]),
        want.map((w) => [w.serial, w.proc]),
        `connection ${c.i}: replies in serial order, each its own call's`,
      );
      if (c.i % 3 !== 2) {
        // Its own disk: every take and release answered OK.
        const own = c.replies.slice(2);
        assert.ok(own.every((r) => r.ok), `connection ${c.i}: its own disk's calls all OK: ${JSON.stringify(own)}`);
      }
    }
    const held = locks(s.daemon);
    const contested = held.filter(([name]) => name === 'contested');
    assert.is(contested.length, 1, `one holder of the contested disk: ${JSON.stringify(contested)}`);
    const winner = conns.find((c) => uuidOf(c.i) === contested[0]![2])!;
    if (winner.i % 3 !== 2) assert.ok(winner.replies[1]!.ok, 'the holder was told it got it');
    const granted = open_.filter((c) => c.replies[1]!.ok);
    assert.ok(granted.length <= 1, `at most one connection told it got the contested disk: ${granted.map((c) => c.i)}`);
    // Each open connection's own disk held shared by it alone at the end.
    for (const c of open_) assert.ok(held.some(([name, mode, uuid]) => name === `own-${c.i}` && mode === 'shared' && uuid === uuidOf(c.i)), `own-${c.i} held shared by its owner`);
    // The daemon still answers.
    const probe = await LockClient.connect(s.socket);
    await probe.createLockspace(ls);
    await probe.close();
  } finally {
    for (const c of conns) c.socket.destroy();
    await s.daemon.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given many connections pipelining acquires, when the daemon is SIGKILLed mid-storm, then every acquire answered OK is held after the restart (a reply never precedes its fact)', async () => {
  const dir = tmpdir('vmlockd-r28b-kill-');
  const ls = path.join(dir, 'files');
  let s = await serve(dir);
  const conns: Conn[] = [];
  try {
    const lv = await LockClient.connect(s.socket);
    await lv.createLockspace(ls);
    await lv.close();
    const N = Number(process.env.R28B_N ?? 16);
    const K = Number(process.env.R28B_K ?? 40);
    for (let i = 0; i < N; i++) conns.push(await open(s.socket, i));
    const names = new Map<number, string>();
    for (const c of conns) {
      const base = (c.i + 1) * 1000;
      const frames: Buffer[] = [encodeCall(PROC.REGISTER, base, { owner: { uuid: uuidOf(c.i), name: `vm-${c.i}`, id: c.i + 1, pid: 50_000 + c.i }, flags: 0 })];
      c.sent.push({ serial: base, proc: PROC.REGISTER });
      for (let k = 1; k <= K; k++) {
        const name = `d-${c.i}-${k}`;
        names.set(base + k, name);
        frames.push(encodeCall(PROC.ACQUIRE_RESOURCE, base + k, { path: ls, name, flags: ACQUIRE_FLAG.AUTOCREATE | (k % 2 ? ACQUIRE_FLAG.SHARED : 0) }));
        c.sent.push({ serial: base + k, proc: PROC.ACQUIRE_RESOURCE });
      }
      c.socket.write(Buffer.concat(frames));
    }
    // Kill once some replies came, while most calls are in flight.
    const total = N * (K + 1);
    await until('some replies', () => conns.reduce((n, c) => n + c.replies.length, 0) >= total / 4, 30_000);
    await s.daemon.kill('SIGKILL');
    const acked: Array<[string, string]> = [];
    for (const c of conns) for (const r of c.replies) if (r.proc === PROC.ACQUIRE_RESOURCE && r.ok) acked.push([names.get(r.serial)!, uuidOf(c.i)]);
    for (const c of conns) c.socket.destroy();
    console.log(`r28b kill: ${acked.length} of ${N * K} acquires answered OK before the SIGKILL`);
    assert.ok(acked.length > 0 && acked.length < N * K, `the kill came mid-storm (${acked.length} of ${N * K} answered)`);
    s = await serve(dir);
    const held = new Set(locks(s.daemon).map(([name, , uuid]) => `${name} ${uuid}`));
    const missing = acked.filter(([name, uuid]) => !held.has(`${name} ${uuid}`));
    assert.equal(missing, [], `acquires answered OK but not held after the restart (${missing.length})`);
  } finally {
    for (const c of conns) c.socket.destroy();
    await s.daemon.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
