// Property-based fuzzing (fast-check) of the daemon's front doors, over its real sockets: control API
// requests (any method, route and body), JSON lines to /v1/events, qemu hook bodies with mutated domain
// XML, bytes that are not HTTP, and virtlockd frames on fresh and on registered connections.
// Properties: the daemon never dies; every refusal is a clear error (a stable code and a message, or
// for the protocol exactly what the pure codec says); a refused request changes no lock; what the
// daemon lists is what the kernel holds. FUZZ_RUNS scales the runs, FUZZ_SEED replays a failure.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LockClient } from '../../src/events/virtlockd/client.js';
import {
  FrameReader,
  KEEPALIVE_PROC,
  LOCK_PROGRAM,
  MIN_FRAME_BYTES,
  PROC,
  decodeCall,
  decodeReply,
  encodeCall,
  encodeFrame,
  encodeKeepalive,
  type ProcNumber,
} from '../../src/events/virtlockd/codec.js';
import { UUID1, tmpdir } from '../helpers/daemon.js';
import { assertProperty, fuzzParams } from '../helpers/fuzz.js';
import { listedVsKernel } from '../helpers/kernel-locks.js';
import { serve, type Served } from '../helpers/protocol-serve.js';

const params = (runs: number): fc.Parameters<unknown> => fuzzParams(runs);
/** How many inputs each front door was given (printed at the end, for bench/README.md). */
const counts: Record<string, number> = {};
const count = (door: string) => (counts[door] = (counts[door] ?? 0) + 1);
const t0 = Date.now();
const phase = (name: string) => process.env.FUZZ_TIMING && console.log(`  ${name} at ${Date.now() - t0} ms`);

interface Res {
  status: number;
  text: string;
}

function request(socketPath: string, method: string, urlPath: string, body?: string | Buffer): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: urlPath, headers: body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${urlPath}: no answer in 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

type Lock = { resource: string; disk: string; mode: string; vm: { uuid: string } };

async function locks(s: Served): Promise<Lock[]> {
  const r = await request(s.daemon.socket, 'GET', '/v1/locks');
  assert.is(r.status, 200, r.text);
  return (JSON.parse(r.text) as Lock[]).sort((a, b) => (a.resource + a.vm.uuid < b.resource + b.vm.uuid ? -1 : 1));
}

const key = (ls: Lock[]) => JSON.stringify(ls.map((l) => [l.resource, l.mode, l.vm.uuid]));

function alive(s: Served): void {
  const p = s.daemon.proc!;
  if (p.exitCode !== null || p.signalCode !== null) assert.unreachable(`the daemon died (${p.exitCode ?? p.signalCode}):\n${s.daemon.stderr.slice(-3000)}`);
}

/** A refusal over HTTP: JSON with status error/refused, a VMLOCKD_ERR_ code and a message. */
function assertClearError(text: string, what: string): void {
  let v: { status?: string; code?: string; message?: string };
  try {
    v = JSON.parse(text);
  } catch {
    return assert.unreachable(`${what}: the answer is not JSON: ${text.slice(0, 300)}`);
  }
  assert.ok(v.status === 'error' || v.status === 'refused', `${what}: ${text.slice(0, 300)}`);
  // A refusal (HTTP 409) is its own status and names the holder; the CLI maps it to VMLOCKD_ERR_LOCK_HELD.
  if (v.status === 'error') assert.match(String(v.code), /^VMLOCKD_ERR_[A-Z_]+$/, `${what}: ${text.slice(0, 300)}`);
  assert.ok(typeof v.message === 'string' && v.message.length > 0, `${what}: ${text.slice(0, 300)}`);
  assert.not.match(v.message!, /\n\s+at /, `${what}: a stack trace in the message`);
}

// ── inputs ───────────────────────────────────────────────────────────────────────────────────

const hexN = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
const uuid = fc.tuple(hexN(8), hexN(4), hexN(4), hexN(4), hexN(12)).map((p) => p.join('-'));
const jsonish = fc.jsonValue({ maxDepth: 3 });

