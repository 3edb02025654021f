// One clear line for a start that failed, whatever failed: the daemon's own errors keep their code;
// a system or SQLite error is named by what it was doing and its errno (a full disk says ENOSPC).
import { VmlockdError } from '../engine/errors.js';
import { JournalError, errnoOf } from '../journal/journal.js';
import type { Config } from '../watchers/config.js';

export function startFailure(e: unknown, c: Config): Error {
  if (e instanceof JournalError && e.code === 'VMLOCKD_ERR_JOURNAL_WRITE') return new JournalError(e.code, `cannot start: ${e.message}`, { cause: e.cause });
  if (e instanceof VmlockdError || e instanceof JournalError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('SQLITE_')) {
    const errno = errnoOf(err);
    const what = errno === 'ENOSPC' ? 'ENOSPC: no space left on the state directory' : errno ?? code;
    return new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', `cannot start: the journal ${c.journal} cannot be written (${what}; SQLite said: ${err.message})`, { cause: err });
  }
  if ((code === 'EEXIST' || code === 'ENOTDIR') && (err as { syscall?: string }).syscall === 'mkdir') {
    return new VmlockdError('VMLOCKD_ERR_CONFIG', `cannot start: ${(err as { path?: string }).path ?? 'a configured directory'} (or a parent of it) exists and is not a directory`, { cause: err });
  }
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    // Node's message already names the call and the path ("ENOTDIR: not a directory, mkdir '/etc/passwd'").
    return new VmlockdError('VMLOCKD_ERR_IO', `cannot start: ${err.message}`, { cause: err });
  }
  return err;
}

/**
 * A start that fails while systemd handed it stored lock descriptors (LISTEN_FDNAMES, read before
 * they are taken): those locks stay held in systemd's store while the unit restarts (the shipped unit
 * never gives up: StartLimitIntervalSec=0), and go the moment the unit is stopped. Say so, loudly,
 * with each failed start; '' when no lock was passed. (docs/operations.md, "A config the daemon rejects")
 */
export function storedLocksNote(env: NodeJS.ProcessEnv = process.env, pid = process.pid): string {
  if (env.LISTEN_PID === undefined || Number(env.LISTEN_PID) !== pid || !env.LISTEN_FDNAMES) return '';
  const n = env.LISTEN_FDNAMES.split(':').filter((name) => name.startsWith('lock-')).length;
  if (n === 0) return '';
  return `\nvmlockd: ${n} held disk lock(s) wait in systemd's file descriptor store: they stay held while systemd restarts this unit, and are FREED by \`systemctl stop vmlockd\`. Fix the cause (\`vmlockd config check /etc/vmlockd/vmlockd.conf\`); the next restart adopts them.`;
}

/** sun_path holds 108 bytes with its NUL: a longer path would be cut short silently by the kernel call. */
const MAX_SOCKET_PATH = 107;

/** A socket path the kernel cannot bind as given is bad input, named before anything is started. */
export function checkSocketPaths(c: Config): void {
  const sockets: Array<[string, string | null | undefined]> = [
    ['socket (--socket)', c.socket],
    ['virtlockd_socket (--virtlockd-socket)', c.virtlockdSocket],
  ];
  for (const [what, p] of sockets) {
    if (!p) continue;
    const n = Buffer.byteLength(p);
    if (n > MAX_SOCKET_PATH) {
      throw new VmlockdError('VMLOCKD_ERR_CONFIG', `${what} ${p} is ${n} bytes long; a Unix socket path holds at most ${MAX_SOCKET_PATH} bytes: choose a shorter one`);
    }
  }
}
