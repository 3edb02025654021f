// Facts the journal refused (a full state directory: the staging file cannot grow past its
// preallocated room) that no client can be answered "refused" for. Two kinds:
//
// - A start's own facts (DaemonStarted, the after_reboot releases, one Reacquired or LeaseLost per
//   lock) must never make the start exit: the locks are re-taken already, and they are what protects
//   the running VMs (decision 0023). The journal already records every one of these disks as held
//   (their earlier LockAcquired), so a daemon killed meanwhile loses nothing: the next start re-takes
//   the same locks.
// - The running daemon's facts that answer no client (decision 0026): the verifier's rounds
//   (LeaseLost, Reacquired), a config reload's ConfigChanged / ConfigRejected, a source's OwnerGone
//   and ConflictAction, the stop's DaemonStopped. What they record has happened already (a lock was
//   lost, a config is in force); dropping them made the audit false (a LeaseLost never journaled).
//
// Both are folded into the state and wait here, in memory, in order. While facts wait, every append
// (a command's, the verifier's, a stop's) carries them first, in the same write, so nothing is
// journaled ahead of them; an append that cannot take them fails and its command is refused with the
// journal's error, as on any full disk. A timer retries them alone with backoff until the disk has
// room. A running daemon's facts wait up to `max` (10,000 by default, a few MiB); past it the facts
// that arrive are folded in but not kept, counted per kind, and a FactsDropped fact journaled right
// after the kept ones says so (what waits is always a prefix of what happened, so nothing journaled
// depends on a fact that was dropped before it).
import { fact, type Fact, type NewFact } from '../engine/facts.js';
import { fromRow, toRow, type FactRowLike, type JournalPort, type StoredRowLike } from '../engine/journal-port.js';
import { JournalError } from '../journal/errors.js';

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;
/** A running daemon's facts that may wait in memory for room (each a few hundred bytes). */
export const WAITING_FACTS_MAX = 10_000;

type Level = 'info' | 'warning' | 'error';

export interface WaitingFactsOptions {
  /** The journal file's staging file, for the log lines. */
  stageFile: string;
  log: (level: Level, msg: string) => void;
  /** Rate-limited error line for the retries (journalWatch.limited). */
  remind: (msg: string) => void;
  /** The waiting facts are journaled at last (by a retry or ahead of another append): seq, logs, metrics. */
  stored: (facts: readonly Fact[]) => void;
  /** A LeaseLost that starts waiting: logged at once (it must not wait for the disk). */
  lost: (f: NewFact) => void;
  /** Most running-daemon facts kept waiting (WAITING_FACTS_MAX). */
  max?: number;
}

/** Whether `e` is the journal refusing a write (a full or failing state directory), not a bug or a fork. */
export function isWriteRefusal(e: unknown): e is JournalError {
  return e instanceof JournalError && e.code === 'VMLOCKD_ERR_JOURNAL_WRITE';
}

interface Dropped {
  count: number;
  kinds: Record<string, number>;
  from: string;
  to: string;
}

/** The engine's journal port: appends carry the waiting facts first. */
export class WaitingFacts implements JournalPort {
  private waiting: NewFact[] = [];
  /** How many of `waiting` are the start's own (never dropped, never counted against `max`). */
  private startCount = 0;
  private dropped: Dropped | null = null;
  private since: string | null = null;
  private lastError: string | null = null;
  private retryMs = FIRST_RETRY_MS;
  private timer: NodeJS.Timeout | undefined;
  private readonly max: number;
  /** Facts folded in but never journaled (past `max`) since start: the metric. */
  droppedTotal = 0;

  constructor(
    private readonly journal: JournalPort,
    private readonly o: WaitingFactsOptions,
  ) {
    this.max = o.max ?? WAITING_FACTS_MAX;
  }

  get pending(): number {
    return this.waiting.length;
  }

  append(rows: readonly FactRowLike[]): StoredRowLike[] {
    const carried = this.carried();
    if (carried.length === 0) return this.journal.append(rows);
    const stored = this.journal.append([...carried, ...rows]);
    this.done(stored.slice(0, carried.length));
    return stored.slice(carried.length);
  }

