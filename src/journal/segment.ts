// The published history's file format (issue 15; the contract is docs/decisions/0016 and
// /work/issues/segment-format.md): each daemon copies its journal's facts, in seq order and with their
// hash chain, into append-only JSON-lines segments under `<file lockspace>/.journal/<host-id>/`.
// This module is the one encoder and the one decoder: the publisher resumes with it, `audit --cluster`
// and `journal verify --cluster` read with it, so writer and readers can never disagree on a line.
//
// Pure apart from `listSegments` (one readdir) and `newJournalId` (randomness): no clock, no writes.
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { GENESIS_HASH, chainHash, type ChainRow } from './schema.js';
import { scanFacts, type FactScan } from './segment-scan.js';

/** The directory under the file lockspace that holds every host's published history. */
export const PUBLISHED_DIR = '.journal';
export const SEGMENT_VERSION = 1;
/** Rotate to a new segment once the current one has reached this many bytes (config: publish_segment_bytes). */
export const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
/**
 * The longest line a reader accepts (bytes, without its newline). A fact is a few KiB: its fields come
 * from inputs bounded per line (MAX_LINE_BYTES, 1 MiB, for JSON-lines sources; a VM name of at most
 * 256 characters; a disk path of at most PATH_MAX), so 16 MiB leaves a wide margin for JSON escaping.
 * A longer line is corruption: a reader stops that chain there instead of buffering it without end.
 */
export const SEGMENT_MAX_LINE_BYTES = 16 * 1024 * 1024;

const JOURNAL_ID_RE = /^[0-9a-f]{16}$/;
const HEX64_RE = /^[0-9a-f]{64}$/;
const SEGMENT_NAME_RE = /^([0-9a-f]{16})-([0-9]{16})\.seg$/;
const ZERO_HEX = GENESIS_HASH.toString('hex');

/** First line of every segment. */
export interface SegmentHeader {
  t: 'segment';
  v: number;
  host: string;
  journal: string;
  /** Seq of the first fact this segment holds (or would hold: a fresh segment may have none yet). */
  first: number;
  /** Hex chain hash of fact first-1: zeros at the genesis, the chain base after a compaction. */
  prev: string;
  created: string;
  /**
   * Present (always true) on a segment that starts a stretch of the history after facts the journal
   * compacted away before they were published (publication off, or an upgrade that turned it on):
   * `prev` is then the journal's chain base (not checkable from the published history), a gap before
   * `first` is not corruption, and the segment's first lines after the header are `carried` lines.
   */
  compacted?: true;
}

/**
 * A copy of a fact compacted before it was published that was still in force at `first` - 1 (a hold
 * still open at the cut: the journal's `carried` rows). Only right after a `compacted` header; seq <
 * header.first, ascending. Its hash is the original chain's, which the reader cannot recompute (its
 * predecessor is in the host's archive only); the host's own `journal verify` checks its archive.
 */
export interface SegmentCarried extends Omit<SegmentFact, 't'> {
  t: 'carried';
}

/** One journal fact: exactly the hash chain's columns (schema.ts CHAIN_COLUMNS), plus its hash. */
export interface SegmentFact extends ChainRow {
  t: 'fact';
  /** Hex of the chain hash; `payload` is the JSON text exactly as the journal stores it (the chain hashes this text). */
  hash: string;
}

/** Last line of a segment the writer rotated away from. */
export interface SegmentSeal {
  t: 'seal';
  last: number;
  hash: string;
  count: number;
}

export type SegmentLine = SegmentHeader | SegmentFact | SegmentCarried | SegmentSeal;

// ---------------------------------------------------------------------------------------------
// Names

/** True for a journal id as `newJournalId` makes them: 16 lowercase hex chars. */
export function isJournalId(s: unknown): s is string {
  return typeof s === 'string' && JOURNAL_ID_RE.test(s);
}

/** A fresh journal id (random, so a new local journal's seq 1 never collides with an old one's). */
export function newJournalId(): string {
  return randomBytes(8).toString('hex');
}

