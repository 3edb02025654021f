// What the kernel holds for a process: the files behind its descriptors that carry a lock
// (/proc/PID/fdinfo/N has a `lock:` line per OFD or POSIX lock on that open file description).
// The chaos and fuzz suites compare this with what the daemon lists: a listed lock the kernel does not
// hold protects nothing, a held lock the daemon does not list can never be released.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../../src/engine/native.js';
import { sha256Hex } from '../../src/engine/resolve.js';

/** Paths (as /proc/PID/fd resolves them) of every locked file in `dirs` (all files when omitted). */
export function kernelLockedFiles(pid: number, dirs?: readonly string[]): Set<string> {
  const held = new Set<string>();
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return held;
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (dirs !== undefined && !dirs.includes(path.dirname(target))) continue;
    let info = '';
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    if (/^lock:/m.test(info)) held.add(target);
  }
  return held;
}

/**
 * Differences between the daemon's list (`resource` of GET /v1/locks: the lock file) and the kernel:
 * listed but not held, and held (in `dirs`) but not listed. Empty arrays when they agree.
 */
export function listedVsKernel(pid: number, listed: ReadonlyArray<{ resource: string }>, dirs: readonly string[]): { notHeld: string[]; notListed: string[] } {
  const kernel = kernelLockedFiles(pid, dirs);
  const names = new Set(listed.map((l) => l.resource));
  return { notHeld: [...names].filter((r) => !kernel.has(r)), notListed: [...kernel].filter((k) => !names.has(k)) };
}

/**
 * Whether anyone holds a lock on byte 0 of `file`, asked from a fresh open file description (an OFD
 * F_GETLK: it takes nothing and disturbs nothing). On FUSE (GlusterFS) locks live in the filesystem,
 * not in the kernel's lock lists, so /proc/PID/fdinfo shows none: this asks the filesystem itself.
 */
export function lockedByAnyone(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    return native.ofdGetLk(fd, 'write', 0, 1) !== null;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Whether anyone holds byte 0 of `disk`'s lock file in `lockspace` (file lockspace naming), from a
 * fresh description (an OFD F_GETLK: it disturbs nothing). False when there is no lock file.
 */
export function kernelHeld(lockspace: string, disk: string): boolean {
  const file = path.join(lockspace, sha256Hex(disk));
  if (!fs.existsSync(file)) return false;
  const fd = fs.openSync(file, 'r');
  try {
    return native.ofdGetLk(fd, 'write', 0, 1) !== null;
  } finally {
    fs.closeSync(fd);
  }
}
