// The native fast path of the segment decoder (src/journal/segment-scan.ts, native/segscan.c): it must
// take the encoder's ordinary fact lines (else it gains nothing) and must never decide anything the JS
// decoder would decide otherwise: the same lines, the same state, the same problem, for any segment,
// altered or not, and fed in any chunks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { chainHash, type ChainRow } from '../../src/journal/schema.js';
import { SegmentDecoder, encodeFact, encodeHeader, encodeSeal } from '../../src/journal/segment.js';
import { factScanAvailable, scanFacts, setFactScan } from '../../src/journal/segment-scan.js';

const JID = '0123456789abcdef';
const GEN = Buffer.alloc(32);

function segmentText(rows: ChainRow[], first: number, seal: boolean): Buffer {
  let h: Buffer = GEN;
  let text = encodeHeader({ host: 'h1', journal: JID, first, prev: GEN, created: '2026-12-01T00:00:00.000Z' });
  for (const r of rows) {
    h = chainHash(h, r);
    text += encodeFact(r, h);
  }
  if (seal) text += encodeSeal({ last: first + rows.length - 1, hash: h, count: rows.length });
  return Buffer.from(text, 'utf8');
}

function plainRows(first: number, n: number): ChainRow[] {
  return Array.from({ length: n }, (_, i) => ({
    seq: first + i,
    at: `2026-12-01T00:00:${String(i % 60).padStart(2, '0')}.000Z`,
    host: 'h1',
    kind: i % 2 ? 'LockReleased' : 'LockAcquired',
    resource: i % 5 === 0 ? null : `/ls/r${i}`,
    disk: i % 5 === 0 ? null : `/var/lib/libvirt/images/vm-${i}.qcow2`,
    owner: i % 7 === 0 ? null : `uuid-${i}`,
    owner_name: i % 7 === 0 ? null : `vm-${i}`,
    payload: JSON.stringify({ owner: { uuid: `uuid-${i}`, name: `vm-${i}` }, mode: 'exclusive', note: 'a "quoted" \\ back/slash\ttab\nnewline' }),
  }));
}

interface Decoded {
  lines: unknown[];
  state: unknown;
  problem: unknown;
  pending: number;
}

function decode(bytes: Buffer, cuts: number[], fast: boolean): Decoded {
  setFactScan(fast);
  try {
    const d = new SegmentDecoder('/x/seg', { host: 'h1', journal: JID, first: 1, prev: GEN.toString('hex') });
    const lines: unknown[] = [];
    let at = 0;
    for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b), bytes.length]) {
      if (c < at) continue;
      lines.push(...d.push(bytes.subarray(at, c)));
      at = c;
    }
    return { lines, state: d.state, problem: d.problem, pending: d.pending };
  } finally {
    setFactScan(true);
  }
}

test('the native fast path is built and takes the encoder\'s ordinary fact lines, every field as JSON.parse reads it', () => {
  assert.ok(factScanAvailable(), 'native scanFacts missing: npm rebuild');
  const rows = plainRows(1, 300);
  const bytes = segmentText(rows, 1, true);
  const start = bytes.indexOf(10) + 1;
  const got = scanFacts(bytes, start, bytes.length, 1, GEN);
  assert.ok(got !== undefined);
  assert.is(got.facts.length, 300);
  const lines = bytes.toString('utf8').split('\n').slice(1, 301).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(got.facts, lines);
  assert.is(got.prev.toString('hex'), lines[299]!.hash);
  // It stops at the seal, which the JS decoder reads.
  assert.is(bytes.toString('utf8', got.end, got.end + 12), '{"t":"seal",');
  // Wrong expected seq or wrong chain start: nothing taken.
  assert.is(scanFacts(bytes, start, bytes.length, 2, GEN), undefined);
  assert.is(scanFacts(bytes, start, bytes.length, 1, Buffer.alloc(32, 1)), undefined);
});