/** `<lockspace>/.journal/<host-id>`: one host's published history (the host id passed config's HOST_ID check). */
export function hostSegmentDir(lockspace: string, host: string): string {
  // config's HOST_ID check lets '.' and '..' through: either would name another directory.
  if (host === '' || host === '.' || host === '..' || host.includes('/')) throw new TypeError(`host id ${JSON.stringify(host)} cannot name a directory`);
  return join(lockspace, PUBLISHED_DIR, host);
}

/** `<journal-id>-<first seq, 16 digits>.seg`: names sort by journal, then by seq. */
export function segmentFileName(journalId: string, firstSeq: number): string {
  if (!isJournalId(journalId)) throw new TypeError(`segment journal id must be 16 lowercase hex chars, got ${JSON.stringify(journalId)}`);
  if (!Number.isSafeInteger(firstSeq) || firstSeq < 1) throw new TypeError(`segment first seq must be an integer >= 1, got ${JSON.stringify(firstSeq)}`);
  return `${journalId}-${String(firstSeq).padStart(16, '0')}.seg`;
}

/** The journal id and first seq a segment's name carries; undefined for any other name (temporaries start with '.'). */
export function parseSegmentFileName(name: string): { journalId: string; firstSeq: number } | undefined {
  const m = SEGMENT_NAME_RE.exec(name);
  if (m === null) return undefined;
  const firstSeq = Number(m[2]);
  if (!Number.isSafeInteger(firstSeq) || firstSeq < 1) return undefined;
  return { journalId: m[1]!, firstSeq };
}

/** The temporary a segment is written as before its rename: readers skip names starting with '.'. */
export function segmentTempName(name: string): string {
  return `.${name}.tmp`;
}

export interface SegmentFile {
  name: string;
  journalId: string;
  firstSeq: number;
}

/**
 * A host directory's segments, by journal id then first seq; other names are ignored. A fresh
 * readdir each call: cluster filesystems cache names, and a catch-up must see segments made since.
 */
export function listSegments(dir: string): SegmentFile[] {
  const out: SegmentFile[] = [];
  for (const name of readdirSync(dir)) {
    const p = parseSegmentFileName(name);
    if (p !== undefined) out.push({ name, ...p });
  }
  return out.sort((a, b) => (a.journalId < b.journalId ? -1 : a.journalId > b.journalId ? 1 : a.firstSeq - b.firstSeq));
}

// ---------------------------------------------------------------------------------------------
// Encoding: one line each, '\n' included. Keys in a fixed order, so the bytes are reproducible.

export function encodeHeader(h: { host: string; journal: string; first: number; prev: Buffer | string; created: string; compacted?: boolean }): string {
  const prev = typeof h.prev === 'string' ? h.prev : h.prev.toString('hex');
  const line: SegmentHeader = { t: 'segment', v: SEGMENT_VERSION, host: h.host, journal: h.journal, first: h.first, prev, created: h.created };
  if (h.compacted === true) line.compacted = true;
  return `${JSON.stringify(line)}\n`;
}

