// The N-API binding in native/ (built by `npm install` through node-gyp). See docs/decisions/0001-ofd-locks-native-binding.md.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export type LockType = 'read' | 'write';

export interface OfdConflict {
  readonly type: LockType;
  readonly start: number;
  readonly len: number;
  /** -1 for OFD locks; a pid (possibly another host's) for classic POSIX locks. */
  readonly pid: number;
}

export interface NativeBinding {
  /** Non-blocking F_OFD_SETLK: true when granted, false when another description holds a conflicting lock. */
  ofdSetLk(fd: number, type: LockType | 'unlock', start: number, len: number): boolean;
  /** F_OFD_GETLK: the first lock that would conflict with `type` on the range, or null. */
  ofdGetLk(fd: number, type: LockType, start: number, len: number): OfdConflict | null;
  /** getsockopt(SO_PEERCRED) of a connected AF_UNIX socket. */
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  /** Raise RLIMIT_NOFILE's soft limit to the hard limit (one descriptor per held lock). */
  raiseNoFile(): { soft: number; hard: number };
  /** A new AF_UNIX datagram socket (close-on-exec), for sd_notify. */
  dgramSocket(): number;
  /** A new blocking AF_UNIX stream socket connected to `path` ('@' = abstract name). */
  unixConnect(path: string): number;
  /**
   * sendmsg: `data` with `fds` as SCM_RIGHTS (at most 253), to `addr` (a path, '@' = abstract) or,
   * with addr null, on a connected socket. Returns the bytes sent. A full non-blocking socket is
   * waited for (up to 10 s), unless `dontWait`: then it throws EAGAIN at once (MSG_DONTWAIT).
   */
  sendFds(fd: number, addr: string | null, data: string | Buffer, fds: readonly number[], dontWait?: boolean): number;
  /** poll then recvmsg; received descriptors are close-on-exec. data is empty at end of stream. Throws ETIMEDOUT. */
  recvFds(fd: number, maxBytes: number, timeoutMs: number): { data: Buffer; fds: number[]; truncated: boolean };
  /** fcntl(F_GETFD) */
  getFd(fd: number): number;
  /** fcntl(F_SETFD) */
  setFd(fd: number, flags: number): void;
  /** fcntl(F_DUPFD_CLOEXEC) */
  dupFd(fd: number): number;
  /** A new memfd (close-on-exec) holding `data`, sealed against any change: journald's way for an entry too big for one datagram. */
  sealedMemfd(name: string, data: Buffer): number;
  /** fstat: the (dev, inode) that identify the file behind a descriptor (for a block device: its node's). */
  fstatId(fd: number): { dev: string; ino: string; type: 'file' | 'block' | 'socket' | 'dir' | 'other' };
  /**
   * A socket as its descriptor says (getsockname, SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN): in any network
   * namespace. path: a Unix socket's bound path ('@name' abstract, '' unbound), null for another family.
   */
  sockInfo(fd: number): { family: 'unix' | 'other'; type: 'stream' | 'dgram' | 'seqpacket' | 'other'; listening: boolean; path: string | null };
  /**
   * The locker's take in one call (decision 0019; only src/engine/locker*.ts calls it, invariant 4):
   * open(path, flags | O_CLOEXEC, 0600), fstat (a regular file, or a block device with
   * TAKE.BLOCKDEV), a non-blocking F_OFD_SETLK on byte 0 (TAKE.WRITE: write, else read); then with
   * TAKE.IDENTITY stat(path) against fstat(fd) (dev and ino), and with TAKE.LEASE, a lease-sized
   * file (non-empty, at most leaseSpan, whole records) read into `scratch` (page-aligned, for
   * O_DIRECT) with each block's blank check. Returns a TAKE_STATUS and fills `out` (TAKE_OUT).
   * BUSY leaves the descriptor open (out[FD]) for the caller to name the holder and close; every
   * other status but TAKEN has closed it. Other failures throw (descriptor closed) with `code`
   * (errno name), `errno` and `syscall` ('open', 'fstat', 'fcntl(F_OFD_SETLK)', 'read').
   */
  takeLockFile(path: string, flags: number, opts: number, out: Int32Array, scratch: Buffer, leaseSpan: number, recordSize: number): number;
  /** A holder record: pwrite through a page-aligned buffer, ftruncate(growTo) when growTo > 0, fdatasync when sync. Bytes written. */
  writeRecord(fd: number, data: Buffer, offset: number, growTo: number, sync: boolean): number;
  /**
   * The release in one call: the record (null: none) written at offset and synced when sync, the
   * whole file unlocked (F_UNLCK), and the descriptor closed when `close`. Never throws for the
   * descriptor's own failures; returns what failed (RELEASE_FAILED bits).
   */
  releaseLockFile(fd: number, data: Buffer | null, offset: number, sync: boolean, close: boolean): number;
  /**
   * The journal's staging-file check (src/journal/stage-replace.ts), fstat(fd) and stat(path) without
   * a JS object: fills `out` (STAGE_CHECK) with the fd's link count and size and whether `path` is the
   * same file (1), another (0) or missing (-1). Other failures throw as fs does. Absent from a build
   * before it (the check then goes through fs). The daemon hands it to the journal (StageOptions).
   */
  stageCheck?(fd: number, path: string, out: Float64Array): void;
  /**
   * LOOP_GET_STATUS64 of the block device at `path` (a loop device or a partition of one): the
   * major, minor and inode number (decimal string) of the file it reads; null when the node is no
   * loop device or is bound to no file. Opens the node read-only for the one ioctl (resolve.ts: a
   * loop device is the disk of its backing file). Absent from a build before it.
   */
  loopStatus?(path: string): { major: number; minor: number; ino: string } | null;
}


/** takeLockFile's opts. */
export const TAKE = { WRITE: 1, BLOCKDEV: 2, IDENTITY: 4, LEASE: 8 } as const;
/** takeLockFile's result. */
export const TAKE_STATUS = { TAKEN: 0, BUSY: 1, REPLACED: 2, NOT_REGULAR: 3, NOENT: 4 } as const;
/** takeLockFile's `out`: the descriptor, the size after the lock, the bytes read, st_mode & S_IFMT, whether the lease was looked at, the file's st_ino (low, high 32 bits; with IDENTITY or LEASE; 0 from a build before), then from BLOCKS one entry per record block: 1 when not blank. */
export const TAKE_OUT = { FD: 0, SIZE: 1, READ: 2, TYPE: 3, LEASE: 4, INO_LO: 5, INO_HI: 6, BLOCKS: 8 } as const;
/** releaseLockFile's result bits. */
export const RELEASE_FAILED = { WRITE: 1, SYNC: 2, UNLOCK: 4, CLOSE: 8 } as const;

export const FD_CLOEXEC = 1;

const here = path.dirname(fileURLToPath(import.meta.url));
// src/engine or dist/engine: the binding sits two levels up in native/build.
export const native: NativeBinding = createRequire(import.meta.url)(path.join(here, '..', '..', 'native', 'build', 'Release', 'vmlockd_native.node'));
