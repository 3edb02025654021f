// Frames on the virtlockd protocol socket, against a real daemon over raw connections: a frame that
// was started gets a bounded time to complete (issue 12.7), an idle connection between frames is
// never timed out (QEMU keeps its own connection idle for its whole life), and the size limit holds
// (issue 12.2): the length word alone decides, nothing over it is buffered.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rmSync } from 'node:fs';
import * as net from 'node:net';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { LOCK_PROGRAM, MAX_FRAME_BYTES, encodeFrame } from '../../src/events/virtlockd/codec.js';
import { tmpdir } from '../helpers/daemon.js';
import { audit, serve, sleep, until } from '../helpers/protocol-serve.js';

const TIMEOUT_MS = 1500;

interface Raw {
  readonly socket: net.Socket;
  readonly received: Buffer[];
  closed: boolean;
}

async function raw(path: string): Promise<Raw> {
  const socket = net.createConnection(path);
  const r: Raw = { socket, received: [], closed: false };
  socket.on('data', (c: Buffer) => r.received.push(c));
  socket.on('close', () => (r.closed = true));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return r;
}

/** CREATE_LOCKSPACE("") as one frame: always answered OK, needs no registration. */
function createDefaultLockspace(serial: number): Buffer {
  return encodeFrame({ prog: LOCK_PROGRAM, vers: 1, proc: 8, type: 0, serial, status: 0 }, Buffer.alloc(4));
}

test('given connections that start a frame and stop, then each is closed once the frame timeout passes, while idle and slow-but-complete connections are served', async () => {
  const dir = tmpdir('vmlockd-vfr-');
  const s = await serve(dir, [], { VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS: String(TIMEOUT_MS) });
  const conns: Raw[] = [];
  try {
    // 200 half-sent frames: a length word for 100 bytes, then 10 of them.
    for (let i = 0; i < 200; i++) {
      const r = await raw(s.socket);
      const partial = Buffer.alloc(10);
      partial.writeUInt32BE(100, 0);
      r.socket.write(partial);
      conns.push(r);
    }
    // One idle connection that completed its calls (QEMU's own connection after REGISTER, RESTRICT).
    const idle = await raw(s.socket);
    idle.socket.write(createDefaultLockspace(1));
    await until('the idle connection\'s reply', () => idle.received.length > 0);
    // One that sends a frame in two halves, well within the timeout.
    const slow = await raw(s.socket);
    const frame = createDefaultLockspace(2);
    slow.socket.write(frame.subarray(0, 7));
    await sleep(TIMEOUT_MS / 5);
    slow.socket.write(frame.subarray(7));
    await until('the slow connection\'s reply', () => slow.received.length > 0);
    await until('every half-sent frame\'s connection to be closed', () => conns.every((c) => c.closed), 30_000);
    assert.not.ok(idle.closed, 'an idle connection between frames is never timed out');
    assert.not.ok(slow.closed);
    idle.socket.write(createDefaultLockspace(3));
    await until('the idle connection to answer again', () => idle.received.length > 1);
    const rejected = audit(s.daemon, 'InputRejected').map((f) => String(f.payload.message));
    assert.is(rejected.filter((m) => m.includes(`a frame was started but not completed within ${TIMEOUT_MS} ms (10 bytes received)`)).length, 200, rejected.slice(0, 3).join('\n'));
    idle.socket.destroy();
    slow.socket.destroy();
  } finally {
    for (const c of conns) c.socket.destroy();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given frame lengths at and over the limit, then over it closes at once and at it is only buffered until the frame timeout', async () => {
  const dir = tmpdir('vmlockd-vfr-');
  const s = await serve(dir, [], { VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS: String(TIMEOUT_MS) });
  try {
    const over = await raw(s.socket);
    const word = Buffer.alloc(4);
    word.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    over.socket.write(word);
    await until('an over-long length word to close the connection', () => over.closed, 10_000);
    assert.equal(over.received, [], 'no frame is sent back');
    // At the limit: accepted as a length, 1 MiB sent, then nothing: closed by the timeout.
    const at = await raw(s.socket);
    const head = Buffer.alloc(1024 * 1024);
    head.writeUInt32BE(MAX_FRAME_BYTES, 0);
    at.socket.write(head);
    await until('a stalled maximal frame to be closed', () => at.closed, 30_000);
    const rejected = audit(s.daemon, 'InputRejected').map((f) => String(f.payload.message));
    assert.ok(rejected.some((m) => m.includes(`packet ${MAX_FRAME_BYTES - 3} bytes received too large`)), rejected.join('\n'));
    assert.ok(rejected.some((m) => m.includes('not completed within')), rejected.join('\n'));
    // The daemon still serves.
    const c = await LockClient.connect(s.socket);
    await c.createLockspace('');
    await c.close();
  } finally {
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
