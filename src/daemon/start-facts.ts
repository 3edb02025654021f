// A start's own facts (DaemonStarted, the after_reboot releases, one Reacquired or LeaseLost per lock)
// that the journal cannot take (a full state directory: the staging file cannot grow past its
// preallocated room) must never make the start exit: the locks are re-taken already, and they are what
// protects the running VMs (decision 0023). The facts are folded into the state and wait here, in
// memory; the journal already records every one of these disks as held (their earlier LockAcquired),
// so a daemon killed meanwhile loses nothing: the next start re-takes the same locks.
//
// Order is kept: while facts wait, every append (a command's, the verifier's, a stop's) carries them
// first, in the same write, so nothing is journaled ahead of them; an append that cannot take them
// fails and its command is refused with the journal's error, as on any full disk. A timer retries
// them alone with backoff until the disk has room.
import type { Fact, NewFact } from '../engine/facts.js';
import { fromRow, toRow, type FactRowLike, type JournalPort, type StoredRowLike } from '../engine/journal-port.js';
import { JournalError } from '../journal/errors.js';

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;

type Level = 'info' | 'warning' | 'error';

export interface StartFactsOptions {
  /** The journal file's staging file, for the log lines. */
  stageFile: string;
  log: (level: Level, msg: string) => void;
  /** Rate-limited error line for the retries (journalWatch.limited). */
  remind: (msg: string) => void;
  /** The waiting facts are journaled at last (by a retry or ahead of another append): seq, logs, metrics. */
  stored: (facts: readonly Fact[]) => void;
}

/** Whether `e` is the journal refusing a write (a full or failing state directory), not a bug or a fork. */
export function isWriteRefusal(e: unknown): e is JournalError {
  return e instanceof JournalError && e.code === 'VMLOCKD_ERR_JOURNAL_WRITE';
}

/** The engine's journal port: appends carry the start's waiting facts first. */
export class StartFacts implements JournalPort {
  private waiting: FactRowLike[] = [];
  private since: string | null = null;
  private lastError: string | null = null;
  private retryMs = FIRST_RETRY_MS;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly journal: JournalPort,
    private readonly o: StartFactsOptions,
  ) {}

  get pending(): number {
    return this.waiting.length;
  }

  append(rows: readonly FactRowLike[]): StoredRowLike[] {
    if (this.waiting.length === 0) return this.journal.append(rows);
    const stored = this.journal.append([...this.waiting, ...rows]);
    const mine = stored.slice(0, this.waiting.length);
    this.done(mine);
    return stored.slice(mine.length);
  }

  /**
   * Journals the start's facts through `record` (the engine's); if the journal refuses the write, folds
   * them into the state with `fold` and keeps them waiting instead of failing the start. A LeaseLost
   * among them is logged at once by the caller's `lost` (it must not wait for the disk).
   */
  record(facts: readonly NewFact[], record: (f: readonly NewFact[]) => unknown, fold: (f: NewFact) => void, lost: (f: NewFact) => void): void {
    try {
      record(facts);
      return;
    } catch (e) {
      if (!isWriteRefusal(e)) throw e;
      for (const f of facts) fold(f);
      for (const f of facts) if (f.kind === 'LeaseLost') lost(f);
      this.waiting = facts.map((f) => toRow(f));
      this.since = new Date().toISOString();
      this.lastError = e.message;
      const count = (k: string) => facts.filter((f) => f.kind === k).length;
      this.o.log(
        'error',
        `JOURNAL FULL AT START: the start's ${facts.length} fact(s) (DaemonStarted, ${count('Reacquired')} Reacquired, ${count('LeaseLost')} LeaseLost) cannot be written to the staging file ${this.o.stageFile}: ${e.message}. ` +
          `The state directory's filesystem has no free space: free some there. Every lock is held and the daemon serves; the facts wait in memory and are journaled as soon as there is room (retrying); commands that change a lock are refused until then. If the daemon dies meanwhile nothing is lost: the next start re-takes the same locks.`,
      );
      this.schedule();
    }
  }

  /** For `status`: null unless start facts wait for the journal. */
  status(): { facts: number; since: string; stageFile: string; error: string | null } | null {
    if (this.waiting.length === 0 || this.since === null) return null;
    return { facts: this.waiting.length, since: this.since, stageFile: this.o.stageFile, error: this.lastError };
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.waiting.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retry();
    }, this.retryMs);
    this.timer.unref();
  }

  private retry(): void {
    if (this.waiting.length === 0) return;
    try {
      this.done(this.journal.append(this.waiting));
    } catch (e) {
      this.lastError = (e as Error).message;
      this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      this.o.remind(`JOURNAL FULL: the start's ${this.waiting.length} fact(s) still cannot be written to the staging file ${this.o.stageFile} (no free space in the state directory; every lock stays held; retrying in ${this.retryMs / 1000} s): ${(e as Error).message}`);
      this.schedule();
    }
  }

  private done(stored: readonly StoredRowLike[]): void {
    const n = this.waiting.length;
    this.waiting = [];
    this.since = null;
    this.lastError = null;
    this.stop();
    this.o.log('warning', `journal: the start's ${n} waiting fact(s) are journaled now (seq ${stored[0]?.seq}-${stored[stored.length - 1]?.seq})`);
    this.o.stored(stored.map(fromRow));
  }
}
