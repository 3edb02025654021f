// What the kernel holds for a process: the files behind its descriptors that carry a lock
// (/proc/PID/fdinfo/N has a `lock:` line per OFD or POSIX lock on that open file description).
// The chaos and fuzz suites compare this with what the daemon lists: a listed lock the kernel does not
// hold protects nothing, a held lock the daemon does not list can never be released.
import * as fs from 'node:fs';
import * as path from 'node:path';

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
