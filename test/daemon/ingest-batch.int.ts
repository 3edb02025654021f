// /v1/events answers every line, in the order of the lines, and the answers a group commit makes
// ready go out together: one HTTP chunk for many lines, not one chunk (and one socket write) per line
// (issue 13, ingest throughput). Read on the raw socket so the response's chunks can be counted.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';

const dir = tmpdir('vmlockd-ingest-batch-');
const N = 2000;
let d: TestDaemon;

function uuid(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

test.before(async () => {
  fs.mkdirSync(path.join(dir, 'images'));
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(dir, 'images', `d${i}.img`), '');
  d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'ingest-batch' });
});
test.after(async () => {
  await d.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** POST body to /v1/events on a raw connection; the chunked response's chunks, decoded. */
function rawIngest(socket: string, body: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    const parts: Buffer[] = [];
    c.on('data', (b: Buffer) => parts.push(b));
    c.on('error', reject);
    c.on('end', () => {
      c.end();
      const raw = Buffer.concat(parts).toString('latin1');
      const head = raw.indexOf('\r\n\r\n');
      if (!/^HTTP\/1\.1 200/.test(raw) || !/transfer-encoding: chunked/i.test(raw.slice(0, head))) return reject(new Error(`unexpected response: ${raw.slice(0, 300)}`));
      const chunks: string[] = [];
      let at = head + 4;
      for (;;) {
        const eol = raw.indexOf('\r\n', at);
        const size = eol < 0 ? NaN : parseInt(raw.slice(at, eol), 16);
        if (!Number.isSafeInteger(size) || eol + 2 + size > raw.length) return reject(new Error(`response cut off after ${chunks.length} chunks: ...${JSON.stringify(raw.slice(at, at + 200))}`));
        if (size === 0) break;
        chunks.push(Buffer.from(raw.slice(eol + 2, eol + 2 + size), 'latin1').toString('utf8'));
        at = eol + 2 + size + 2;
      }
      resolve(chunks);
    });
    c.write(`POST /v1/events HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/x-ndjson\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`);
    // Not end(): a half-closed connection lets node's server cut the response short.
    c.write(body);
  });
}

test('every line is answered once, in order, bad lines too; many answers share one chunk', async () => {
  const lines: string[] = [];
  for (let i = 0; i < N; i++) {
    lines.push(JSON.stringify({ type: 'started', vm: { uuid: uuid(i), name: `vm${i}` }, disks: [{ path: path.join(dir, 'images', `d${i}.img`) }] }));
    if (i % 500 === 7) lines.push('{not json');
  }
  for (let i = 0; i < N; i++) lines.push(JSON.stringify({ type: 'stopped', vm: { uuid: uuid(i) } }));
  const chunks = await rawIngest(d.socket, lines.join('\n') + '\n');
  const answers = chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { line: number; status: string; code?: string });
  assert.is(answers.length, lines.length);
  answers.forEach((a, i) => {
    assert.is(a.line, i + 1, `answer ${i} is for line ${a.line}`);
    if (lines[i] === '{not json') assert.is(a.code, 'VMLOCKD_ERR_BAD_INPUT');
    else assert.is(a.status, 'ok', JSON.stringify(a));
  });
  // Before: one chunk per line (4,004 here). A group commit answers hundreds of lines at once.
  assert.ok(chunks.length * 10 < lines.length, `${chunks.length} chunks for ${lines.length} lines`);
  const locks = await call(d.socket, 'GET', '/v1/locks');
  assert.equal(locks.body, []);
});

test('a last line without a newline is answered too', async () => {
  const chunks = await rawIngest(d.socket, JSON.stringify({ type: 'stopped', vm: { uuid: uuid(1) } }));
  const answers = chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { line: number; status: string });
  assert.equal(answers.map((a) => [a.line, a.status]), [[1, 'ok']]);
});

test.run();
