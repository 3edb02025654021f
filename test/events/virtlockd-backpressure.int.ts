// Replies on the virtlockd protocol socket, against a real daemon over raw connections (review 23b):
// a client that sends calls and never reads the replies cannot grow the daemon (nothing more is read
// from it while more than REPLY_BUFFER_MAX of its replies are unread), and a client that reads
// slowly still gets every reply, in order.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { FrameReader, KEEPALIVE_PROC, PROC, decodeReply, encodeCall, encodeKeepalive } from '../../src/events/virtlockd/codec.js';
import { tmpdir } from '../helpers/daemon.js';
import { serve, sleep, until } from '../helpers/protocol-serve.js';

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : -1;
  } catch {
    return -1;
  }
}

async function connect(path: string): Promise<net.Socket> {
  const sock = net.createConnection(path);
  sock.on('error', () => undefined);
  await new Promise<void>((r) => sock.once('connect', r));
  return sock;
}

test('given a client that sends PINGs and never reads, then the daemon memory stays bounded and it serves others', async () => {
  const dir = tmpdir('vmlockd-backpressure-');
  const s = await serve(dir);
  const pid = s.daemon.proc!.pid!;
  const base = rssMb(pid);
  const sock = await connect(s.socket);
  sock.pause(); // never read a reply
  const ping = encodeKeepalive(KEEPALIVE_PROC.PING);
  const batch = Buffer.concat(Array.from({ length: 64 * 1024 }, () => ping)); // 64Ki PINGs, 1.8 MB
  let sent = 0;
  let peak = base;
  const end = Date.now() + 60_000;
  try {
    // ~110 MB of PINGs (their replies took ~8x that before), or until the daemon has read nothing for 10 s.
    let stalled = 0;
    while (Date.now() < end && peak < base + 500 && rssMb(pid) > 0 && sent < 4 * 1024 * 1024 && stalled < 500) {
      if (sock.writableLength < 8 * batch.length) {
        sock.write(batch);
        sent += 64 * 1024;
        stalled = 0;
      } else stalled++;
      await sleep(20);
      peak = Math.max(peak, rssMb(pid));
    }
    console.log(`backpressure: ${sent} PINGs sent, daemon RSS ${base.toFixed(0)} MB -> peak ${peak.toFixed(0)} MB`);
    assert.ok(peak < base + 200, `daemon RSS grew from ${base.toFixed(0)} MB to ${peak.toFixed(0)} MB on ${sent} unread PINGs (unbounded reply buffer)`);
    // The daemon still answers another client meanwhile.
    const other = await connect(s.socket);
    const got: Buffer[] = [];
    other.on('data', (c: Buffer) => got.push(c));
    other.write(ping);
    await until('a PONG on another connection', () => Buffer.concat(got).length >= ping.length);
    other.destroy();
  } finally {
    sock.destroy();
    await s.daemon.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given a client that pipelines many calls and reads its replies slowly, then it gets every reply in order', async () => {
  const dir = tmpdir('vmlockd-backpressure-');
  const s = await serve(dir);
  const sock = await connect(s.socket);
  const N = 30_000; // unregistered RESTRICTs: each answered with an error reply carrying its serial
  const calls = Buffer.concat(Array.from({ length: N }, (_, i) => encodeCall(PROC.RESTRICT, i + 1, {})));
  const reader = new FrameReader();
  const serials: number[] = [];
  let bytes = 0;
  sock.on('data', (c: Buffer) => {
    bytes += c.length;
    for (const f of reader.push(c)) {
      assert.is(f.kind, 'frame');
      if (f.kind === 'frame') serials.push(decodeReply(f.bytes).header.serial);
    }
  });
  try {
    sock.pause();
    sock.write(calls);
    // Slow reading: a short read now and then.
    const end = Date.now() + 90_000;
    while (serials.length < N && Date.now() < end && !sock.destroyed) {
      sock.resume();
      await sleep(2);
      sock.pause();
      await sleep(30);
    }
    sock.resume();
    await until(`${N} replies (${serials.length} so far)`, () => serials.length >= N, 30_000);
    console.log(`backpressure: ${N} replies, ${bytes} bytes read slowly`);
    assert.ok(bytes > 4 * 256 * 1024, `replies of ${bytes} bytes: not enough to fill the reply buffer bound`);
    assert.is(serials.length, N);
    for (let i = 0; i < N; i++) if (serials[i] !== i + 1) assert.unreachable(`reply ${i} has serial ${serials[i]}, expected ${i + 1}`);
  } finally {
    sock.destroy();
    await s.daemon.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
