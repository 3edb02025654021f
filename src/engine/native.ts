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
}

const here = path.dirname(fileURLToPath(import.meta.url));
// src/engine or dist/engine: the binding sits two levels up in native/build.
export const native: NativeBinding = createRequire(import.meta.url)(path.join(here, '..', '..', 'native', 'build', 'Release', 'vmlockd_native.node'));
