// Every front door bounds what it reads (invariant 10): over-long JSON lines, huge or deeply nested
// bodies, aborted requests, a large domain XML and entity declarations, against a real daemon.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, tmpdir, until } from '../helpers/daemon.js';

let d: TestDaemon;
let dir: string;

function post(urlPath: string, body: Buffer | string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: d.socket, method: 'POST', path: urlPath, headers: { 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function hwmKb(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

test.before(async () => {
  dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'img'));
  d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls') });
  await d.start();
});
test.after(async () => {
  await d.kill('SIGKILL');
});

const disk = (name: string) => {
  const p = path.join(dir, 'img', name);
  if (!fs.existsSync(p)) fs.writeFileSync(p, 'x');
  return p;
};

test('ingest of a file without newlines is bad input; memory stays bounded; the daemon lives', () => {
  const img = path.join(dir, 'sparse.img');
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, 256 << 20); // a sparse "disk image" given by mistake
  const before = hwmKb(d.proc!.pid!);
  const r = d.cli(['ingest', img]);
  assert.is(r.code, 2, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n')[0]!);
  assert.is(out.code, 'VMLOCKD_ERR_BAD_INPUT');
  assert.match(out.message, /over the limit of 1048576 bytes/);
  const grown = (hwmKb(d.proc!.pid!) - before) / 1024;
  // Buffering the line would need >= 256 MB (twice that as a string); chunks awaiting GC need far less.
  assert.ok(grown < 128, `the daemon grew by ${grown.toFixed(0)} MB reading one over-long line`);
  assert.is(d.cli(['status']).code, 0);
});

test('an over-long line to /v1/events is rejected and the stream goes on', async () => {
  const good = JSON.stringify({ type: 'started', vm: { uuid: UUID1 }, disks: [{ path: disk('a') }] });
  const body = Buffer.concat([Buffer.alloc(8 << 20, 'x'), Buffer.from('\n' + good + '\n')]);
  const r = await post('/v1/events', body);
  assert.is(r.status, 200);
  const lines = r.text.trim().split('\n').map((l) => JSON.parse(l));
  assert.is(lines.length, 2, r.text);
  assert.is(lines[0].code, 'VMLOCKD_ERR_BAD_INPUT');
  assert.is(lines[1].status, 'ok', r.text);
  assert.equal(lines[1].acquired.map((x: { path: string }) => x.path), [disk('a')]);
});

test('deeply nested JSON is bad input (400), never a 500 with a stack', async () => {
  const deep = '{"vm":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}';
  const r = await post('/v1/acquire', deep);
  assert.is(r.status, 400, r.text);
  assert.is(JSON.parse(r.text).code, 'VMLOCKD_ERR_BAD_INPUT');
  const line = await post('/v1/events', '{"type":' + '['.repeat(10_000) + ']'.repeat(10_000) + '}\n');
  assert.is(JSON.parse(line.text.trim()).code, 'VMLOCKD_ERR_BAD_INPUT');
  assert.not.match(d.stderr, /\n\s+at /);
});

test('a request target that is not a plain path ("//", "//v1/status") is answered 404 naming it, not a 500 with a stack (found by fuzzing)', async () => {
  for (const target of ['//', '//v1/status', '///v1/acquire']) {
    const r = await post(target, '{}');
    assert.is(r.status, 404, `${target}: ${r.text}`);
    const body = JSON.parse(r.text);
    assert.is(body.code, 'VMLOCKD_ERR_USAGE');
    assert.is(body.message, `no such endpoint: POST ${target}`);
  }
  assert.not.match(d.stderr, /Invalid URL|\n\s+at /);
});

test('GET /v1/audit with a disk that holds a NUL or is relative is bad input (400) naming it, not a 500 (found by fuzzing)', async () => {
  for (const [q, what] of [['disk=%00', '"\\u0000"'], ['disk=%2Fa%00b', '"/a\\u0000b"'], ['disk=rel', '"rel"']] as const) {
    const r = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      http.get({ socketPath: d.socket, path: `/v1/audit?${q}` }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      }).on('error', reject);
    });
    assert.is(r.status, 400, `${q}: ${r.text}`);
    assert.is(JSON.parse(r.text).code, 'VMLOCKD_ERR_BAD_INPUT');
    assert.is(JSON.parse(r.text).message, `disk must be an absolute path, got ${what}`);
  }
  assert.not.match(d.stderr, /\n\s+at /);
});

test('CONNECT on the control socket is answered 405 naming the method, not closed unanswered', async () => {
  const reply = await new Promise<string>((resolve, reject) => {
    const c = net.connect(d.socket);
    let got = '';
    c.on('data', (b: Buffer) => (got += b.toString('utf8')));
    c.on('end', () => resolve(got));
    c.on('error', reject);
    c.write('CONNECT vmlockd:443 HTTP/1.1\r\nhost: vmlockd:443\r\n\r\n');
  });
  assert.match(reply, /^HTTP\/1\.1 405 /);
  assert.match(reply, 'method CONNECT is not served');
  assert.is(d.cli(['status']).code, 0);
});

test('a body over 1 MiB gets a 413 naming the limit, not a reset', async () => {
  const r = await post('/v1/acquire', Buffer.alloc(3 << 20, 'a'));
  assert.is(r.status, 413);
  const body = JSON.parse(r.text);
  assert.is(body.code, 'VMLOCKD_ERR_BAD_INPUT');
  assert.match(body.message, /limit of 1048576 bytes/);
});

test('an aborted request is not logged with a stack, and the daemon serves on', async () => {
  const s = net.connect(d.socket);
  await new Promise((r) => s.once('connect', r));
  s.write('POST /v1/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"vm":');
  await new Promise((r) => setTimeout(r, 100));
  s.destroy();
  await until('the daemon still answers', () => d.cli(['status']).code === 0);
  assert.not.match(d.stderr, /\n\s+at /);
});

test('the qemu hook: a domain XML over 1 MiB is served; entity declarations exit 2', () => {
  const xml = (name: string, uuid: string, extra: string, body = '') =>
    `${extra}<domain type='kvm'><name>${name}</name><uuid>${uuid}</uuid><metadata>${body}</metadata><devices><disk type='file' device='disk'><source file='${disk(name)}'/><target dev='vda'/></disk></devices></domain>`;
  const big = d.cli(['hook', 'qemu', 'big', 'prepare', 'begin', '-'], { input: xml('big', UUID2, '', 'x'.repeat(2 << 20)) });
  assert.is(big.code, 0, big.stderr);
  const xxe = d.cli(['hook', 'qemu', 'evil', 'prepare', 'begin', '-'], {
    input: xml('evil', '33333333-3333-4333-8333-333333333333', `<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>`),
  });
  assert.is(xxe.code, 2, xxe.stderr);
  assert.match(xxe.stderr, /DOCTYPE|ENTITY/);
});

test.run();
