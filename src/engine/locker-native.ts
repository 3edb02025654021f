// Part of the locker (invariant 4: only src/engine/locker*.ts opens lock files): the take's system
// calls and checks in one native call (native/ofd.c takeLockFile, docs/decisions/0019-native-take.md).
// The JS around it keeps every decision: which flags, whether to create, the pinned lockspace, the
// holder named in a refusal, the lease's records (decoded here from the bytes the call read), the
// generation, and the errors' wording, which is openLockFile's.
import * as fs from 'node:fs';
import { alignedScratch } from './aligned-io.js';
import { LEASE_SPAN, RECORD_SIZE } from './holder-record.js';
import { kindOfMode, leaseOf, notLockable, symlinkRefused, type Lease } from './locker-files.js';
import { TAKE, TAKE_OUT, TAKE_STATUS, type NativeBinding } from './native.js';

export type NativeTake =
  /**
   * Locked; `lease` is the lease as readLease would give it (null: not a lease), undefined when not
   * asked for; `ino` the locked file's inode number (decimal), when asked for the identity or the lease.
   */
  | { readonly status: 'taken'; readonly fd: number; readonly lease?: Lease | null; readonly ino?: string }
  /** Held elsewhere: the descriptor stays open for the caller to name the holder, then close. */
  | { readonly status: 'busy'; readonly fd: number }
  /** The path names another file (or none) now: the descriptor is closed; try again. */
  | { readonly status: 'replaced' }
  /** No file (only when opened without O_CREAT). */
  | { readonly status: 'missing' };

const out = new Int32Array(TAKE_OUT.BLOCKS + LEASE_SPAN / RECORD_SIZE);
const isBlank = (i: number): boolean => out[TAKE_OUT.BLOCKS + i] === 0;

/** st_ino from its two 32-bit halves, as a decimal string (fstat's bigint ino); undefined for 0 (a build without it). */
function inoOf(lo: number, hi: number): string | undefined {
  if (hi === 0) return lo === 0 ? undefined : String(lo >>> 0);
  return ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString();
}

/** ENOENT as Node's fs would throw it (openLockFile's callers see the same error either way). */
function missing(file: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`ENOENT: no such file or directory, open '${file}'`);
  e.code = 'ENOENT';
  e.errno = -2;
  e.syscall = 'open';
  e.path = file;
  return e;
}

/**
 * open + fstat + OFD lock on byte 0 (+ with `identity`, the path still names the inode locked; + with
 * `lease`, the lease read and checked) in one call. `flags` are openLockFile's: O_NONBLOCK always,
 * O_NOFOLLOW unless `blockDevice` (a disk locked in place keeps its own name, which may be a symlink).
 * `missingOk`: an absent file is an answer ('missing'), else an ENOENT error as fs throws it.
 */
export function takeNative(
  nat: NativeBinding,
  file: string,
  flags: number,
  how: { readonly write: boolean; readonly blockDevice: boolean; readonly identity: boolean; readonly lease: boolean; readonly missingOk?: boolean },
): NativeTake {
  const nofollow = how.blockDevice ? 0 : fs.constants.O_NOFOLLOW;
  const opts = (how.write ? TAKE.WRITE : 0) | (how.blockDevice ? TAKE.BLOCKDEV : 0) | (how.identity ? TAKE.IDENTITY : 0) | (how.lease ? TAKE.LEASE : 0);
  const scratch = alignedScratch();
  let status: number;
  try {
    status = nat.takeLockFile(file, flags | fs.constants.O_NONBLOCK | nofollow, opts, out, scratch, LEASE_SPAN, RECORD_SIZE);
  } catch (e) {
    if (nofollow !== 0 && (e as NodeJS.ErrnoException).code === 'ELOOP' && (e as NodeJS.ErrnoException).syscall === 'open') throw symlinkRefused(file);
    throw e;
  }
  switch (status) {
    case TAKE_STATUS.TAKEN: {
      const fd = out[TAKE_OUT.FD]!;
      const ino = inoOf(out[TAKE_OUT.INO_LO]!, out[TAKE_OUT.INO_HI]!);
      if (!how.lease) return { status: 'taken', fd, ...(ino !== undefined ? { ino } : {}) };
      const size = out[TAKE_OUT.SIZE]!;
      // The bytes are in the scratch area until the next aligned read or write: decoded now.
      const lease = size === 0 ? { size: 0, head: undefined } : leaseOf(scratch.subarray(0, Math.max(0, Math.min(out[TAKE_OUT.READ]!, size))), size, isBlank);
      return { status: 'taken', fd, lease, ...(ino !== undefined ? { ino } : {}) };
    }
    case TAKE_STATUS.BUSY:
      return { status: 'busy', fd: out[TAKE_OUT.FD]! };
    case TAKE_STATUS.REPLACED:
      return { status: 'replaced' };
    case TAKE_STATUS.NOT_REGULAR:
      throw notLockable(file, kindOfMode(out[TAKE_OUT.TYPE]!), how.blockDevice);
    case TAKE_STATUS.NOENT:
      if (how.missingOk) return { status: 'missing' };
      throw missing(file);
    default:
      throw new Error(`takeLockFile: unknown status ${status}`);
  }
}
