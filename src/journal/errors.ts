// The journal's own errors. The journal room imports nothing from the project, so it cannot use
// the engine's error base; the codes follow the same VMLOCKD_ERR_* convention so callers match on
// `code`, never on message text.

export type JournalErrorCode =
  | 'VMLOCKD_ERR_BAD_INPUT'
  | 'VMLOCKD_ERR_JOURNAL_MISSING'
  | 'VMLOCKD_ERR_JOURNAL_TOO_NEW'
  | 'VMLOCKD_ERR_JOURNAL_TOO_OLD'
  | 'VMLOCKD_ERR_JOURNAL_NOT_OURS'
  | 'VMLOCKD_ERR_JOURNAL_READONLY'
  | 'VMLOCKD_ERR_JOURNAL_CLOSED'
  | 'VMLOCKD_ERR_JOURNAL_NETWORK_FS'
  | 'VMLOCKD_ERR_JOURNAL_NO_WAL'
  | 'VMLOCKD_ERR_JOURNAL_WRITE'
  | 'VMLOCKD_ERR_JOURNAL_BUSY'
  | 'VMLOCKD_ERR_JOURNAL_CORRUPT'
  | 'VMLOCKD_ERR_JOURNAL_FORKED';

export class JournalError extends Error {
  override readonly name = 'JournalError';
  constructor(
    readonly code: JournalErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
