// How the journal reports a write it could not make (a full, read-only or failing disk): the
// failure records `health()` gives out, and the error a failed write throws, naming its errno.
import { JournalError } from './errors.js';

/** A write the journal could not make: since when, why, and the errno (ENOSPC, EROFS, EIO...). */
export interface WriteFailure {
  readonly since: string;
  readonly message: string;
  readonly errno: string | null;
  readonly attempts: number;
}

/** What `health()` reports: staging writes (acknowledgements) and moves into SQLite, each failing or not. */
export interface JournalHealth {
  /** Appends are refused: nothing new can be made durable. */
  readonly stage: WriteFailure | null;
  /** Staged facts cannot move into SQLite; they stay durable in the staging file meanwhile. */
  readonly sqlite: WriteFailure | null;
  /** Facts acknowledged (staged) but not yet in SQLite. */
  readonly pending: number;
}

/** The errno a failed write stands for: Node's code, or SQLite's translated (SQLITE_FULL is ENOSPC). */
export function errnoOf(cause: unknown): string | null {
  const code = (cause as { code?: unknown })?.code;
  if (typeof code !== 'string') return null;
  if (code.startsWith('SQLITE_FULL')) return 'ENOSPC';
  if (code.startsWith('SQLITE_READONLY')) return 'EROFS';
  if (code.startsWith('SQLITE_IOERR')) return 'EIO';
  return code;
}

export function writeError(what: string, cause: unknown): JournalError {
  const errno = errnoOf(cause);
  const why = cause instanceof Error ? cause.message : String(cause);
  const named = errno !== null && !why.includes(errno) ? `${errno}: ${why}` : why;
  const e = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', `${what}: ${named}`, { cause });
  (e as { errno?: string | null }).errno = errno;
  return e;
}

export function failure(prev: WriteFailure | null, e: JournalError): WriteFailure {
  const errno = (e as { errno?: string | null }).errno ?? null;
  return { since: prev?.since ?? new Date().toISOString(), message: e.message, errno, attempts: (prev?.attempts ?? 0) + 1 };
}