  /**
   * Journals the start's facts through `record` (the engine's); if the journal refuses the write, folds
   * them into the state with `fold` and keeps them waiting instead of failing the start.
   */
  record(facts: readonly NewFact[], record: (f: readonly NewFact[]) => unknown, fold: (f: NewFact) => void): void {
    try {
      record(facts);
      return;
    } catch (e) {
      if (!isWriteRefusal(e)) throw e;
      for (const f of facts) fold(f);
      for (const f of facts) if (f.kind === 'LeaseLost') this.o.lost(f);
      // Nothing waits before the start's facts: they are the first of this process.
      this.waiting = [...facts, ...this.waiting];
      this.startCount = facts.length;
      this.since ??= new Date().toISOString();
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

  /**
   * A running daemon's facts that answer no client (already given their time by the engine) were
   * refused by the journal with `e`: if it is a refused write, they wait (or, past `max`, are counted
   * as dropped) and the caller folds them into the state; true then. Any other error: false (the
   * caller throws it on, as before).
   */
  later(facts: readonly NewFact[], e: unknown): boolean {
    if (!isWriteRefusal(e)) return false;
    if (facts.length === 0) return true;
    for (const f of facts) if (f.kind === 'LeaseLost') this.o.lost(f);
    const kinds = [...new Set(facts.map((f) => f.kind))].join(', ');
    const fresh = this.waiting.length === 0 && this.dropped === null;
    this.lastError = e.message;
    if (this.dropped !== null || this.waiting.length - this.startCount + facts.length > this.max) {
      // Keep what waits a prefix of what happened: once one is dropped, so is everything after it
      // until the waiting facts are journaled.
      const d = (this.dropped ??= { count: 0, kinds: {}, from: facts[0]!.at, to: facts[0]!.at });
      for (const f of facts) d.kinds[f.kind] = (d.kinds[f.kind] ?? 0) + 1;
      d.count += facts.length;
      d.to = facts[facts.length - 1]!.at;
      this.droppedTotal += facts.length;
      this.o.remind(
        `FACTS DROPPED: ${d.count} fact(s) so far (now ${kinds}) cannot be written to the staging file ${this.o.stageFile} and ${this.waiting.length} wait in memory already (at most ${this.max}): ` +
          `they are in force in the running daemon but will not be in the journal; a FactsDropped fact will say so once there is room. Free space in the state directory: ${e.message}`,
      );
    } else {
      this.waiting.push(...facts);
      this.o.log(
        fresh ? 'error' : 'warning',
        `JOURNAL FULL: ${facts.length} fact(s) (${kinds}) cannot be written to the staging file ${this.o.stageFile}: ${e.message}. ` +
          `They are in force and wait in memory (${this.waiting.length} now, at most ${this.max}), journaled first as soon as there is room (retrying); commands that change a lock are refused until then. Free space in the state directory.`,
      );
    }
    if (fresh) {
      this.since = new Date().toISOString();
      this.retryMs = FIRST_RETRY_MS;
    }
    this.schedule();
    return true;
  }

  /** Folds the waiting facts into `fold` (a state rebuilt from the journal after a failed group commit). */
  foldInto(fold: (f: NewFact) => void): void {
    for (const f of this.waiting) fold(f);
  }

  /** For `status`: null unless facts wait for the journal (or some were dropped). */
  status(): { facts: number; start: number; kinds: Record<string, number>; since: string; stageFile: string; error: string | null; max: number; dropped: Dropped | null } | null {
    if ((this.waiting.length === 0 && this.dropped === null) || this.since === null) return null;
    const kinds: Record<string, number> = {};
    for (const f of this.waiting) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
    return { facts: this.waiting.length, start: this.startCount, kinds, since: this.since, stageFile: this.o.stageFile, error: this.lastError, max: this.max, dropped: this.dropped === null ? null : { ...this.dropped, kinds: { ...this.dropped.kinds } } };
  }

  /** The start's part of `status()` (status `startFactsWaiting`, decision 0023). */
  startStatus(): { facts: number; since: string; stageFile: string; error: string | null } | null {
    if (this.startCount === 0 || this.since === null) return null;
    return { facts: this.startCount, since: this.since, stageFile: this.o.stageFile, error: this.lastError };
  }

  gauges(): Record<string, { help: string; value: number }> {
    return {
      journal_facts_waiting: { help: 'Facts no client waits for (a start\'s, the verifier\'s, a reload\'s) that the journal refused and that wait in memory, journaled first once it has room.', value: this.waiting.length },
      journal_facts_dropped_total: { help: 'Facts refused by the journal past what may wait in memory since start: in force, not journaled (a FactsDropped fact counts them).', value: this.droppedTotal },
    };
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The process ends with facts still waiting: say which are lost with it. */
  abandon(): void {
    this.stop();
    if (this.waiting.length === 0 && this.dropped === null) return;
    const kinds: Record<string, number> = {};
    for (const f of this.waiting) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
    const list = Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ');
    this.o.log(
      'error',
      `journal: stopping with ${this.waiting.length} fact(s) (${list}) never journaled (the staging file ${this.o.stageFile} still has no room)${this.dropped ? ` and ${this.dropped.count} dropped before` : ''}: ` +
        'they are lost with this process. The journal still records every lock as it was before them: the next start re-takes those locks and records a LeaseLost for any it cannot take.',
    );
  }

  /** The waiting facts' rows, and a FactsDropped after them if some were dropped. */
  private carried(): FactRowLike[] {
    if (this.waiting.length === 0 && this.dropped === null) return [];
    const rows = this.waiting.map(toRow);
    const d = this.dropped;
    if (d !== null) {
      rows.push(
        toRow(
          fact('FactsDropped', d.to, {
            count: d.count,
            kinds: { ...d.kinds },
            from: d.from,
            to: d.to,
            reason: `the journal refused them (${this.lastError ?? 'no room in the state directory'}) while ${this.waiting.length} fact(s) waited in memory already (at most ${this.max}); they were in force in the daemon`,
          }),
        ),
      );
    }
    return rows;
  }

  private schedule(): void {
    if (this.timer !== undefined || (this.waiting.length === 0 && this.dropped === null)) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retry();
    }, this.retryMs);
    this.timer.unref();
  }

  private retry(): void {
    const carried = this.carried();
    if (carried.length === 0) return;
    try {
      this.done(this.journal.append(carried));
    } catch (e) {
      this.lastError = (e as Error).message;
      this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
      this.o.remind(`JOURNAL FULL: ${this.waiting.length} waiting fact(s) still cannot be written to the staging file ${this.o.stageFile} (no free space in the state directory; every lock stays held; retrying in ${this.retryMs / 1000} s): ${(e as Error).message}`);
      this.schedule();
    }
  }

  private done(stored: readonly StoredRowLike[]): void {
    const n = this.waiting.length;
    const dropped = this.dropped;
    this.waiting = [];
    this.startCount = 0;
    this.dropped = null;
    this.since = null;
    this.lastError = null;
    this.stop();
    this.o.log('warning', `journal: ${n} waiting fact(s) are journaled now (seq ${stored[0]?.seq}-${stored[stored.length - 1]?.seq})${dropped ? `, with a FactsDropped for the ${dropped.count} dropped` : ''}`);
    this.o.stored(stored.map(fromRow));
  }
}
