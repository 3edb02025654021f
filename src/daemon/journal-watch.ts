// The daemon's view of its journal's health: a full or read-only state directory must never take the
// daemon down (invariant 10). Commands whose facts cannot be made durable are refused by the engine;
// this module keeps the log readable (one line when writes start failing, a reminder a minute, one
// line when they succeed again), turns a failed background write into a log line instead of a
// crash, and says what is wrong in `status` and the metrics.
import type { Fact, NewFact } from '../engine/facts.js';
import type { JournalHealth } from '../journal/journal.js';

/** A reminder that writes still fail, at most this often. */
const REMIND_MS = 60_000;

type Level = 'info' | 'warning' | 'error';

export class JournalWatch {
  private readonly lastLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: (level: Level, msg: string) => void,
    private readonly health: () => JournalHealth | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /** Log `msg` under `key` at most once a minute; counts what it held back. */
  limited(key: string, level: Level, msg: string): void {
    const t = this.now();
    const last = this.lastLogged.get(key);
    if (last !== undefined && t - last.at < REMIND_MS) {
      last.suppressed++;
      return;
    }
    const more = last !== undefined && last.suppressed > 0 ? ` (${last.suppressed} more like it in the last ${Math.round((t - last.at) / 1000)} s)` : '';
    this.lastLogged.set(key, { at: t, suppressed: 0 });
    this.log(level, msg + more);
  }

  /** The staging file's facts could not move into SQLite (retried every half second). */
  sqliteFailed(e: Error): void {
    this.limited('sqlite', 'error', `journal: staged facts could not be moved into SQLite (they stay durable in the staging file; retrying): ${e.message}${busyHint(e)}`);
  }

  /** A write works again: say so once, and forget the reminders. */
  recovered(what: 'stage' | 'sqlite'): void {
    const key = what === 'stage' ? 'refused' : 'sqlite';
    if (!this.lastLogged.delete(key)) return;
    this.log('warning', what === 'stage' ? 'journal: facts can be written again; commands are accepted' : 'journal: staged facts move into SQLite again');
  }

  /** The engine's log: a refused command on a failing journal is logged like the rest, at most once a minute. */
  engineLog(level: Level, msg: string): void {
    if (msg.startsWith('the journal could not record')) this.limited('refused', level, msg + hint(msg));
    else this.log(level, msg);
  }

  /** Journal facts outside a command from a timer or a socket handler: a failure is logged, never thrown. */
  record(record: (facts: readonly NewFact[]) => Fact[], facts: readonly NewFact[]): Fact[] {
    try {
      return record(facts);
    } catch (e) {
      const kinds = [...new Set(facts.map((f) => f.kind))].join(', ');
      this.limited('refused', 'error', `journal: could not record ${kinds}: ${(e as Error).message}`);
      return [];
    }
  }

  /** For `status`: null while every write succeeds. */
  status(): Record<string, unknown> | null {
    const h = this.health();
    if (h === undefined || (h.stage === null && h.sqlite === null)) return null;
    return {
      // Appends refused: commands that would change a lock are refused; held locks stay held.
      refusing: h.stage !== null,
      stage: h.stage,
      sqlite: h.sqlite,
      pending: h.pending,
    };
  }

  gauges(): Record<string, { help: string; value: number }> {
    const h = this.health();
    return {
      journal_write_failing: { help: '1 while the journal cannot make facts durable (commands are refused), else 0.', value: h?.stage ? 1 : 0 },
      journal_sqlite_failing: { help: '1 while staged facts cannot move into SQLite (a full or read-only state directory), else 0.', value: h?.sqlite ? 1 : 0 },
      journal_pending_facts: { help: 'Facts acknowledged in the staging file but not yet in SQLite.', value: h?.pending ?? 0 },
    };
  }
}

/** SQLITE_BUSY: who to look for. Held locks stay held and requests are answered meanwhile. */
function busyHint(e: Error): string {
  const errno = (e as { errno?: unknown }).errno ?? (e as { code?: unknown }).code;
  if (typeof errno !== 'string' || !errno.startsWith('SQLITE_BUSY')) return '';
  return ' (another process holds the journal\'s write lock: a sqlite3 shell left in a transaction, a backup tool, `vmlockd journal compact`; `fuser -v` on the journal file names it. Every held lock stays held and requests are answered meanwhile; GET /v1/audit answers VMLOCKD_ERR_JOURNAL_BUSY while facts wait)';
}

/** What an operator does about it, for the errnos that need one. */
function hint(msg: string): string {
  if (/\bEROFS\b/.test(msg)) {
    return " (the state directory's filesystem is read-only, e.g. ext4 after an error: every held lock stays held and every command that changes one is refused; an errored ext4 needs the daemon stopped, umount, e2fsck and mount: docs/operations.md, \"A failing state directory\")";
  }
  return '';
}
