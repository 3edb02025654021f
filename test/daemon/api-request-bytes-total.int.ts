// review27 (invariant 10): the control API bounded each /v1/hook body (80 MiB) but not the bodies held
// at once across connections, nor the domain XML they queue for the parser: ten callers each sending
// a large body held gigabytes in the daemon. api-server.ts REQUEST_BYTES_MAX (96 MiB) bounds the bytes
// held from a body's first byte until its answer: past it the request holding the most is answered 503
// (once its rest is read and dropped) and closed, the daemon goes on answering, and the smaller one
// is still read.
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
const sockets: net.Socket[] = [];
test.after.each(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const d of running.splice(0)) await d.kill();
});

function status(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const r = http.request({ socketPath, path: '/v1/status', method: 'GET' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    r.on('error', reject);
    r.end();
  });
}

/** A /v1/hook request announcing `announced` body bytes, of which `sent` are written; what comes back is collected. */
async function partialHook(socketPath: string, announced: number, sent: number): Promise<{ sock: net.Socket; answer: () => string; written: Promise<void> }> {
  const sock = net.createConnection(socketPath);
  sockets.push(sock);
  let text = '';
  sock.setEncoding('utf8');
  sock.on('data', (c: string) => (text += c));
  sock.on('error', () => undefined);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(`POST /v1/hook HTTP/1.1\r\nhost: vmlockd\r\ncontent-type: application/json\r\ncontent-length: ${announced}\r\n\r\n`);
  const chunk = Buffer.alloc(1 << 20, 0x61);
  const written = (async () => {
    sock.write('{"xml":"');
    for (let n = 8; n < sent; n += chunk.length) {
      if (sock.destroyed) return;
      if (!sock.write(chunk.subarray(0, Math.min(chunk.length, sent - n)))) await new Promise((r) => sock.once('drain', r));
    }
  })();
  return { sock, answer: () => text, written };
}

test('request bodies held at once are bounded: the largest is refused 503, the daemon goes on', async () => {
  const root = tmpdir('vmlockd-r27-bodies-');
  const d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'ls'), hostId: 'h1' });
  running.push(d);
  const big = await partialHook(d.socket, 75 << 20, 60 << 20);
  await big.written;
  // Everything written is read by the daemon before the second starts (nothing answered yet).
  await new Promise((r) => setTimeout(r, 1000));
  assert.is(big.answer(), '', 'the first body alone fits the budget');
  const small = await partialHook(d.socket, 75 << 20, 40 << 20);
  await small.written;
  // The refused body's rest is read and dropped; its 503 comes at its end (no reset while it writes).
  big.sock.write(Buffer.alloc((75 << 20) - (60 << 20), 0x61));
  const t0 = Date.now();
  while (!big.answer().includes('\r\n\r\n') && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 100));
  assert.match(big.answer(), /^HTTP\/1\.1 503/, `the larger request is refused once 100 MiB are held: ${big.answer().slice(0, 300)}`);
  assert.match(big.answer(), 'request bodies at once');
  assert.is(small.answer(), '', 'the smaller request is not refused');
  assert.is(await status(d.socket), 200, 'the daemon answers on');
  assert.ok(d.proc !== undefined && d.proc.exitCode === null, 'the daemon runs');
});

test.run();
