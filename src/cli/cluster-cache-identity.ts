// What the cluster read cache (cluster-cache.ts) knows of the bytes it read from a published segment,
// beyond the hash of their last 512 bytes: a stamp (size, inode, mtime and ctime in nanoseconds) and
// a hash of every byte from the segment's start to where it read ("whole"). A fact rewritten in place
// keeps the segment's size and inode, and a rewrite before the last 512 bytes keeps their hash; the
// stamp's ctime moves with any write (a program cannot set it back), so a catch-up compares the stamp
// (one stat) and, only when it differs, hashes the bytes again against `whole`. Bytes that differ are
// a segment no longer published as it was read (decision 0014): the cache reads again from before it.
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';

/**
 * A stamp whose ctime is this close to (or after) the reader's clock when it was taken proves
 * nothing: a write in the same timestamp tick right after the stat keeps the same ctime (filesystems
 * keep coarse times; some keep seconds). Such a stamp is checked by the bytes next time.
 */
export const RACY_MS = 2000;

/** Bytes read from `to` on, hashed, with the stamp taken before the first of them was read. */
export interface WholeRecord {
  /** The bytes hashed: [0, to). */
  readonly to: number;
  readonly hash: string;
  readonly stamp: string;
}

const CHUNK = 1024 * 1024;
let chunk: Buffer | undefined;

/** `size:ino:mtimeNs:ctimeNs@taken` (taken: the reader's clock, ms). */
function format(st: fs.BigIntStats): string {
  return `${st.size}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}@${Date.now()}`;
}

/** The stamp of an open segment, taken before reading any byte it is to vouch for. */
export function stampOf(fd: number): string {
  return format(fs.fstatSync(fd, { bigint: true }));
}

/** The stamp of a segment by name (never following a link), or undefined when it is not there. */
export function stampAt(file: string): string | undefined {
  try {
    return format(fs.lstatSync(file, { bigint: true }));
  } catch {
    return undefined;
  }
}

/**
 * True when `now` shows the file unchanged since `stored` was taken: size, inode, mtime and ctime
 * equal, and `stored` not racy (its ctime RACY_MS or more before it was taken). False: hash the bytes.
 */
export function sameStamp(stored: string | null | undefined, now: string | undefined): boolean {
  if (stored === undefined || stored === null || now === undefined) return false;
  const at = stored.lastIndexOf('@');
  const fields = stored.slice(0, at);
  if (fields !== now.slice(0, now.lastIndexOf('@'))) return false;
  const ctimeMs = Number(BigInt(fields.split(':')[3] ?? '0') / 1_000_000n);
  return ctimeMs < Number(stored.slice(at + 1)) - RACY_MS;
}

/** The hash of [0, to) of a file being read, grown as the reader goes on. */
export class PrefixHash {
  private readonly h: Hash = createHash('sha256');
  private at = 0;
  private short = false;

  /** `stamp`: taken before the first byte this hash covers was read. */
  constructor(readonly stamp: string) {}

  /** Hashes the bytes up to `to` (pread: the reader's own buffers are not touched). False when the file ends before. */
  advance(fd: number, to: number): boolean {
    if (this.short) return false;
    chunk ??= Buffer.allocUnsafe(CHUNK);
    while (this.at < to) {
      const n = fs.readSync(fd, chunk, 0, Math.min(CHUNK, to - this.at), this.at);
      if (n === 0) {
        this.short = true;
        return false;
      }
      this.h.update(chunk.subarray(0, n));
      this.at += n;
    }
    return true;
  }

  get to(): number {
    return this.at;
  }

  value(): string {
    return this.h.copy().digest('hex').slice(0, 32);
  }

  record(): WholeRecord {
    return { to: this.at, hash: this.value(), stamp: this.stamp };
  }
}

/**
 * The bytes [0, rec.to) of the open segment hashed again, with a stamp taken first: the hash (to go
 * on from) when they are the bytes recorded, undefined when they differ or the file is shorter.
 */
export function verifyWhole(fd: number, rec: WholeRecord): PrefixHash | undefined {
  const h = new PrefixHash(stampOf(fd));
  if (!h.advance(fd, rec.to)) return undefined;
  return h.value() === rec.hash ? h : undefined;
}

/**
 * True when a complete line (a newline) lies in the segment at or after `from`: the segment holds
 * lines after the ones read (after its seal, or before the next segment's first), which a reader
 * without the cache decodes (and calls a problem) where the cache would not read them.
 */
export function lineAfter(fd: number, from: number): boolean {
  chunk ??= Buffer.allocUnsafe(CHUNK);
  let pos = from;
  for (;;) {
    const n = fs.readSync(fd, chunk, 0, CHUNK, pos);
    if (n === 0) return false;
    if (chunk.subarray(0, n).includes(10)) return true;
    pos += n;
  }
}

/**
 * Tracks the whole-prefix record of the segment a catch-up is reading. `open` when a segment is
 * opened, `at` at each commit: the record for the bytes up to the decoder's offset, continued only
 * from bytes that were verified against what was recorded (never a hash of bytes re-read unchecked).
 */
export class WholeTracker {
  private hash: PrefixHash | undefined;
  /** What was recorded for this segment before (a resume whose bytes were not hashed again). */
  private expect: WholeRecord | undefined;
  private stamp = '';
  /** The bytes before `expect.to` differ from those recorded: the record is not moved on. */
  private broken = false;

  /**
   * A segment opened at offset 0 (`from` undefined), or resumed: `verified` the hash of its bytes up
   * to the offset checked just before (unchanged()), or else `from` what was recorded.
   */
  open(fd: number, from: WholeRecord | undefined, verified: PrefixHash | undefined): void {
    this.broken = false;
    this.hash = verified;
    this.expect = verified === undefined ? from : undefined;
    this.stamp = verified?.stamp ?? stampOf(fd);
  }

  /** The record for [0, offset), or the one recorded before when the bytes under it changed meanwhile. */
  at(fd: number, offset: number): WholeRecord | undefined {
    if (this.broken) return this.expect;
    if (this.hash === undefined) {
      const h = new PrefixHash(this.stamp);
      if (this.expect !== undefined && this.expect.to > 0) {
        if (offset === this.expect.to) return this.expect;
        if (!h.advance(fd, this.expect.to) || h.value() !== this.expect.hash) {
          // Changed since the check (a race with a rewrite): keep what was recorded, so the next
          // catch-up's check finds the bytes differ.
          this.broken = true;
          return this.expect;
        }
      }
      this.hash = h;
    }
    if (offset < this.hash.to || !this.hash.advance(fd, offset)) {
      this.broken = true;
      return this.expect;
    }
    return this.hash.record();
  }
}
