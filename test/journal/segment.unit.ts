import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SegmentDecoder,
  decodeSegment,
  encodeFact,
  encodeHeader,
  encodeSeal,
  hostSegmentDir,
  isJournalId,
  listSegments,
  newJournalId,
  parseSegmentFileName,
  segmentFileName,
  segmentTempName,
  successorProblem,
  type SegmentFact,
} from '../../src/journal/segment.js';
import type { ChainRow } from '../../src/journal/schema.js';

const JID = '0123456789abcdef';
const ZERO = '0'.repeat(64);

/** The chain written out independently of schema.ts (docs/audit.md's definition). */
function hashOf(prev: Buffer, r: ChainRow): Buffer {
  const head = JSON.stringify([r.seq, r.at, r.host, r.kind, r.resource, r.disk, r.owner, r.owner_name]);
  return createHash('sha256').update(Buffer.concat([prev, Buffer.from(`${head}\n${r.payload}`, 'utf8')])).digest();
}

function rows(from: number, n: number): ChainRow[] {
  return Array.from({ length: n }, (_, i) => ({
    seq: from + i,
    at: `2026-11-30T10:00:${String((from + i) % 60).padStart(2, '0')}.000Z`,
    host: 'h1',
    kind: i % 2 ? 'LockReleased' : 'LockAcquired',
    resource: i % 3 ? `/ls/${i}` : null,
    disk: i % 3 ? `/dev/vg/disk-${i} é"\\` : null,
    owner: 'u-1',
    owner_name: 'vm "one"\n',
    payload: JSON.stringify({ mode: 'exclusive', n: i, s: 'ü\u2028' }),
  }));
}

/** A segment's text for these rows, chained from prev; sealed when asked. Returns the text and the last hash. */
function segment(rs: ChainRow[], prev: Buffer, opts: { first?: number; seal?: boolean } = {}): { text: string; last: Buffer } {
  let text = encodeHeader({ host: 'h1', journal: JID, first: opts.first ?? rs[0]!.seq, prev, created: '2026-11-30T10:00:00.000Z' });
  let h = prev;
  for (const r of rs) {
    h = hashOf(h, r);
    text += encodeFact(r, h);
  }
  if (opts.seal === true) text += encodeSeal({ last: rs.length ? rs[rs.length - 1]!.seq : (opts.first ?? 1) - 1, hash: h, count: rs.length });
  return { text, last: h };
}

test('file names: 16-digit seq, journal id first, temporaries hidden, round trip', () => {
  const name = segmentFileName(JID, 42);
  assert.is(name, `${JID}-0000000000000042.seg`);
  assert.equal(parseSegmentFileName(name), { journalId: JID, firstSeq: 42 });
  assert.is(parseSegmentFileName(segmentTempName(name)), undefined);
  assert.is(parseSegmentFileName(`${JID}-42.seg`), undefined);
  assert.is(parseSegmentFileName(`${JID.toUpperCase()}-0000000000000042.seg`), undefined);
  assert.is(parseSegmentFileName(`${JID}-0000000000000000.seg`), undefined);
  assert.throws(() => segmentFileName('xyz', 1), /16 lowercase hex/);
  assert.throws(() => segmentFileName(JID, 0), />= 1/);
  assert.ok(isJournalId(newJournalId()));
  assert.is.not(newJournalId(), newJournalId());
  assert.is(hostSegmentDir('/ls', 'h1'), '/ls/.journal/h1');
  assert.throws(() => hostSegmentDir('/ls', '..'), /cannot name a directory/);
});

test('listSegments orders by journal then seq (not by name length) and skips temporaries and strangers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-seg-'));
  try {
    for (const n of [segmentFileName(JID, 1001), segmentFileName(JID, 1), segmentFileName('ffffffffffffffff', 5), segmentTempName(segmentFileName(JID, 2000)), 'README', 'x.seg']) {
      writeFileSync(join(dir, n), '');
    }
    assert.equal(listSegments(dir).map((s) => `${s.journalId}:${s.firstSeq}`), [`${JID}:1`, `${JID}:1001`, 'ffffffffffffffff:5']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a written segment decodes to the same rows, each hash recomputed, across any chunking', () => {
  const rs = rows(1, 25);
  const { text, last } = segment(rs, Buffer.alloc(32), { seal: true });
  const bytes = Buffer.from(text);
  for (const size of [1, 3, 7, 64, 1000, bytes.length]) {
    const d = new SegmentDecoder('f.seg', { host: 'h1', journal: JID, first: 1, prev: ZERO });
    const facts: SegmentFact[] = [];
    for (let i = 0; i < bytes.length; i += size) for (const l of d.push(bytes.subarray(i, i + size))) if (l.t === 'fact') facts.push(l);
    assert.is(d.problem, undefined, `chunk ${size}`);
    assert.is(facts.length, 25);
    assert.equal(facts.map((f) => ({ seq: f.seq, at: f.at, host: f.host, kind: f.kind, resource: f.resource, disk: f.disk, owner: f.owner, owner_name: f.owner_name, payload: f.payload })), rs);
    assert.ok(d.sealed);
    assert.is(d.state.offset, bytes.length);
    assert.is(d.state.lastHash, last.toString('hex'));
    assert.is(d.pending, 0);
  }
});

