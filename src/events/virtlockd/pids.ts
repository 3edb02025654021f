// Is a registered owner pid still the process it was? Probes only: nothing here sends a signal.
// (virtlockd SIGTERMs and SIGKILLs a closing owner; vmlockd never signals a VM, invariant 7.)
import * as fs from 'node:fs';

interface ProcStat {
  readonly state: string;
  /** Clock ticks after boot at which the process started (field 22 of /proc/<pid>/stat). */
  readonly start: string;
}

function procStat(pid: number): ProcStat | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) may hold spaces and parentheses: the fields after it start after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const start = rest[19];
  return state !== undefined && start !== undefined ? { state, start } : null;
}

/** The start time of a live process, to tell it from a later process that reuses its pid; null when gone. */
export function processStartTime(pid: number): string | null {
  return procStat(pid)?.start ?? null;
}

/**
 * True while `pid` names a running process (a zombie counts as gone: it has exited and only waits
 * to be reaped). With `start`, a process with another start time is a reused pid, so also gone.
 */
export function processAlive(pid: number, start?: string | null): boolean {
  // kill(0 or negative, 0) would probe a process group, not a process.
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procStat(pid);
  if (st === null) return true; // no /proc: the probe above is all we can know
  if (st.state === 'Z' || st.state === 'X') return false;
  return start === undefined || start === null || st.start === start;
}