/** A carried line (see SegmentCarried): a compacted fact still in force, with its original hash. */
export function encodeCarried(row: ChainRow, hash: Buffer | string): string {
  return encodeFact(row, hash).replace(/^\{"t":"fact"/, '{"t":"carried"');
}

/** A fact line from a journal row as stored (payload text as is) and its chain hash. */
export function encodeFact(row: ChainRow, hash: Buffer | string): string {
  const line: SegmentFact = {
    t: 'fact',
    seq: row.seq,
    at: row.at,
    host: row.host,
    kind: row.kind,
    resource: row.resource,
    disk: row.disk,
    owner: row.owner,
    owner_name: row.owner_name,
    payload: row.payload,
    hash: typeof hash === 'string' ? hash : hash.toString('hex'),
  };
  return `${JSON.stringify(line)}\n`;
}

export function encodeSeal(s: { last: number; hash: Buffer | string; count: number }): string {
  const line: SegmentSeal = { t: 'seal', last: s.last, hash: typeof s.hash === 'string' ? s.hash : s.hash.toString('hex'), count: s.count };
  return `${JSON.stringify(line)}\n`;
}

/** The journal row a fact line stands for: `chainHash(prev, factRow(f))` recomputes `f.hash`. */
export function factRow(f: SegmentFact): ChainRow {
  return { seq: f.seq, at: f.at, host: f.host, kind: f.kind, resource: f.resource, disk: f.disk, owner: f.owner, owner_name: f.owner_name, payload: f.payload };
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** What the decoder expects of a segment's header, from its file name, directory, and predecessor. */
export interface SegmentExpect {
  /** The host directory the segment was found in. */
  host?: string;
  /** From the file name. */
  journal?: string;
  first?: number;
  /** Hex hash of fact first-1 (the previous segment's seal, or the chain base the reader knows). */
  prev?: string;
}

/**
 * Where a decoder stands: everything needed to continue reading the same file from `offset` later
 * (a reader's incremental catch-up stores it). Plain JSON.
 */
export interface SegmentDecoderState {
  /** Bytes of complete lines consumed so far: the next read starts here. */
  offset: number;
  /** Complete lines consumed so far (line numbers in problems are 1-based). */
  lines: number;
  header: SegmentHeader | null;
  /** Seq of the last fact read (header.first - 1 before any). */
  lastSeq: number;
  /** Hex hash of that fact (header.prev before any). */
  lastHash: string;
  /** Facts read in this segment. */
  count: number;
  seal: SegmentSeal | null;
  /** false once anything but a carried line followed the header (absent in older stored states). */
  carriedOpen?: boolean;
  /** Seq of the last carried line read. */
  carriedLast?: number;
}

/** A corrupt segment: where, and why. The first problem stops the decoder. */
export interface SegmentProblem {
  file: string;
  /** Byte offset of the offending line's start. */
  offset: number;
  /** 1-based line number. */
  line: number;
  /** The seq the line carries, or the seq that was expected there. */
  seq?: number;
  reason: string;
}

export class SegmentError extends Error {
  readonly code = 'VMLOCKD_ERR_SEGMENT_CORRUPT';
  constructor(readonly problem: SegmentProblem) {
    super(`${problem.file}: line ${problem.line}${problem.seq !== undefined ? ` (seq ${problem.seq})` : ''}: ${problem.reason}`);
    this.name = 'SegmentError';
  }
}

export function initialDecoderState(): SegmentDecoderState {
  return { offset: 0, lines: 0, header: null, lastSeq: 0, lastHash: ZERO_HEX, count: 0, seal: null };
}

/**
 * A streaming, validating reader of one segment file. Feed it the bytes from `state.offset` on, in
 * chunks of any size; it returns each complete line as it is checked:
 *   - the header against the file name, host directory and predecessor (`expect`);
 *   - each fact: the exact fields, seq = previous + 1, and its hash recomputed from the previous one;
 *   - the seal: last, hash and count agree with the facts; nothing may follow it.
 * A line without its '\n' is held back as "not yet written" (a live writer, or a torn tail after a
 * crash): `pending` says how many bytes wait. The first corrupt line sets `problem` and the decoder
 * returns nothing more.
 */
export class SegmentDecoder {
  readonly file: string;
  private readonly expect: SegmentExpect;
  private st: SegmentDecoderState;
  private carry: Buffer[] = [];
  private carryBytes = 0;
  private prev: Buffer;
  private bad: SegmentProblem | undefined;

  constructor(file: string, expect: SegmentExpect = {}, resume?: SegmentDecoderState) {
    this.file = file;
    this.expect = expect;
    this.st = resume === undefined ? initialDecoderState() : { ...resume };
    this.prev = Buffer.from(this.st.lastHash, 'hex');
  }

  /** A copy of where the decoder stands (complete lines only). */
  get state(): SegmentDecoderState {
    return { ...this.st };
  }

  get problem(): SegmentProblem | undefined {
    return this.bad;
  }

  /** Bytes after the last complete line (an unterminated line so far). */
  get pending(): number {
    return this.carryBytes;
  }

  /** The seal was read: the segment is complete, its successor starts at seal.last + 1. */
  get sealed(): boolean {
    return this.st.seal !== null;
  }

  push(chunk: Buffer): SegmentLine[] {
    if (this.bad !== undefined) return [];
    const out: SegmentLine[] = [];
    // Only the new chunk is searched for '\n' (linear in the bytes read); the carry is joined once,
    // when its line ends, and never grows past SEGMENT_MAX_LINE_BYTES.
    let nl = chunk.indexOf(10);
    if (nl === -1) {
      if (chunk.length > 0) this.carry.push(Buffer.from(chunk));
      this.carryBytes += chunk.length;
      if (this.carryBytes > SEGMENT_MAX_LINE_BYTES) this.tooLong();
      return out;
    }
    let start = 0;
    if (this.carryBytes > 0) {
      if (this.carryBytes + nl > SEGMENT_MAX_LINE_BYTES) {
        this.tooLong();
        return out;
      }
      const head = Buffer.concat([...this.carry, chunk.subarray(0, nl + 1)]);
      this.carry = [];
      this.carryBytes = 0;
      const line = this.decodeLine(head, 0, head.length - 1);
      if (line === undefined) return out;
      out.push(line);
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    for (; nl !== -1; nl = chunk.indexOf(10, start)) {
      if (this.st.header !== null && this.st.seal === null) {
        // The encoder's fact lines, checked natively (segment-scan.ts); the first line it does not
        // take (none, a seal, anything unusual or wrong) is read below as always.
        const fast = ofHost(scanFacts(chunk, start, chunk.length, this.st.lastSeq + 1, this.prev), this.st.header.host, chunk, start);
        if (fast !== undefined) {
          const n = fast.facts.length;
          for (let i = 0; i < n; i++) out.push(fast.facts[i]!);
          const last = fast.facts[n - 1]!;
          this.st.carriedOpen = false;
          this.prev = fast.prev;
          this.st.lastSeq = last.seq;
          this.st.lastHash = last.hash;
          this.st.count += n;
          this.st.lines += n;
          this.st.offset += fast.end - start;
          start = fast.end;
          nl = chunk.indexOf(10, start);
          if (nl === -1) break;
        }
      }
      if (nl - start > SEGMENT_MAX_LINE_BYTES) {
        this.tooLong();
        return out;
      }
      const line = this.decodeLine(chunk, start, nl);
      if (line === undefined) return out;
      out.push(line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.carry.push(Buffer.from(chunk.subarray(start)));
      this.carryBytes = chunk.length - start;
      if (this.carryBytes > SEGMENT_MAX_LINE_BYTES) this.tooLong();
    }
    return out;
  }

  /** The line at the decoder's offset is longer than any line a writer makes: corruption. */
  private tooLong(): void {
    this.carry = [];
    this.carryBytes = 0;
    this.fail(this.st.offset, `line longer than SEGMENT_MAX_LINE_BYTES (${SEGMENT_MAX_LINE_BYTES} bytes) without its newline: no writer makes such a line (a fact is a few KiB); the file is damaged or not a segment`, this.st.header === null ? undefined : this.st.lastSeq + 1);
  }

  private fail(offset: number, reason: string, seq?: number): undefined {
    this.bad = { file: this.file, offset, line: this.st.lines + 1, reason };
    if (seq !== undefined) this.bad.seq = seq;
    return undefined;
  }

  /** Checks one complete line (bytes start..nl, '\n' at nl) and advances the state; undefined on corruption. */
  private decodeLine(buf: Buffer, start: number, nl: number): SegmentLine | undefined {
    const at = this.st.offset;
    const expectSeq = this.st.lastSeq + 1;
    let v: unknown;
    try {
      v = JSON.parse(buf.toString('utf8', start, nl));
    } catch {
      return this.fail(at, 'line is not valid JSON', this.st.header === null ? undefined : expectSeq);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return this.fail(at, 'line is not a JSON object');
    const o = v as Record<string, unknown>;
    let line: SegmentLine;
    if (this.st.header === null) {
      const why = headerProblem(o, this.expect);
      if (why !== undefined) return this.fail(at, why);
      const h = o as unknown as SegmentHeader;
      line = h;
      this.st.header = h;
      this.st.lastSeq = h.first - 1;
      this.st.lastHash = h.prev;
      this.prev = Buffer.from(h.prev, 'hex');
    } else if (this.st.seal !== null) {
      return this.fail(at, `a line follows the seal of seq ${this.st.seal.last}`);
    } else if (o.t === 'fact') {
      const why = factProblem(o);
      if (why !== undefined) return this.fail(at, why, typeof o.seq === 'number' ? o.seq : expectSeq);
      const f = o as unknown as SegmentFact;
      // A journal's facts are published only under the host id that journaled them (the publisher's
      // foreignHost): a fact naming another host is not this host's history (a copied directory with
      // edited headers; the header is not hashed, the fact is).
      if (f.host !== this.st.header.host) return this.fail(at, `fact seq ${f.seq} says host ${JSON.stringify(f.host)} in a segment of host ${JSON.stringify(this.st.header.host)}: facts are published only under the host id that journaled them`, f.seq);
      if (f.seq !== expectSeq) return this.fail(at, `seq ${f.seq} where seq ${expectSeq} was expected (a gap or a duplicate)`, f.seq);
      // (f has exactly the chain's columns besides t and hash: no copy of the row per fact.)
      const hash = chainHash(this.prev, f);
      if (hash.toString('hex') !== f.hash) {
        if (!HEX64_RE.test(f.hash)) return this.fail(at, `fact hash must be 64 lowercase hex chars, got ${JSON.stringify(f.hash)}`, f.seq);
        return this.fail(at, 'hash does not chain: the fact, its hash or the one before it was changed after it was written', f.seq);
      }
      line = f;
      this.st.carriedOpen = false;
      this.prev = hash;
      this.st.lastSeq = f.seq;
      this.st.lastHash = f.hash;
      this.st.count++;
    } else if (o.t === 'carried') {
      const why = keysAre({ ...o, t: 'fact' }, FACT_KEYS) ?? factProblem({ ...o, t: 'fact' });
      if (why !== undefined) return this.fail(at, why.replace(/^fact/, 'carried'), typeof o.seq === 'number' ? o.seq : undefined);
      if (!HEX64_RE.test(o.hash as string)) return this.fail(at, `carried hash must be 64 lowercase hex chars, got ${JSON.stringify(o.hash)}`, typeof o.seq === 'number' ? o.seq : undefined);
      const c = o as unknown as SegmentCarried;
      if (this.st.header.compacted !== true || this.st.carriedOpen === false || this.st.count > 0) {
        return this.fail(at, 'a carried line outside the carried block (it may only follow the header of a compacted segment)', c.seq);
      }
      if (c.seq >= this.st.header.first) return this.fail(at, `carried seq ${c.seq} is not before the segment's first seq ${this.st.header.first}`, c.seq);
      if (this.st.carriedLast !== undefined && c.seq <= this.st.carriedLast) return this.fail(at, `carried seq ${c.seq} after carried seq ${this.st.carriedLast} (they are in ascending order)`, c.seq);
      line = c;
      this.st.carriedLast = c.seq;
    } else if (o.t === 'seal') {
      this.st.carriedOpen = false;
      const why = sealProblem(o);
      if (why !== undefined) return this.fail(at, why);
      const s = o as unknown as SegmentSeal;
      if (s.last !== this.st.lastSeq || s.hash !== this.st.lastHash || s.count !== this.st.count) {
        return this.fail(
          at,
          `seal says last ${s.last}, count ${s.count}, hash ${s.hash.slice(0, 12)}..., the segment has last ${this.st.lastSeq}, count ${this.st.count}, hash ${this.st.lastHash.slice(0, 12)}...`,
          s.last,
        );
      }
      line = s;
      this.st.seal = s;
    } else {
      return this.fail(at, `unknown line type ${JSON.stringify(o.t)} (expected "fact" or "seal")`, expectSeq);
    }
    this.st.offset += nl + 1 - start;
    this.st.lines++;
    return line;
  }
}

/**
 * A scan's facts up to the first that names another host than its segment's header (review26b F4):
 * decodeLine then reads that one and names it. `start`: where the scan began in `buf`.
 */
function ofHost(s: FactScan | undefined, host: string, buf: Buffer, start: number): FactScan | undefined {
  if (s === undefined) return undefined;
  const n = s.facts.length;
  let k = 0;
  while (k < n && s.facts[k]!.host === host) k++;
  if (k === n) return s;
  if (k === 0) return undefined;
  let end = start;
  for (let i = 0; i < k; i++) end = buf.indexOf(10, end) + 1;
  return { facts: s.facts.slice(0, k), end, prev: Buffer.from(s.facts[k - 1]!.hash, 'hex') };
}

function isNullableString(v: unknown): boolean {
  return v === null || typeof v === 'string';
}

function keysAre(o: Record<string, unknown>, keys: readonly string[]): string | undefined {
  const have = Object.keys(o);
  if (have.length === keys.length && keys.every((k) => Object.hasOwn(o, k))) return undefined;
  const extra = have.filter((k) => !keys.includes(k));
  const missing = keys.filter((k) => !Object.hasOwn(o, k));
  return `${String(o.t)} line has ${[missing.length ? `missing field(s) ${missing.join(', ')}` : '', extra.length ? `unknown field(s) ${extra.join(', ')}` : ''].filter(Boolean).join(' and ')}`;
}

const HEADER_KEYS = ['t', 'v', 'host', 'journal', 'first', 'prev', 'created'] as const;
const FACT_KEYS = ['t', 'seq', 'at', 'host', 'kind', 'resource', 'disk', 'owner', 'owner_name', 'payload', 'hash'] as const;
const FACT_KEY_SET: ReadonlySet<string> = new Set(FACT_KEYS);
const SEAL_KEYS = ['t', 'last', 'hash', 'count'] as const;

function headerProblem(o: Record<string, unknown>, e: SegmentExpect): string | undefined {
  if (o.t !== 'segment') return `first line is not a segment header (t is ${JSON.stringify(o.t)})`;
  if (o.v !== SEGMENT_VERSION) return `segment format version ${JSON.stringify(o.v)}, this vmlockd reads version ${SEGMENT_VERSION}`;
  if (Object.hasOwn(o, 'compacted') && o.compacted !== true) return `header compacted must be true when present, got ${JSON.stringify(o.compacted)}`;
  const keys = keysAre(o, o.compacted === true ? [...HEADER_KEYS, 'compacted'] : HEADER_KEYS);
  if (keys !== undefined) return keys;
  if (typeof o.host !== 'string' || o.host === '') return `header host must be a non-empty string, got ${JSON.stringify(o.host)}`;
  if (!isJournalId(o.journal)) return `header journal must be 16 lowercase hex chars, got ${JSON.stringify(o.journal)}`;
  if (typeof o.first !== 'number' || !Number.isSafeInteger(o.first) || o.first < 1) return `header first must be an integer >= 1, got ${JSON.stringify(o.first)}`;
  if (typeof o.prev !== 'string' || !HEX64_RE.test(o.prev)) return `header prev must be 64 lowercase hex chars, got ${JSON.stringify(o.prev)}`;
  if (typeof o.created !== 'string') return `header created must be a string, got ${JSON.stringify(o.created)}`;
  if (e.host !== undefined && o.host !== e.host) return `header host ${JSON.stringify(o.host)} in the directory of host ${JSON.stringify(e.host)}`;
  if (e.journal !== undefined && o.journal !== e.journal) return `header journal ${o.journal} but the file name says ${e.journal}`;
  if (e.first !== undefined && o.first !== e.first) return `header first ${o.first} but the file name says ${e.first}`;
  // A compacted segment starts after facts that were never published: its prev is the journal's chain
  // base, which only that host's archive can check.
  if (e.prev !== undefined && o.prev !== e.prev && o.compacted !== true) {
    return `header prev ${o.prev.slice(0, 12)}... does not continue the chain (expected ${e.prev.slice(0, 12)}..., the hash of seq ${o.first - 1})`;
  }
  return undefined;
}

/** True when `o` has exactly the fact line's keys (the common case, checked without arrays). */
function hasFactKeys(o: Record<string, unknown>): boolean {
  let n = 0;
  for (const k in o) {
    if (!FACT_KEY_SET.has(k)) return false;
    n++;
  }
  return n === FACT_KEYS.length;
}

function factProblem(o: Record<string, unknown>): string | undefined {
  if (!hasFactKeys(o)) {
    const keys = keysAre(o, FACT_KEYS);
    if (keys !== undefined) return keys;
  }
  if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 1) return `fact seq must be an integer >= 1, got ${JSON.stringify(o.seq)}`;
  for (const k of ['at', 'host', 'kind', 'payload'] as const) {
    if (typeof o[k] !== 'string') return `fact ${k} must be a string, got ${JSON.stringify(o[k])}`;
  }
  for (const k of ['resource', 'disk', 'owner', 'owner_name'] as const) {
    if (!isNullableString(o[k])) return `fact ${k} must be a string or null, got ${JSON.stringify(o[k])}`;
  }
  // Its hex form is checked where it fails to match the recomputed hash (equal to it: 64 lowercase hex chars).
  if (typeof o.hash !== 'string') return `fact hash must be 64 lowercase hex chars, got ${JSON.stringify(o.hash)}`;
  return undefined;
}

function sealProblem(o: Record<string, unknown>): string | undefined {
  const keys = keysAre(o, SEAL_KEYS);
  if (keys !== undefined) return keys;
  if (typeof o.last !== 'number' || !Number.isSafeInteger(o.last) || o.last < 0) return `seal last must be an integer >= 0, got ${JSON.stringify(o.last)}`;
  if (typeof o.count !== 'number' || !Number.isSafeInteger(o.count) || o.count < 0) return `seal count must be an integer >= 0, got ${JSON.stringify(o.count)}`;
  if (typeof o.hash !== 'string' || !HEX64_RE.test(o.hash)) return `seal hash must be 64 lowercase hex chars, got ${JSON.stringify(o.hash)}`;
  return undefined;
}

/** The whole of one segment's bytes, decoded at once (tests, `journal verify`, the writer's resume). */
export interface DecodedSegment {
  header: SegmentHeader | null;
  facts: SegmentFact[];
  seal: SegmentSeal | null;
  state: SegmentDecoderState;
  /** Bytes after the last complete line: an unfinished (torn) last line. */
  tail: number;
  problem?: SegmentProblem;
}

export function decodeSegment(file: string, bytes: Buffer, expect: SegmentExpect = {}): DecodedSegment {
  const d = new SegmentDecoder(file, expect);
  const lines = d.push(bytes);
  const out: DecodedSegment = { header: d.state.header, facts: [], seal: d.state.seal, state: d.state, tail: d.pending };
  for (const l of lines) if (l.t === 'fact') out.facts.push(l);
  if (d.problem !== undefined) {
    out.problem = d.problem;
    out.tail = bytes.length - d.state.offset;
  }
  return out;
}

/**
 * Why segment `next` cannot follow segment `prev` (decoded to its seal) in one journal's chain, or
 * undefined when it does: first = seal.last + 1 and prev = seal.hash.
 */
export function successorProblem(prev: SegmentDecoderState, next: SegmentHeader): string | undefined {
  if (prev.header === null) return 'the previous segment has no header';
  if (prev.seal === null) return `segment first ${next.first} follows a segment that was never sealed (its last seq is ${prev.lastSeq})`;
  if (next.first !== prev.seal.last + 1) {
    return next.first > prev.seal.last + 1
      ? `gap: seq ${prev.seal.last + 1} to ${next.first - 1} are missing between segments`
      : `overlap: segment starts at seq ${next.first}, the previous one ends at seq ${prev.seal.last}`;
  }
  if (next.prev !== prev.seal.hash) return `segment first ${next.first}: prev does not match the previous segment's seal hash`;
  return undefined;
}

