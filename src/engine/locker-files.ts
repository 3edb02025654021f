// Part of the locker (invariant 4: only src/engine/locker*.ts opens lock files): opening a lock file
// without ever blocking the event loop, deciding whether a file may carry holder records, and the
// lease-file operations of the virtlockd protocol (CREATE_RESOURCE, DELETE_RESOURCE).
import * as fs from 'node:fs';
import { readAlignedView } from './aligned-io.js';
import { BadInputError, fileKind } from './errors.js';
import { HANDOVER_OFFSET, LEASE_SPAN, RECORD_SIZE, decodeExclusive, decodeRequest, decodeShared, type ExclusiveRecord } from './holder-record.js';
import { native as defaultNative, type NativeBinding } from './native.js';

const LOCK_START = 0;
const LOCK_LEN = 1;

/** fileKind from st_mode's file type bits (the native take's answer). */
export function kindOfMode(type: number): string {
  const { S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, S_IFDIR } = fs.constants;
  if (type === S_IFIFO) return 'a FIFO';
  if (type === S_IFSOCK) return 'a socket';
  if (type === S_IFCHR) return 'a character device';
  if (type === S_IFBLK) return 'a block device';
  if (type === S_IFDIR) return 'a directory';
  return 'not a regular file';
}

/** The refusal of a file that may not be locked (openLockFile's and the native take's). */
export function notLockable(file: string, kind: string, blockDevice: boolean): BadInputError {
  return new BadInputError(`${file} is ${kind}: only a regular file${blockDevice ? ' or a block device' : ''} can be locked`);
}

/** The refusal of a lock file name that is a symbolic link (openLockFile's and the native take's). */
export function symlinkRefused(file: string): BadInputError {
  return new BadInputError(`${file} is a symbolic link: a lock file in a lockspace is never followed through one (remove it)`);
}

/**
 * open(2) with O_NONBLOCK, then refuse anything but a regular file (and a block device when
 * `blockDevice`, for a disk locked in place). Without O_NONBLOCK a read-only open of a FIFO waits
 * for a writer, on the event loop, and every connection of the daemon waits with it. O_NONBLOCK
 * changes nothing for a regular file or a block device.
 */
export function openLockFile(file: string, flags: number, opts: { mode?: number; blockDevice?: boolean } = {}): number {
  // A lock file in a lockspace is never reached through a symlink: the daemon runs as root, and
  // one planted under a lock file's name would make it create or lock and write a file elsewhere.
  // A disk locked in place (blockDevice) keeps its own name, which may be a symlink (/dev/vg/lv).
  const nofollow = opts.blockDevice === true ? 0 : fs.constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = fs.openSync(file, flags | fs.constants.O_NONBLOCK | nofollow, opts.mode ?? 0o600);
  } catch (e) {
    if (nofollow !== 0 && (e as NodeJS.ErrnoException).code === 'ELOOP') {
      throw symlinkRefused(file);
    }
    throw e;
  }
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  if (st.isFile() || (opts.blockDevice === true && st.isBlockDevice())) return fd;
  fs.closeSync(fd);
  throw notLockable(file, fileKind(st), opts.blockDevice === true);
}

const ZEROS = Buffer.alloc(RECORD_SIZE);

/**
 * Nothing but NULs, spaces and newlines. An all-zero block (every unused slot of a lease file) is
 * one memcmp; the byte loop (an indexed loop: a for-of over a Buffer costs ~20 ns a byte, and a
 * lease file has 32 such blocks, read at every take) only runs for the rest.
 */
function blank(block: Buffer): boolean {
  if (block.length === RECORD_SIZE && block.equals(ZEROS)) return true;
  for (let i = 0; i < block.length; i++) {
    const b = block[i]!;
    if (b !== 0 && b !== 0x20 && b !== 0x0a) return false;
  }
  return true;
}

/**
 * May holder records be written into this lock file? Only into one that is empty or holds nothing
 * but vmlockd's own records (a lease vmlockd or virtlockd created): never into a disk image or any
 * other file a lockspace name happens to point to (a qcow2 in a directory lockspace). Every lease
 * vmlockd writes is at most LEASE_SPAN bytes, in RECORD_SIZE blocks (the last one a migration
 * destination's hand-over request).
 */
