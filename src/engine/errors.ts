// Errors with stable codes. Callers branch on `code` (or the class), never on message text.
// The table in docs/errors.md lists every code; test/engine/errors.unit.ts walks ERROR_CODES.

export const ERROR_CODES = {
  VMLOCKD_ERR_LOCK_HELD: { exit: 3, message: 'the lock is held by another owner' },
  VMLOCKD_ERR_BAD_INPUT: { exit: 2, message: 'bad input' },
  VMLOCKD_ERR_USAGE: { exit: 2, message: 'bad command line' },
  VMLOCKD_ERR_CONFIG: { exit: 2, message: 'bad configuration' },
  VMLOCKD_ERR_UNREACHABLE: { exit: 1, message: 'the vmlockd daemon is unreachable' },
  VMLOCKD_ERR_ALREADY_RUNNING: { exit: 1, message: 'another vmlockd runs on this state directory' },
  VMLOCKD_ERR_IO: { exit: 1, message: 'an I/O operation failed' },
  VMLOCKD_ERR_JOURNAL: { exit: 1, message: 'the journal could not record the fact' },
  VMLOCKD_ERR_DENIED: { exit: 1, message: 'the caller may not use the control API' },
  VMLOCKD_ERR_NAMING_CHANGED: { exit: 1, message: 'the journal holds locks named under other naming rules than this start' },
  VMLOCKD_ERR_LOCKSPACE: { exit: 1, message: 'the lockspace is not the one this host knew (its filesystem is not mounted?)' },
  VMLOCKD_ERR_INTERNAL: { exit: 1, message: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** What a file that is not a regular file is, for the error that refuses it (a config file, a lock file). */
export function fileKind(st: { isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isDirectory(): boolean }): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isDirectory()) return 'a directory';
  return 'not a regular file';
}

export class VmlockdError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code].message, options);
    this.name = 'VmlockdError';
    this.code = code;
  }
  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }
}

/** Bad input from any source: names the field and what was received. Changes no lock. */
export class BadInputError extends VmlockdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('VMLOCKD_ERR_BAD_INPUT', message, options);
    this.name = 'BadInputError';
  }
}

/** A lock is held elsewhere; `message` names the disk and, when known, the holder. */
export class LockHeldError extends VmlockdError {
  constructor(message: string, readonly details: Record<string, unknown> = {}) {
    super('VMLOCKD_ERR_LOCK_HELD', message);
    this.name = 'LockHeldError';
  }
}

export function exitCodeOf(code: string | undefined): number {
  if (code !== undefined && code in ERROR_CODES) return ERROR_CODES[code as ErrorCode].exit;
  return 1;
}

export function isErrnoError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string';
}
