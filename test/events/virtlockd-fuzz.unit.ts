// Property-based fuzzing (fast-check) of the virtlockd wire codec: XDR primitives, framing, call and
// reply decoding. Properties: nothing but the codec's own XdrDecodeError escapes, every rejection
// names what was wrong, valid calls round-trip, and framing does not depend on chunking.
// Runs are bounded (FUZZ_RUNS, default 200 per property) so the unit tier stays fast; the seed is
// printed by fast-check on a failure (rerun with FUZZ_SEED=<seed>).
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  ERR,
  FrameReader,
  KEEPALIVE_PROGRAM,
  LOCK_PROGRAM,
  MAX_FRAME_BYTES,
  MIN_FRAME_BYTES,
  MSG_TYPE,
  PROC,
  decodeCall,
  decodeReply,
  encodeCall,
  encodeErrorReply,
  encodeFrame,
  uuidString,
  type Header,
  type ProcNumber,
  type RpcErrorSpec,
} from '../../src/events/virtlockd/codec.js';
import { XdrDecodeError, XdrReader, XdrWriter } from '../../src/events/virtlockd/xdr.js';
import { assertProperty, fuzzParams } from '../helpers/fuzz.js';

const params = fuzzParams();

// ── arbitraries ──────────────────────────────────────────────────────────────────────────────

/** Strings a lock call may carry: valid UTF-8 without NUL (the codec refuses the rest). */
const lockString = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !s.includes('\0'));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const i32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const uuid16 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a));

const validCall = fc.oneof(
  fc.record({ proc: fc.constant(PROC.REGISTER), owner: fc.record({ uuid: uuid16, name: lockString, id: u32, pid: u32 }), flags: u32 }),
  fc.record({ proc: fc.constant(PROC.RESTRICT), flags: u32 }),
  fc.record({ proc: fc.constant(PROC.NEW), path: lockString, flags: u32 }),
  fc.record({
    proc: fc.constantFrom(PROC.CREATE_RESOURCE, PROC.DELETE_RESOURCE, PROC.ACQUIRE_RESOURCE, PROC.RELEASE_RESOURCE),
    path: lockString,
    name: lockString,
    flags: u32,
  }),
  fc.record({ proc: fc.constant(PROC.CREATE_LOCKSPACE), path: lockString }),
);

/** A header that is mostly plausible, sometimes anything. */
const header: fc.Arbitrary<Header> = fc.record({
  prog: fc.oneof(fc.constant(LOCK_PROGRAM), fc.constant(KEEPALIVE_PROGRAM), u32),
  vers: fc.oneof(fc.constant(1), u32),
  proc: fc.oneof(fc.integer({ min: 0, max: 10 }), i32),
  type: fc.oneof(fc.integer({ min: 0, max: 6 }), i32),
  serial: u32,
  status: fc.oneof(fc.integer({ min: 0, max: 3 }), i32),
});

/** A frame: real header + random payload; or a valid call with bytes flipped, cut or appended. */
const hostileFrame: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(header, fc.uint8Array({ maxLength: 200 })).map(([h, p]) => encodeFrame(h, Buffer.from(p))),
  fc
    .tuple(validCall, u32, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(), fc.uint8Array({ maxLength: 12 }))
    .map(([c, serial, flips, cut, tail]) => {
      const f = Buffer.from(encodeCall(c.proc as ProcNumber, serial, c as never));
      // Flip bytes after the length word; the length word is the framing layer's business.
      for (const [at, v] of flips) f[4 + (at % (f.length - 4))] = v;
      const body = Buffer.concat([f.subarray(0, Math.max(MIN_FRAME_BYTES, f.length - (cut % 64))), Buffer.from(tail)]);
      body.writeUInt32BE(body.length, 0);
      return body;
    }),
);

// ── XDR ──────────────────────────────────────────────────────────────────────────────────────

type Op = 'u32' | 'i32' | 'opaque' | 'string' | 'strict' | 'optional';

test('fuzz: any sequence of XDR reads over any bytes returns values or throws XdrDecodeError naming offset and cause', async () => {
  await assertProperty(
    fc.property(
      fc.uint8Array({ maxLength: 96 }),
      fc.array(fc.tuple(fc.constantFrom<Op>('u32', 'i32', 'opaque', 'string', 'strict', 'optional'), fc.integer({ min: 0, max: 40 })), { maxLength: 12 }),
      (bytes, ops) => {
        const r = new XdrReader(Buffer.from(bytes));
        for (const [op, n] of ops) {
          const before = r.offset;
          try {
            if (op === 'u32') r.u32();
            else if (op === 'i32') r.i32();
            else if (op === 'opaque') r.fixedOpaque(n);
            else if (op === 'string') r.string(n);
            else if (op === 'strict') r.strictString(n);
            else r.optional((x) => x.u32());
          } catch (e) {
            if (!(e instanceof XdrDecodeError)) throw e;
            assert.ok(['truncated', 'over_max', 'bad_utf8', 'embedded_nul'].includes(e.reason));
            assert.is(e.code, 'VMLOCKD_ERR_BAD_INPUT');
            assert.match(e.message, /offset \d+/);
            assert.ok(e.offset >= 0 && e.offset <= bytes.length);
            return;
          }
          assert.ok(r.offset > before || op === 'opaque', `${op} consumed nothing`);
          assert.ok(r.remaining >= 0);
        }
      },
    ),
    params,
  );
});

