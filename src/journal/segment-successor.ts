// The successor statement of a published history (the segment format's rotation rule, documented in
// docs/decisions/0016-published-history.md "Rotation"): a writer that creates each segment's successor
// right after writing its seal says so once, in its own directory,
//
//   <lockspace>/.journal/<host-id>/<journal-id>.successor
//   {"t":"successor","v":1,"journal":J,"from":S,"at":"<ISO>"}
//
// meaning: every seal of journal J whose last seq is S or more was followed, at once, by the creation
// of the segment that starts at last + 1. So a sealed newest segment with last >= S and no successor
// was removed (or its daemon died between the two writes and never restarted), while one with
// last < S (or without the statement: an older writer, which opened the next segment with its next
// fact) cannot be told from a rotation waiting for its next fact. A separate file, not a new key in
// the seal or the header: readers of every version decode the segments unchanged (their key checks are
// strict), and ignore a name that is not a segment's.
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isJournalId } from './segment.js';

export interface SuccessorStatement {
  readonly t: 'successor';
  readonly v: 1;
  readonly journal: string;
  /** Seals at this seq or later are followed by their successor's creation. */
  readonly from: number;
  readonly at: string;
}

const SUFFIX = '.successor';
const MAX_BYTES = 64 * 1024;

export function successorFileName(journalId: string): string {
  if (!isJournalId(journalId)) throw new TypeError(`journal id must be 16 lowercase hex chars, got ${JSON.stringify(journalId)}`);
  return `${journalId}${SUFFIX}`;
}

export function encodeSuccessor(s: { journal: string; from: number; at: string }): string {
  const line: SuccessorStatement = { t: 'successor', v: 1, journal: s.journal, from: s.from, at: s.at };
  return JSON.stringify(line) + '\n';
}

export function decodeSuccessor(text: string, journal: string): SuccessorStatement | undefined {
  let o: Partial<SuccessorStatement>;
  try {
    o = JSON.parse(text) as Partial<SuccessorStatement>;
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== 'object' || o.t !== 'successor' || o.v !== 1 || o.journal !== journal) return undefined;
  if (!Number.isSafeInteger(o.from) || (o.from as number) < 0 || typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return undefined;
  return o as SuccessorStatement;
}

/** The statement in host directory `dir` for `journal`; undefined when there is none or it does not decode. */
export function readSuccessor(dir: string, journal: string): SuccessorStatement | undefined {
  let fd: number;
  try {
    fd = openSync(join(dir, successorFileName(journal)), constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_BYTES) return undefined;
    return decodeSuccessor(readFileSync(fd, 'utf8'), journal);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * How long after a seal its successor may be missing and still be a rotation in progress: the writer
 * creates it right after the seal (one fdatasync and a rename, seconds on a slow cluster filesystem),
 * and another mount of a cluster filesystem may list a new name only after its entry cache expires.
 * Within it a missing successor is not called removed (review23c: a live rotation was).
 */
export const SUCCESSOR_GRACE_MS = 60_000;

/**
 * Whether the sealed segment `file` was last written within SUCCESSOR_GRACE_MS of `now` (its mtime;
 * one further ahead of this clock than that is not: a skewed or forged time proves nothing recent).
 */
export function sealedRecently(file: string, now = Date.now()): boolean {
  try {
    return Math.abs(now - lstatSync(file).mtimeMs) < SUCCESSOR_GRACE_MS;
  } catch {
    return false;
  }
}