export function mayWriteRecords(fd: number): boolean {
  return readLease(fd) !== null;
}

/** What readLease found in a lease: its size and its head block's holder record, if any. */
export interface Lease {
  readonly size: number;
  readonly head: ExclusiveRecord | undefined;
}

/**
 * The lease as read for mayWriteRecords' check (size 0 for an empty file), or null when the file is
 * not one vmlockd may write records into. The taker takes the head's holder record from here instead
 * of reading the file again. The bytes are looked at in the scratch area, never copied, and the head
 * is decoded once (the check needs it decoded anyway).
 */
export function readLease(fd: number): Lease | null {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return { size: 0, head: undefined };
  if (size > LEASE_SPAN || size % RECORD_SIZE !== 0) return null;
  // Through the page-aligned buffer: a lock file on a cluster filesystem is open O_DIRECT.
  const all = readAlignedView(fd, size, 0);
  return leaseOf(all, size, (i) => blank(all.subarray(i * RECORD_SIZE, (i + 1) * RECORD_SIZE)));
}

/**
 * The lease check on bytes already read (`all`, `size` the file's size after the lock): null when the
 * file is not one vmlockd may write records into. `isBlank(i)` says whether block i is blank: the
 * byte loop here (readLease), or the native take's answer for each block (native/ofd.c, the same rule).
 */
export function leaseOf(all: Buffer, size: number, isBlank: (block: number) => boolean): Lease | null {
  if (size === 0) return { size: 0, head: undefined };
  if (size > LEASE_SPAN || size % RECORD_SIZE !== 0) return null;
  if (all.length !== size) return null;
  let head: ExclusiveRecord | undefined;
  for (let off = 0; off < size; off += RECORD_SIZE) {
    if (isBlank(off / RECORD_SIZE)) continue;
    const block = all.subarray(off, off + RECORD_SIZE);
    if (off === 0) {
      head = decodeExclusive(block);
      if (head === undefined) return null;
      continue;
    }
    const ours = off === HANDOVER_OFFSET ? decodeRequest(block) !== undefined : decodeShared(block) !== undefined;
    if (!ours) return null;
  }
  return { size, head };
}

/** CREATE_RESOURCE: make sure the lease file exists (another description: every OFD lock on it stays). */
export function createLeaseFile(file: string): void {
  fs.closeSync(openLockFile(file, fs.constants.O_RDWR | fs.constants.O_CREAT));
}

export type DeleteResult =
  | { readonly status: 'deleted' }
  | { readonly status: 'missing' }
  | { readonly status: 'locked'; readonly by: string };

/**
 * DELETE_RESOURCE: unlink a lease file that no one holds. The file is locked (exclusive, on its
 * own description) before the unlink and unlocked after it, so no other host or process can take
 * the lock between the check and the unlink; one that opened the old inode meanwhile finds it
 * unlinked when it re-checks the path after locking (the locker's inode check), as virtlockd does.
 */
export function deleteLeaseFile(file: string, nat: NativeBinding = defaultNative): DeleteResult {
  let fd: number;
  try {
    fd = openLockFile(file, fs.constants.O_RDWR);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    throw e;
  }
  try {
    if (!nat.ofdSetLk(fd, 'write', LOCK_START, LOCK_LEN)) {
      const c = nat.ofdGetLk(fd, 'write', LOCK_START, LOCK_LEN);
      return { status: 'locked', by: c ? `${c.type === 'write' ? 'exclusive' : 'shared'}${c.pid > 0 ? `, pid ${c.pid}` : ''}` : 'briefly' };
    }
    let same = false;
    try {
      same = fs.fstatSync(fd).ino === fs.statSync(file).ino;
    } catch {
      return { status: 'missing' };
    }
    // Replaced after our open: the new file is someone else's; leave it.
    if (!same) return { status: 'locked', by: 'a new file created at the same path meanwhile' };
    fs.unlinkSync(file);
    return { status: 'deleted' };
  } finally {
    fs.closeSync(fd);
  }
}