test('fuzz: XDR strings, opaques and integers round-trip through writer and reader', async () => {
  await assertProperty(
    fc.property(u32, i32, fc.uint8Array({ maxLength: 33 }), lockString, fc.option(u32, { nil: null }), (a, b, opaque, s, opt) => {
      const buf = new XdrWriter()
        .u32(a)
        .i32(b)
        .fixedOpaque(Buffer.from(opaque), opaque.length)
        .string(s, 1 << 16)
        .optional(opt, (w, v) => void w.u32(v))
        .toBuffer();
      assert.is(buf.length % 4, 0);
      const r = new XdrReader(buf);
      assert.is(r.u32(), a);
      assert.is(r.i32(), b);
      assert.equal([...r.fixedOpaque(opaque.length)], [...opaque]);
      assert.is(r.strictString(1 << 16), s);
      assert.is(r.optional((x) => x.u32()), opt);
      assert.is(r.remaining, 0);
    }),
    params,
  );
});

// ── framing ──────────────────────────────────────────────────────────────────────────────────

/** Cut a buffer into chunks at the given (sorted, deduplicated) points. */
function chunked(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(at, p));
    at = p;
  }
  return out;
}

test('fuzz: FrameReader yields the same frames whatever the chunking', async () => {
  await assertProperty(
    fc.property(fc.array(fc.tuple(validCall, u32), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 20 }), (calls, cuts) => {
      const frames = calls.map(([c, serial]) => encodeCall(c.proc as ProcNumber, serial, c as never));
      const reader = new FrameReader();
      const got: Buffer[] = [];
      for (const chunk of chunked(Buffer.concat(frames), cuts)) {
        for (const f of reader.push(chunk)) {
          assert.is(f.kind, 'frame');
          if (f.kind === 'frame') got.push(Buffer.from(f.bytes));
        }
      }
      assert.is(got.length, frames.length);
      got.forEach((g, i) => assert.ok(g.equals(frames[i]!)));
      assert.is(reader.pending, 0);
    }),
    params,
  );
});

test('fuzz: FrameReader on random bytes never throws; a bad length word is one fatal result naming the length, then nothing', async () => {
  await assertProperty(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.boolean(), (chunks, hostileLength) => {
      const reader = new FrameReader();
      const first = Buffer.alloc(4);
      // Half the runs start with a length word that is surely out of range.
      if (hostileLength) first.writeUInt32BE(chunks.length % 2 ? 3 : MAX_FRAME_BYTES + 1, 0);
      let fatal = 0;
      let after = 0;
      for (const c of hostileLength ? [first, ...chunks.map((x) => Buffer.from(x))] : chunks.map((x) => Buffer.from(x))) {
        for (const f of reader.push(c)) {
          if (fatal > 0) after++;
          if (f.kind === 'fatal') {
            fatal++;
            assert.ok(['too_short', 'too_long'].includes(f.reason));
            assert.ok(f.message.includes(String(f.reason === 'too_long' ? f.length - 4 : f.length)), f.message);
          } else {
            assert.ok(f.bytes.length >= MIN_FRAME_BYTES && f.bytes.readUInt32BE(0) === f.bytes.length);
          }
        }
      }
      assert.ok(fatal <= 1);
      assert.is(after, 0);
      if (hostileLength) assert.is(fatal, 1);
      if (fatal) assert.ok(reader.failed);
    }),
    params,
  );
});

// ── calls ────────────────────────────────────────────────────────────────────────────────────

test('fuzz: every valid call round-trips through encodeCall and decodeCall', async () => {
  await assertProperty(
    fc.property(validCall, u32, (c, serial) => {
      const d = decodeCall(encodeCall(c.proc as ProcNumber, serial, c as never));
      assert.is(d.kind, 'call');
      if (d.kind !== 'call') return;
      assert.is(d.header.serial, serial);
      assert.is(d.header.type, MSG_TYPE.CALL);
      const got = d.call as Record<string, unknown>;
      const want = c as Record<string, unknown>;
      for (const k of ['proc', 'path', 'name', 'flags']) assert.is(got[k], want[k], k);
      if ('owner' in c) {
        const o = got.owner as { uuid: Buffer; name: string; id: number; pid: number };
        assert.is(uuidString(o.uuid), uuidString(c.owner.uuid));
        assert.equal({ name: o.name, id: o.id, pid: o.pid }, { name: c.owner.name, id: c.owner.id, pid: c.owner.pid });
      }
    }),
    params,
  );
});