function mutate(base: Record<string, unknown>, field: string, value: unknown): Record<string, unknown> {
  const e = structuredClone(base);
  const parts = field.split('.');
  let node: Record<string, unknown> = e;
  for (const p of parts.slice(0, -1)) {
    if (typeof node[p] !== 'object' || node[p] === null) return e;
    node = node[p] as Record<string, unknown>;
  }
  node[parts.at(-1)!] = value;
  return e;
}

test('front doors: random requests, lines, bodies and frames never kill the daemon, are refused clearly and change no lock', async () => {
  const dir = tmpdir('vmlockd-fdfuzz-');
  const img = path.join(dir, 'img');
  fs.mkdirSync(img);
  const disks = [0, 1, 2].map((i) => {
    const p = path.join(img, `d${i}.img`);
    fs.writeFileSync(p, 'x');
    return p;
  });
  const missing = (n: number) => path.join(img, `missing-${n}.img`);
  const fuzzLs = path.join(dir, 'fuzz-ls');
  const s = await serve(dir);
  const lockspace = path.join(dir, 'lockspace');
  // A process that stands for a QEMU: the protocol baseline lease is registered under its pid, so no
  // connection this test closes can release it.
  const qemu = spawn('sleep', ['600'], { stdio: 'ignore' });
  const clients: LockClient[] = [];
  try {
    // Baseline: d0 held through the control API, a lease and d1 (default lockspace) through the protocol.
    const a = await request(s.daemon.socket, 'POST', '/v1/acquire', JSON.stringify({ vm: { uuid: UUID1 }, disks: [{ path: disks[0] }] }));
    assert.is(a.status, 200, a.text);
    const base = await LockClient.connect(s.socket);
    clients.push(base);
    await base.register({ uuid: UUID1, name: 'base', id: 1, pid: qemu.pid! });
    await base.createLockspace(fuzzLs);
    await base.acquire(fuzzLs, 'baseline-lease', { autocreate: true });
    await base.acquire('', disks[1]!);
    const baseline = await locks(s);
    assert.is(baseline.length, 3, key(baseline));
    const dirs = [lockspace, fuzzLs, img];
    const kernelAgrees = async (when: string) => {
      const d = listedVsKernel(s.daemon.proc!.pid!, await locks(s), dirs);
      assert.equal(d, { notHeld: [], notListed: [] }, `${when}: the daemon's list and the kernel differ`);
    };
    await kernelAgrees('at the start');

    phase(' 1');
    // ── 1. control API: any method, route and body ──
    const validBody = { vm: { uuid: '', name: 'fuzz' }, disks: [{ path: missing(0) }] };
    const body = fc.oneof(
      { weight: 3, arbitrary: fc.tuple(uuid, fc.constantFrom('vm', 'vm.uuid', 'vm.name', 'disks', 'disks.0', 'disks.0.path', 'disks.0.readonly', 'disks.0.shareable', 'at', 'extra'), jsonish).map(([u, f, v]) => JSON.stringify(mutate(mutate(validBody, 'vm.uuid', u), f, v))) },
      { weight: 2, arbitrary: jsonish.map((v) => JSON.stringify(v)) },
      { weight: 2, arbitrary: fc.string({ maxLength: 60 }) },
      { weight: 1, arbitrary: fc.nat({ max: 50_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
      { weight: 1, arbitrary: fc.constantFrom((1 << 20) + 1, 3 << 20).map((n) => '"' + 'x'.repeat(n) + '"') },
    );
    const route = fc.tuple(
      fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE'),
      fc.constantFrom('/v1/acquire', '/v1/release', '/v1/check', '/v1/status', '/v1/locks', '/v1/audit?limit=x', '/v1/audit?since=yesterday', '/v1/audit?disk=%00', '/v1/nothing', '/v1/acquire?x=%zz', '//'),
    );
    await assertProperty(
      fc.asyncProperty(route, body, async ([method, url], b) => {
        count('control API requests');
        const pre = key(await locks(s));
        const r = await request(s.daemon.socket, method, url, method === 'GET' ? undefined : b);
        alive(s);
        assert.ok(r.status < 500, `${method} ${url} ${b.slice(0, 200)} -> ${r.status} ${r.text.slice(0, 300)}`);
        if (r.status !== 200) {
          assertClearError(r.text, `${method} ${url} ${b.slice(0, 120)}`);
          assert.is(key(await locks(s)), pre, `${method} ${url} ${b.slice(0, 200)} was refused (${r.status}) but changed the locks`);
        }
      }),
      params(120),
    );

    phase(' 2');
    // ── 2. JSON lines to /v1/events: several lines per request, each answered in order ──
    const validEvent = { type: 'started', vm: { uuid: '' }, disks: [{ path: missing(1) }] };
    const line = fc.oneof(
      fc.tuple(uuid, fc.constantFrom('type', 'vm', 'vm.uuid', 'disks', 'disks.0.path', 'disks.0.create', 'at'), jsonish).map(([u, f, v]) => JSON.stringify(mutate(mutate(validEvent, 'vm.uuid', u), f, v))),
      jsonish.map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 40 }).filter((x) => !x.includes('\n')),
      fc.nat({ max: 20_000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
      fc.constant('x'.repeat((1 << 20) + 10)),
    );
    await assertProperty(
      fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 6 }), async (lines) => {
        count('JSON-lines requests');
        const pre = key(await locks(s));
        const r = await request(s.daemon.socket, 'POST', '/v1/events', lines.join('\n') + '\n');
        alive(s);
        assert.is(r.status, 200, r.text.slice(0, 300));
        const answers = r.text.trim() === '' ? [] : r.text.trim().split('\n').map((l) => JSON.parse(l) as { line: number; status: string });
        const nonBlank = lines.map((l, i) => [l, i + 1] as const).filter(([l]) => l.trim() !== '');
        assert.equal(
          answers.map((x) => x.line),
          nonBlank.map(([, n]) => n),
          'one answer per non-blank line, in order',
        );
        let changed = false;
        for (const x of answers) {
          if (x.status === 'ok') changed = true;
          else assertClearError(JSON.stringify(x), `line ${x.line}`);
        }
        if (!changed) assert.is(key(await locks(s)), pre, 'refused lines changed the locks');
      }),
      params(60),
    );

    phase(' 3');
    // ── 3. qemu hook bodies: arguments and mutated domain XML ──
    const xml = (u: string) =>
      `<domain type="kvm"><name>fuzz</name><uuid>${u}</uuid><devices><disk type="file" device="disk"><source file="${missing(2)}"/><target dev="vda"/></disk><disk type="file" device="disk"><source file="${disks[2]}"/><target dev="vdb"/><readonly/></disk></devices></domain>`;
    const edits = fc.array(fc.tuple(fc.nat(), fc.constantFrom('<', '>', '"', '&', '/', '<!DOCTYPE d [<!ENTITY e "x">]>', '&e;', ']]>', '\u0000', ' ', 'x')), { maxLength: 4 });
    const hookBody = fc.tuple(uuid, fc.constantFrom('prepare begin', 'release end', 'migrate begin', 'started begin', 'x y'), edits, fc.option(fc.tuple(fc.constantFrom('name', 'op', 'subop', 'xml', 'driver'), jsonish), { nil: null })).map(([u, op, ed, repl]) => {
      let x = xml(u);
      for (const [at, ch] of ed) {
        const i = at % (x.length + 1);
        x = x.slice(0, i) + ch + x.slice(i);
      }
      const [o, sub] = op.split(' ');
      const b: Record<string, unknown> = { name: 'fuzz', op: o, subop: sub, extra: '-', xml: x };
      if (repl) b[repl[0]] = repl[1];
      return JSON.stringify(b);
    });
    await assertProperty(
      fc.asyncProperty(hookBody, async (b) => {
        count('hook requests');
        const pre = key(await locks(s));
        const r = await request(s.daemon.socket, 'POST', '/v1/hook', b);
        alive(s);
        assert.ok(r.status < 500, `${b.slice(0, 300)} -> ${r.status} ${r.text.slice(0, 300)}`);
        if (r.status !== 200) {
          assertClearError(r.text, b.slice(0, 200));
          assert.is(key(await locks(s)), pre, `hook body refused (${r.status}) but the locks changed: ${b.slice(0, 200)}`);
        }
      }),
      params(60),
    );

    phase(' 4');
    // ── 4. bytes that are not HTTP on the control socket ──
    await assertProperty(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), fc.string({ maxLength: 200 }).map((x) => Buffer.from(`POST /v1/acquire HTTP/1.1\r\n${x}\r\n\r\n`))), async (bytes) => {
        count('raw control socket writes');
        const pre = key(await locks(s));
        await new Promise<void>((resolve) => {
          const c = net.createConnection(s.daemon.socket);
          c.on('error', () => undefined);
          c.on('close', () => resolve());
          c.on('connect', () => {
            c.write(bytes);
            c.end();
          });
          // A half-sent request is kept until the server's header timeout: no need to wait for that.
          c.setTimeout(200, () => c.destroy());
        });
        alive(s);
        assert.is(key(await locks(s)), pre);
      }),
      params(20),
    );
    await kernelAgrees('after the control API');

    phase(' 5');
    // ── 5. virtlockd frames on fresh connections: the server does what the pure codec says ──
    const header = fc.record({
      prog: fc.oneof(fc.constant(LOCK_PROGRAM), fc.constant(0x6b656570), fc.integer({ min: 0, max: 0xffffffff })),
      vers: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 0xffffffff })),
      proc: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
      type: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
      serial: fc.integer({ min: 0, max: 0xffffffff }),
      status: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
    });
    const randomFrame = fc.tuple(header, fc.uint8Array({ maxLength: 160 })).map(([h, p]) => {
      const payload = Buffer.from(p);
      // A random path must never start with "/": CREATE_LOCKSPACE would create it, as root, anywhere.
      for (const at of [4, 8]) if (payload[at] === 0x2f) payload[at] = 0x2e;
      return encodeFrame(h, payload);
    });
    await assertProperty(
      fc.asyncProperty(randomFrame, async (frame) => {
        count('protocol frames (fresh connections)');
        const pre = key(await locks(s));
        const expected = decodeCall(frame);
        const got = await exchange(s.socket, frame);
        alive(s);
        if (expected.kind === 'close') assert.ok(got.closed, `expected a close: ${expected.close}`);
        else {
          assert.not.ok(got.closed && !got.pong, `the connection was closed for a ${expected.kind} frame`);
          const replies = got.frames;
          if (expected.kind === 'error') {
            assert.is(replies.length, 1, `one error reply for ${expected.error.message}`);
            const d = decodeReply(replies[0]!);
            assert.is(d.kind, 'error');
            if (d.kind === 'error') assert.is(d.error.message, expected.error.message);
          }
          if (expected.kind === 'drop') assert.is(replies.length, 0);
        }
        assert.is(key(await locks(s)), pre, 'a frame on an unregistered connection changed the locks');
      }),
      params(100),
    );

    phase(' 6');
    // ── 6. frames on a registered connection: valid calls with hostile headers, flags and cuts ──
    const reg = await LockClient.connect(s.socket);
    clients.push(reg);
    await reg.register({ uuid: '0f0f0f0f-0000-4000-8000-000000000001', name: 'fuzz', id: 9, pid: process.pid });
    const name = fc.oneof(fc.stringMatching(/^[a-z0-9]{1,8}$/), fc.constantFrom('', '.', '..', '../x', 'a/b', 'baseline-lease'));
    const call = fc.oneof(
      fc.record({ proc: fc.constantFrom(PROC.CREATE_RESOURCE, PROC.DELETE_RESOURCE, PROC.ACQUIRE_RESOURCE, PROC.RELEASE_RESOURCE), path: fc.constant(fuzzLs), name, flags: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0, 1, 2, 3) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) }) }),
      fc.record({ proc: fc.constantFrom(PROC.ACQUIRE_RESOURCE, PROC.RELEASE_RESOURCE, PROC.DELETE_RESOURCE), path: fc.constant(''), name: fc.constantFrom(...disks, missing(3), img, '/dev/null', 'relative'), flags: fc.constantFrom(0, 1, 2, 4) }),
      fc.record({ proc: fc.constantFrom(PROC.CREATE_LOCKSPACE, PROC.NEW), path: fc.constantFrom(fuzzLs, '', 'relative/ls', path.join(dir, 'img', 'd0.img')), flags: fc.constantFrom(0, 1) }),
    );
    const hostile = fc.tuple(call, fc.option(fc.record({ type: fc.integer({ min: 0, max: 6 }), status: fc.integer({ min: 0, max: 3 }), proc: fc.integer({ min: 0, max: 10 }) }), { nil: null, freq: 2 }), fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat({ max: 40 }) })).map(([c, h, cut]) => {
      const f = Buffer.from(encodeCall(c.proc as ProcNumber, 1, c as never));
      if (h) {
        f.writeInt32BE(h.proc === 1 || h.proc === 2 ? 0 : h.proc, 12); // never REGISTER or RESTRICT: the connection stays usable
        f.writeInt32BE(h.type === 4 ? 0 : h.type, 16); // CALL_WITH_FDS would close it
        f.writeInt32BE(h.status, 24);
      }
      const keep = Math.max(MIN_FRAME_BYTES, f.length - cut);
      const out = Buffer.from(f.subarray(0, keep));
      out.writeUInt32BE(out.length, 0);
      return out;
    });
    let grants = 0;
    await assertProperty(
      fc.asyncProperty(hostile, async (frame) => {
        count('protocol frames (registered connection)');
        if (reg.closed) return;
        const pre = key(await locks(s));
        const expected = decodeCall(frame);
        const reply = await reg.send(frame, { timeoutMs: expected.kind === 'drop' ? 200 : 20_000 });
        alive(s);
        if (expected.kind === 'drop') return void assert.is(reply, null);
        assert.ok(reply !== null, `no reply to a ${expected.kind} frame`);
        const d = decodeReply(reply!);
        if (d.kind === 'error') {
          assert.ok((d.error.message ?? '').length > 0);
          assert.is(key(await locks(s)), pre, `refused (${d.error.message}) but the locks changed`);
        } else if (key(await locks(s)) !== pre) grants++;
      }),
      params(100),
    );
    // RESTRICT may have been among them; the baseline holds either way.
    await kernelAgrees('after the protocol frames');
    await reg.close();
    // Valid inputs among the random ones may have taken locks for other VMs: release those.
    for (const vm of new Set((await locks(s)).map((l) => l.vm.uuid).filter((u) => u !== UUID1))) {
      const r = await request(s.daemon.socket, 'POST', '/v1/release', JSON.stringify({ vm: { uuid: vm } }));
      assert.is(r.status, 200, r.text);
    }
    // Closing the registered connection (owner pid = this process) released what it took, nothing else.
    const end = Date.now() + 20_000;
    while (key(await locks(s)) !== key(baseline) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    assert.is(key(await locks(s)), key(baseline), 'after the fuzzing only the baseline locks are held');
    await kernelAgrees('at the end');
    alive(s);
    console.log(`  front-door fuzz: ${JSON.stringify({ ...counts, protocolGrantsByValidCalls: grants })}`);
    if (process.env.VMLOCKD_CHAOS_REPORT) fs.appendFileSync(path.join(process.env.VMLOCKD_CHAOS_REPORT, 'fuzz.jsonl'), JSON.stringify(counts) + '\n');
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    qemu.kill('SIGKILL');
    await s.daemon.kill('SIGTERM');
  }
});

/** Send one frame then a keepalive PING on a fresh connection; collect every frame until the PONG or a close. */
async function exchange(socketPath: string, frame: Buffer): Promise<{ frames: Buffer[]; pong: boolean; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socketPath);
    const reader = new FrameReader();
    const frames: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean, pong: boolean) => {
      if (done) return;
      done = true;
      c.destroy();
      resolve({ frames, pong, closed });
    };
    c.on('error', () => undefined);
    c.on('close', () => finish(true, false));
    c.setTimeout(20_000, () => {
      done = true;
      c.destroy();
      reject(new Error('no PONG and no close within 20 s'));
    });
    c.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        if (f.kind !== 'frame') continue;
        const b = Buffer.from(f.bytes);
        // The PONG is a keepalive MESSAGE; an error reply to a keepalive-program CALL echoes prog and proc but is a REPLY.
        if (b.readUInt32BE(4) === 0x6b656570 && b.readInt32BE(12) === KEEPALIVE_PROC.PONG && b.readInt32BE(16) === 2) return finish(false, true);
        frames.push(b);
      }
    });
    c.on('connect', () => {
      c.write(frame);
      c.write(encodeKeepalive(KEEPALIVE_PROC.PING));
    });
  });
}

test.run();