test('fast and JS decoders agree on every segment, altered anywhere or not, in any chunks', () => {
  // Mostly the printable ASCII the fast path takes, sometimes what it leaves to the JS decoder.
  const unit = fc.oneof(
    { arbitrary: fc.constantFrom('a', 'Z', '0', ' ', '/', '-', '.', '{', '}', ',', ':', '\u007f'), weight: 12 },
    { arbitrary: fc.constantFrom('"', '\\', '\n', '\t', '\u0001', 'é', '\u2028', '\ud83d\ude00', '\ud800'), weight: 1 },
  );
  const text = fc.string({ unit, maxLength: 12 });
  const row = fc.record({
    kind: fc.constantFrom('LockAcquired', 'LockReleased', 'OwnerSeen', 'Lock"Odd'),
    resource: fc.option(text, { nil: null }),
    disk: fc.option(text, { nil: null }),
    owner: fc.option(text, { nil: null }),
    owner_name: fc.option(text, { nil: null }),
    payload: fc.oneof(text, fc.dictionary(text, text, { maxKeys: 3 }).map((o) => JSON.stringify(o))),
    host: fc.constantFrom('h1', 'h"1', 'hé'),
  });
  const alter = fc.option(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { nil: undefined });
  fc.assert(
    fc.property(fc.array(row, { maxLength: 25 }), fc.boolean(), alter, fc.array(fc.nat(), { maxLength: 4 }), (rs, seal, change, cuts) => {
      const rows: ChainRow[] = rs.map((r, i) => ({ seq: i + 1, at: `2026-12-01T00:00:00.${String(i).padStart(3, '0')}Z`, ...r }));
      const bytes = segmentText(rows, 1, seal);
      if (change !== undefined) bytes[change.at % bytes.length] = change.byte;
      const a = decode(bytes, cuts, true);
      const b = decode(bytes, cuts, false);
      assert.equal(a, b);
    }),
    { numRuns: 400 },
  );
});

test('an altered fact line is named by the JS decoder exactly as without the fast path', () => {
  const rows = plainRows(1, 50);
  const good = segmentText(rows, 1, true);
  const s = good.toString('latin1');
  const cases = [
    s.replace('"seq":20,', '"seq":21,'), // a gap
    s.replace('"vm-30"', '"vm-3O"'), // a field changed: the hash no longer chains
    s.replace(/"hash":"([0-9a-f]{64})"\}\n\{"t":"fact","seq":41,/, (_m, h: string) => `"hash":"${h.toUpperCase()}"}\n{"t":"fact","seq":41,`), // uppercase hex
    s.replace('{"t":"fact","seq":12,', '{"t":"fact", "seq":12,'), // whitespace: valid JSON, the JS path reads it
  ];
  for (const c of cases) {
    const bytes = Buffer.from(c, 'latin1');
    const a = decode(bytes, [], true);
    const b = decode(bytes, [], false);
    assert.equal(a, b);
  }
  assert.ok((decode(Buffer.from(cases[0]!, 'latin1'), [], true).problem as { reason: string }).reason.includes('gap'));
  assert.ok((decode(Buffer.from(cases[1]!, 'latin1'), [], true).problem as { reason: string }).reason.includes('does not chain'));
  assert.ok((decode(Buffer.from(cases[2]!, 'latin1'), [], true).problem as { reason: string }).reason.includes('lowercase hex'));
  assert.is(decode(Buffer.from(cases[3]!, 'latin1'), [], true).problem, undefined);
});

test('the native call refuses offsets that are not whole numbers within the buffer (a NaN passed every check before: review26c N1)', () => {
  assert.ok(factScanAvailable(), 'native scanFacts missing: npm rebuild');
  const buf = Buffer.from('{"t":"fact"}\n');
  for (const [start, end] of [[NaN, buf.length], [0, NaN], [0.5, buf.length], [0, buf.length - 0.5], [-1, buf.length], [0, buf.length + 1], [3, 2], [Infinity, Infinity]] as const) {
    assert.throws(() => scanFacts(buf, start, end, 1, Buffer.alloc(32)), /bad arguments/, `start ${start}, end ${end}`);
  }
});

test.run();