test('fuzz: decodeCall of hostile frames never throws; every error names what was wrong', async () => {
  await assertProperty(
    fc.property(hostileFrame, (frame) => {
      const d = decodeCall(frame);
      switch (d.kind) {
        case 'call':
          assert.ok(d.call.proc >= PROC.REGISTER && d.call.proc <= PROC.CREATE_LOCKSPACE);
          for (const k of ['path', 'name'] as const) {
            const v = (d.call as Record<string, unknown>)[k];
            if (v !== undefined) assert.not.ok(String(v).includes('\0'), 'a name with NUL must be refused');
          }
          break;
        case 'error':
          assert.ok(d.error.message.length > 0);
          assert.ok(d.error.code > 0);
          if (d.error.code === ERR.RPC && /decode/.test(d.error.message)) {
            assert.ok(d.cause instanceof XdrDecodeError, 'an undecodable payload carries its cause');
            assert.match(d.cause!.message, /offset \d+|NUL|UTF-8/);
          }
          break;
        case 'close':
          assert.ok(d.close.length > 0);
          break;
        case 'drop':
        case 'reply':
          break;
        default: {
          const _x: never = d;
          throw new Error(`unexpected ${JSON.stringify(_x)}`);
        }
      }
    }),
    params,
  );
});

test('fuzz: a valid call cut short is refused as undecodable, with the offset where it ran out', async () => {
  await assertProperty(
    fc.property(validCall, fc.integer({ min: 1, max: 200 }), (c, cut) => {
      const full = encodeCall(c.proc as ProcNumber, 1, c as never);
      const keep = Math.max(MIN_FRAME_BYTES, full.length - cut);
      if (keep === full.length) return;
      const f = Buffer.from(full.subarray(0, keep));
      f.writeUInt32BE(f.length, 0);
      const d = decodeCall(f);
      assert.is(d.kind, 'error');
      if (d.kind !== 'error') return;
      assert.is(d.error.message, 'Unable to decode message payload');
      assert.is(d.cause?.reason, 'truncated');
      assert.match(d.cause!.message, /offset \d+/);
    }),
    params,
  );
});

test('fuzz: a lock name that is not UTF-8 or holds a NUL is refused, never decoded to another name', async () => {
  await assertProperty(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 24 }), fc.boolean(), (raw, nul) => {
      const bytes = Buffer.from(raw);
      if (nul) bytes[bytes.length >> 1] = 0;
      let utf8 = true;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        utf8 = false;
      }
      const payload = new XdrWriter().string('', 100).string(bytes, 100).u32(0).toBuffer();
      const d = decodeCall(encodeFrame({ prog: LOCK_PROGRAM, vers: 1, proc: PROC.ACQUIRE_RESOURCE, type: 0, serial: 7, status: 0 }, payload));
      if (utf8 && !bytes.includes(0)) {
        assert.is(d.kind, 'call');
        if (d.kind === 'call' && 'name' in d.call) assert.ok(Buffer.from(d.call.name, 'utf8').equals(bytes));
      } else {
        assert.is(d.kind, 'error');
        if (d.kind === 'error') assert.ok(d.cause?.reason === 'bad_utf8' || d.cause?.reason === 'embedded_nul', String(d.cause?.reason));
      }
    }),
    params,
  );
});

// ── replies ──────────────────────────────────────────────────────────────────────────────────

const errorSpec: fc.Arbitrary<RpcErrorSpec> = fc.record({
  code: i32,
  domain: i32,
  message: fc.string({ maxLength: 60 }),
  level: i32,
  str1: fc.option(fc.string({ maxLength: 30 }), { nil: null }),
  str2: fc.option(fc.string({ maxLength: 30 }), { nil: null }),
  str3: fc.option(fc.string({ maxLength: 30 }), { nil: null }),
  int1: i32,
  int2: i32,
});

test('fuzz: error replies round-trip; any bytes after an ERROR header decode or throw XdrDecodeError only', async () => {
  await assertProperty(
    fc.property(errorSpec, header, (spec, h) => {
      const d = decodeReply(encodeErrorReply(h, spec));
      assert.is(d.kind, 'error');
      if (d.kind !== 'error') return;
      const { dom, net, ...rest } = d.error;
      assert.is(dom, null);
      assert.is(net, null);
      assert.equal(rest, { ...spec, message: spec.message });
    }),
    params,
  );
  await assertProperty(
    fc.property(header, fc.uint8Array({ maxLength: 120 }), (h, payload) => {
      try {
        decodeReply(encodeFrame({ ...h, status: 1 }, Buffer.from(payload)));
      } catch (e) {
        if (!(e instanceof XdrDecodeError)) throw e;
        assert.match(e.message, /XDR/);
      }
    }),
    params,
  );
});

test.run();