test('a line without its newline is pending, not a problem; the rest arrives later and the state resumes', () => {
  const rs = rows(1, 3);
  const { text } = segment(rs, Buffer.alloc(32));
  const bytes = Buffer.from(text);
  const cut = bytes.length - 10;
  const a = new SegmentDecoder('f.seg');
  const first = a.push(bytes.subarray(0, cut));
  assert.is(first.length, 3); // header + 2 facts
  assert.is(a.problem, undefined);
  assert.ok(a.pending > 0);
  // A reader stores the state and comes back with a new decoder, from state.offset.
  const b = new SegmentDecoder('f.seg', {}, a.state);
  const rest = b.push(bytes.subarray(a.state.offset));
  assert.equal(rest.map((l) => l.t), ['fact']);
  assert.is(b.state.lastSeq, 3);
  const whole = decodeSegment('f.seg', bytes.subarray(0, cut));
  assert.is(whole.facts.length, 2);
  assert.is(whole.state.offset + whole.tail, cut);
});

test('corruption is named by line and seq: altered fact, altered hash, gap, duplicate, bad JSON, extra field, line after seal, bad seal', () => {
  const rs = rows(1, 6);
  const { text } = segment(rs, Buffer.alloc(32), { seal: true });
  const lines = text.split('\n').slice(0, -1);
  const check = (mutate: (ls: string[]) => string[], seq: number | undefined, re: RegExp) => {
    const r = decodeSegment('h1/x.seg', Buffer.from(`${mutate([...lines]).join('\n')}\n`));
    assert.ok(r.problem, `expected a problem matching ${re}`);
    assert.match(r.problem!.reason, re);
    if (seq !== undefined) assert.is(r.problem!.seq, seq);
    assert.is(r.problem!.file, 'h1/x.seg');
    return r;
  };
  const r = check((ls) => ((ls[3] = ls[3]!.replace('"kind":"LockAcquired"', '"kind":"LockReleased"')), ls), 3, /hash does not chain/);
  assert.is(r.problem!.line, 4);
  assert.is(r.facts.length, 2);
  check((ls) => ((ls[3] = ls[3]!.replace(/"hash":"[0-9a-f]/, '"hash":"f')), ls), 3, /hash does not chain/);
  check((ls) => (ls.splice(3, 1), ls), 4, /seq 4 where seq 3 was expected/);
  check((ls) => (ls.splice(3, 0, ls[2]!), ls), 2, /seq 2 where seq 3 was expected/);
  check((ls) => ((ls[2] = '{"t":"fact",'), ls), 2, /not valid JSON/);
  check((ls) => ((ls[2] = ls[2]!.replace('{"t":"fact"', '{"t":"fact","x":1')), ls), 2, /unknown field\(s\) x/);
  check((ls) => [...ls, lines[1]!], undefined, /follows the seal/);
  check((ls) => ((ls[ls.length - 1] = ls[ls.length - 1]!.replace('"count":6', '"count":5')), ls), 6, /seal says/);
  check((ls) => ((ls[0] = ls[0]!.replace('"v":1', '"v":2')), ls), undefined, /format version 2/);
  check((ls) => ((ls[1] = ls[1]!.replace('"payload":"', '"payload":"x')), ls), 1, /hash does not chain/);
});

test('the header is checked against the file name, the host directory and the predecessor', () => {
  const { text } = segment(rows(5, 2), Buffer.alloc(32, 1));
  const b = Buffer.from(text);
  assert.is(decodeSegment('f', b, { host: 'h1', journal: JID, first: 5, prev: Buffer.alloc(32, 1).toString('hex') }).problem, undefined);
  assert.match(decodeSegment('f', b, { host: 'h2' }).problem!.reason, /directory of host "h2"/);
  assert.match(decodeSegment('f', b, { journal: 'ffffffffffffffff' }).problem!.reason, /file name says ffff/);
  assert.match(decodeSegment('f', b, { first: 6 }).problem!.reason, /file name says 6/);
  assert.match(decodeSegment('f', b, { prev: ZERO }).problem!.reason, /does not continue the chain/);
  assert.match(decodeSegment('f', Buffer.from(lineOf(rows(1, 1)[0]!))).problem!.reason, /not a segment header/);
});

function lineOf(r: ChainRow): string {
  return encodeFact(r, hashOf(Buffer.alloc(32), r));
}

test('successorProblem: a sealed segment continues exactly into the next; gaps, overlaps, unsealed and forks are named', () => {
  const a = segment(rows(1, 4), Buffer.alloc(32), { seal: true });
  const da = decodeSegment('a', Buffer.from(a.text));
  const b = segment(rows(5, 2), a.last);
  const db = decodeSegment('b', Buffer.from(b.text));
  assert.is(successorProblem(da.state, db.header!), undefined);
  assert.match(successorProblem(da.state, { ...db.header!, first: 7 })!, /gap: seq 5 to 6/);
  assert.match(successorProblem(da.state, { ...db.header!, first: 4 })!, /overlap/);
  assert.match(successorProblem(da.state, { ...db.header!, prev: ZERO })!, /prev does not match/);
  const unsealed = decodeSegment('a', Buffer.from(segment(rows(1, 4), Buffer.alloc(32)).text));
  assert.match(successorProblem(unsealed.state, db.header!)!, /never sealed/);
  // An empty sealed segment (rotated before any fact) still passes its hash on.
  const empty = decodeSegment('e', Buffer.from(segment([], a.last, { first: 5, seal: true }).text));
  assert.is(empty.problem, undefined);
  assert.is(successorProblem(empty.state, db.header!), undefined);
});

test.run();
