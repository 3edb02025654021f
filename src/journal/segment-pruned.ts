// The pruned-through marker of a published history (retention, `publish_retain_days`): the owning
// daemon removes its oldest sealed segments and first writes `<journal-id>.pruned` beside them, which
// says through which seq it removed them on purpose, the chain hash of that fact (so the kept history
// is still checked from its first segment on: its header's prev must be that hash), and the facts
// still in force at the cut (`carried` lines, the rule compaction uses: the holds that began before
// the cut, so a reader that starts at the first kept segment still knows them).
//
//   {"t":"pruned","v":1,"host":H,"journal":J,"through":N,"hash":"<hex of fact N>","at":"<ISO>","removed":K}
//   {"t":"carried",<fact fields>,"hash":...}        zero or more, seq <= N, ascending
//
// Written whole (temporary + rename) by the host's own daemon only, before the segments go, so a crash
// in between leaves segments the marker already covers, never a removal without a marker. Readers:
// `journal verify --cluster` (cluster-verify.ts) and the read cache (cluster-cache.ts). Pure apart from
// `readPruned` (one open and read).
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChainRow } from './schema.js';
import { SegmentDecoder, encodeCarried, encodeHeader, isJournalId, type SegmentCarried } from './segment.js';

export const PRUNED_VERSION = 1;
/** A marker is small (one line per hold in force); anything larger is not one. */
const PRUNED_MAX_BYTES = 64 * 1024 * 1024;
const HEX64_RE = /^[0-9a-f]{64}$/;

export interface PrunedMarker {
  t: 'pruned';
  v: number;
  host: string;
  journal: string;
  /** Every fact through this seq was removed on purpose (its segments pruned). */
  through: number;
  /** Hex chain hash of fact `through`: the prev of the first kept segment. */
  hash: string;
  /** When the owner pruned (its clock). */
  at: string;
  /** Segments removed by this and earlier prunes (a figure for people, not checked). */
  removed: number;
}

export interface PrunedRead {
  marker: PrunedMarker;
  /** The holds in force at `through` (carried lines, original seq and hash). */
  carried: SegmentCarried[];
}

/** `<journal-id>.pruned`: listSegments ignores it (not a .seg name). */
export function prunedFileName(journalId: string): string {
  if (!isJournalId(journalId)) throw new TypeError(`journal id must be 16 lowercase hex chars, got ${JSON.stringify(journalId)}`);
  return `${journalId}.pruned`;
}

export function encodePruned(m: Omit<PrunedMarker, 't' | 'v'>, carried: ReadonlyArray<{ row: ChainRow; hash: Buffer | string }>): string {
  const head: PrunedMarker = { t: 'pruned', v: PRUNED_VERSION, host: m.host, journal: m.journal, through: m.through, hash: m.hash, at: m.at, removed: m.removed };
  return JSON.stringify(head) + '\n' + carried.map((c) => encodeCarried(c.row, c.hash)).join('');
}

/**
 * Decodes a marker. Its carried lines are checked by the segment decoder's own carried rule (as if
 * they followed a compacted header starting at through + 1). A string: what is wrong with it.
 */
export function decodePruned(file: string, bytes: Buffer, expect: { host: string; journal: string }): PrunedRead | string {
  const nl = bytes.indexOf(10);
  if (nl === -1) return `${file}: no complete first line`;
  let m: PrunedMarker;
  try {
    m = JSON.parse(bytes.subarray(0, nl).toString('utf8')) as PrunedMarker;
  } catch (e) {
    return `${file}: line 1 does not parse: ${(e as Error).message}`;
  }
  if (m === null || typeof m !== 'object' || m.t !== 'pruned') return `${file}: line 1 is not a pruned-through marker ({"t":"pruned",...})`;
  if (m.v !== PRUNED_VERSION) return `${file}: marker version ${JSON.stringify(m.v)} is not ${PRUNED_VERSION}`;
  if (m.host !== expect.host) return `${file}: marker names host ${JSON.stringify(m.host)}, but it is in ${expect.host}'s directory`;
  if (m.journal !== expect.journal) return `${file}: marker names journal ${JSON.stringify(m.journal)}, not ${expect.journal}`;
  if (!Number.isSafeInteger(m.through) || m.through < 1) return `${file}: marker's through ${JSON.stringify(m.through)} is not a seq`;
  if (typeof m.hash !== 'string' || !HEX64_RE.test(m.hash)) return `${file}: marker's hash is not 64 lowercase hex chars`;
  if (typeof m.at !== 'string' || Number.isNaN(Date.parse(m.at))) return `${file}: marker's at ${JSON.stringify(m.at)} is not a time`;
  const header = Buffer.from(encodeHeader({ host: m.host, journal: m.journal, first: m.through + 1, prev: m.hash, created: m.at, compacted: true }));
  const d = new SegmentDecoder(file, { host: m.host, journal: m.journal, first: m.through + 1 });
  const carried: SegmentCarried[] = [];
  for (const l of d.push(Buffer.concat([header, bytes.subarray(nl + 1)]))) {
    if (l.t === 'carried') carried.push(l);
    else if (l.t !== 'segment') return `${file}: only carried lines may follow the marker line, found a ${l.t} line`;
  }
  if (d.problem !== undefined) return `${file}: line ${d.problem.line}${d.problem.seq !== undefined ? ` (seq ${d.problem.seq})` : ''}: ${d.problem.reason}`;
  if (d.pending > 0) return `${file}: its last line is cut off (${d.pending} bytes)`;
  return { marker: { ...m, removed: typeof m.removed === 'number' ? m.removed : 0 }, carried };
}

/** The marker of `journal` in a host's directory: undefined when there is none, a string when it is unreadable or wrong. */
export function readPruned(dir: string, host: string, journal: string): PrunedRead | string | undefined {
  const file = join(dir, prunedFileName(journal));
  let fd: number;
  try {
    // Never blocks (a FIFO planted under its name) and never follows a link out of the lockspace.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return `${file}: cannot open: ${(e as Error).message}`;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return `${file}: not a regular file`;
    if (st.size > PRUNED_MAX_BYTES) return `${file}: ${st.size} bytes is too large for a marker`;
    return decodePruned(file, readFileSync(fd), { host, journal });
  } finally {
    closeSync(fd);
  }
}
