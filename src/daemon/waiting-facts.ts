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
// room, in chunks (each durable before the next: a disk with room for some of them journals those).
// A running daemon's facts wait up to `max` (10,000 by default, a few MiB). Past it (decision 0026):
// - the facts that change who holds which lock (the verifier's LeaseLost and Reacquired) are kept,
//   coalesced: per holding (resource, owner) the last LeaseLost and the last Reacquired after it,
//   which leave that holding as the whole sequence did; at most two per holding, so bounded by the
//   locks held. The owners' libvirt vouches they may have ended are carried in the FactsDropped.
// - a ClockStepped (the clock stepped back: the window `audit --at` answers per pass in, decision
//   0029) is kept too, in its place among them: dropped, `audit --at` a moment in its window would
//   answer by the labels alone, as if the clock had never passed it twice (review27c F2). Steps are
//   few; past STEPS_KEPT of them while the disk is full, a step is merged into the last one kept (the
//   earliest `to`, the latest `from`: one window that covers both), in that earlier step's place, so
//   the facts kept after it stay in its pass (keepStep), and they stay bounded too.
// - the others (notes: ConfigChanged, OwnerGone, ConflictAction, DaemonStopped...) change nothing in
//   the state: folded in, not kept, counted per kind, and a FactsDropped fact journaled after the kept
//   ones says so. The fold of the journal is then the state the daemon had.
// - a fact of any other kind that changes the state (LibvirtVouched: the stream's note that it makes
//   again on its next report) never waits: refused, it is not folded in either.
import { fact, type Fact, type FactPayloads, type LibvirtRef, type NewFact } from '../engine/facts.js';
import { fromRow, toRow, type FactRowLike, type JournalPort, type StoredRowLike } from '../engine/journal-port.js';
import { JournalError } from '../journal/errors.js';

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;
/** Most waiting facts a retry writes in one append (halved down to one while the disk refuses them). */
const CHUNK_ROWS = 1_000;

/** Kinds that change who holds which lock and may wait: past the bound, coalesced per holding, never dropped. */
const HOLDING_KINDS: ReadonlySet<string> = new Set(['LeaseLost', 'Reacquired']);
/** Kinds whose evolve changes nothing: past the bound, dropped (counted in the FactsDropped). */
const NOTE_KINDS: ReadonlySet<string> = new Set([
  'LockRefused',
  'HandOverWaiting',
  'HandOverEnded',
  'InputRejected',
  'CommandFailed',
  'ConfigChanged',
  'OwnerGone',
  'ConflictAction',
  'ConfigRejected',
  'DaemonStarted',
  'DaemonStopped',
]);
/** A clock's step back: its evolve changes nothing, but past the bound it is kept (merged past STEPS_KEPT), never dropped. */
const STEP_KIND = 'ClockStepped';
/** Most ClockStepped kept past the bound; a later step is merged into the last one kept. */
export const STEPS_KEPT = 64;
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
  /** A LeaseLost or a ClockStepped that starts waiting: logged at once (neither must wait for the disk to be said). */
  lost: (f: NewFact) => void;
  /** The running state's vouching libvirt of an owner (settle(): the FactsDropped's vouchedBy). */
  vouchOf?: (uuid: string) => LibvirtRef | undefined;
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
  /** Of `count`: a holding's earlier LeaseLost / Reacquired a later one of the same holding stands for. */
  superseded: number;
}

/** The clock's reading when a fact was made: its wallAt (made while the clock was behind the floor), else its label. */
function readingOf(f: NewFact): string {
  const w = (f.payload as { wallAt?: unknown } | null)?.wallAt;
  return typeof w === 'string' ? w : f.at;
}
const earliestOf = (a: string, b: string) => (a < b ? a : b);
const latestOf = (a: string, b: string) => (a > b ? a : b);

/** A coalesced holding fact past the bound, with its place in the order they happened. */
interface Slot {
  readonly n: number;
  readonly f: NewFact;
}

/** The engine's journal port: appends carry the waiting facts first. */
export class WaitingFacts implements JournalPort {
  private waiting: NewFact[] = [];
  /** Each of `waiting`'s mark (`accepted` when it came): journaledUpTo() asks whether a mark's facts are journaled. */
  private marks: number[] = [];
  /** Facts taken to wait since this process began: the last one's mark (`mark`). */
  private accepted = 0;
  /** The mark of the first fact past the bound (null: none): those are journaled all at once, after every waiting one. */
  private boundMark: number | null = null;
  /** How many of `waiting` are the start's own (never dropped, never counted against `max`). */
  private startCount = 0;
  /** Past the bound (null until then): what was dropped, and when the facts past it began and ended. */
  private dropped: Dropped | null = null;
  /** How many facts waited when the bound was passed (the FactsDropped's reason: a retry may have journaled some since). */
  private waitedAtBound = 0;
  /** Past the bound: per holding (resource \0 owner) its last LeaseLost and the last Reacquired after it. */
  private holdings = new Map<string, { lost?: Slot; retaken?: Slot }>();
  private holdingCount = 0;
  /**
   * Past the bound: per holding whose facts were superseded, how many and the time they span (the first
   * superseded one's to the fact that stands for them): the FactsDropped's `coalesced` (aud31, review30
   * M2: without it `audit --at` inside a loss whose facts were coalesced answered "held", unmarked).
   */
  private coalescedHoldings = new Map<string, { resource: string; disk: string; owner: string; ownerName?: string; count: number; from: string; to: string }>();
  /** Past the bound: the ClockStepped kept (at most STEPS_KEPT, the last standing for those merged into it). */
  private steps: Slot[] = [];
  private serial = 0;
  /** Owners of the holding facts past the bound: their vouching libvirt in the running state (null: none). */
  private vouch = new Map<string, LibvirtRef | null>();
  /** Owners of holding facts folded in since the last settle(). */
  private unsettled = new Set<string>();
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

  /** Facts folded in but not journaled yet (those that wait, those kept past the bound, the FactsDropped to come). */
  get pending(): number {
    return this.waiting.length + this.kept + (this.dropped !== null && this.dropped.count > 0 ? 1 : 0);
  }

  /** Facts kept past the bound: the coalesced holding facts and the clock's steps. */
  private get kept(): number {
    return this.holdingCount + this.steps.length;
  }

  /** How many of the start's own facts are not journaled yet (a re-take's record waits for them: recordRetakes()). */
  get startPending(): number {
    return this.startCount;
  }

  /**
   * The mark of the last fact taken to wait (0: none yet): facts taken later have higher marks. A
   * verifier's re-take whose facts were just taken is tied to it (Locker.tieRetakes, engine29).
   */
  get mark(): number {
    return this.accepted;
  }

  /** Whether every fact taken to wait up to mark `m` is journaled (those past the bound: with their FactsDropped). */
  journaledUpTo(m: number): boolean {
    if (this.boundMark !== null && this.boundMark <= m) return false;
    for (const x of this.marks) if (x <= m) return false;
    return true;
  }

  append(rows: readonly FactRowLike[]): StoredRowLike[] {
    const carried = this.carried();
    if (carried.length === 0) return this.journal.append(rows);
    const stored = this.journal.append([...carried, ...rows]);
    this.done(stored.slice(0, carried.length));
    return stored.slice(carried.length);
  }

  /**
   * Journals the start's facts through `record` (the engine's recordOrWait); if the journal refuses
   * the write, they wait instead of failing the start. `record` gets a `wait` for the refused facts as
   * the engine labelled them (the fact clock's times, wallAt, the start's ClockStepped: clock27 (a),
   * they must not go back along seq), which the engine folds in; a `record` that throws the refusal
   * instead has the facts as given folded with `fold` and kept.
   */
  record(
    facts: readonly NewFact[],
    record: (f: readonly NewFact[], wait: (timed: readonly NewFact[], e: unknown) => boolean) => unknown,
    fold: (f: NewFact) => void,
  ): void {
    try {
      record(facts, (timed, e) => {
        if (!isWriteRefusal(e)) return false;
        this.startWaits(timed, e);
        return true;
      });
    } catch (e) {
      if (!isWriteRefusal(e)) throw e;
      for (const f of facts) fold(f);
      this.startWaits(facts, e);
    }
  }

  /** The start's facts (folded in by the caller) wait: the first of this process. */
  private startWaits(facts: readonly NewFact[], e: JournalError): void {
    for (const f of facts) if (f.kind === 'LeaseLost' || f.kind === STEP_KIND) this.o.lost(f);
    // Nothing waits before the start's facts: they are the first of this process.
    this.waiting = [...facts, ...this.waiting];
    this.marks = [...facts.map(() => ++this.accepted), ...this.marks];
    this.startCount = facts.length;
    this.since ??= new Date().toISOString();
    this.lastError = e.message;
    const count = (k: string) => facts.filter((f) => f.kind === k).length;
    const steps = count('ClockStepped');
    this.o.log(
      'error',
      `JOURNAL FULL AT START: the start's ${facts.length} fact(s) (DaemonStarted, ${count('Reacquired')} Reacquired, ${count('LeaseLost')} LeaseLost${steps > 0 ? `, ${steps} ClockStepped` : ''}) cannot be written to the staging file ${this.o.stageFile}: ${e.message}. ` +
        `The state directory's filesystem has no free space: free some there. Every lock is held and the daemon serves; the facts wait in memory and are journaled as soon as there is room (retrying); commands that change a lock are refused until then. If the daemon dies meanwhile nothing is lost: the next start re-takes the same locks.`,
    );
    this.schedule();
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
    // A state change that is no lock's loss or re-take (LibvirtVouched): refused, not folded in, made
    // again by its source; waiting (and dropped past the bound) it would make the journal's fold lie.
    if (facts.some((f) => !HOLDING_KINDS.has(f.kind) && !NOTE_KINDS.has(f.kind) && f.kind !== STEP_KIND)) return false;
    for (const f of facts) if (f.kind === 'LeaseLost' || f.kind === STEP_KIND) this.o.lost(f);
    const kinds = [...new Set(facts.map((f) => f.kind))].join(', ');
    const fresh = this.pending === 0;
    this.lastError = e.message;
    if (this.dropped !== null || this.waiting.length - this.startCount + facts.length > this.max) {
      // What waits stays a prefix of what happened: past the bound, everything until the waiting facts
      // are journaled is coalesced (the holding facts) or dropped (the notes, which change nothing).
      if (this.dropped === null) this.waitedAtBound = this.waiting.length;
      this.boundMark ??= this.accepted + 1;
      this.accepted += facts.length;
      const d = (this.dropped ??= { count: 0, kinds: {}, from: facts[0]!.at, to: facts[0]!.at, superseded: 0 });
      for (const f of facts) {
        if (HOLDING_KINDS.has(f.kind)) this.coalesce(f, d);
        else if (f.kind === STEP_KIND) this.keepStep(f);
        else this.drop(f, d);
      }
      d.to = facts[facts.length - 1]!.at;
      if (d.count > 0) {
        this.o.remind(
          `FACTS DROPPED: ${d.count} fact(s) so far (now ${kinds}) cannot be written to the staging file ${this.o.stageFile} and ${this.waiting.length} wait in memory already (at most ${this.max}): ` +
            `they are in force in the running daemon but will not be in the journal (those that change a lock are kept: the last of each holding, ${this.holdingCount} now; and the clock's steps back, ${this.steps.length}); a FactsDropped fact will say so once there is room. Free space in the state directory: ${e.message}`,
        );
      } else {
        this.o.remind(`JOURNAL FULL: ${this.waiting.length} fact(s) wait in memory (at most ${this.max}) and ${this.kept} are kept past it (the last loss or re-take of each holding, the clock's steps back): the staging file ${this.o.stageFile} has no room. Free space in the state directory: ${e.message}`);
      }
    } else {
      this.waiting.push(...facts);
      for (let i = 0; i < facts.length; i++) this.marks.push(++this.accepted);
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

  /**
   * After the engine folded in what later() took: reads the running state's vouching libvirt of the
   * owners of holding facts past the bound (the FactsDropped carries it: coalescing may have removed
   * the fact that ended a vouch).
   */
  settle(): void {
    if (this.unsettled.size === 0) return;
    for (const uuid of this.unsettled) this.vouch.set(uuid, this.o.vouchOf?.(uuid) ?? null);
    this.unsettled.clear();
  }

  /** Folds the facts not journaled yet into `fold` (a state rebuilt from the journal after a failed group commit). */
  foldInto(fold: (f: NewFact) => void): void {
    for (const f of this.waiting) fold(f);
    for (const f of this.pastBound()) fold(f);
  }

  /** A holding fact past the bound: kept, standing for the earlier ones of its holding. */
  private coalesce(f: NewFact, d: Dropped): void {
    const p = f.payload as { resource: string; disk?: string; path?: string; owner: { uuid: string; name?: string } };
    const key = `${p.resource}\0${p.owner.uuid}`;
    let h = this.holdings.get(key);
    if (h === undefined) this.holdings.set(key, (h = {}));
    const supersede = (slot: Slot | undefined) => {
      if (slot === undefined) return;
      this.drop(slot.f, d);
      d.superseded++;
      this.holdingCount--;
      // The range covers both the labels and the clock's readings (wallAt): after a step back every fact
      // is labelled at the floor, its reading in wallAt, and a range by labels alone was [floor, floor),
      // empty, while the loss it hides lay at the readings (review31a HIGH 1: audit --at inside it
      // answered alpha agreed, unmarked).
      const lo = earliestOf(earliestOf(slot.f.at, readingOf(slot.f)), earliestOf(f.at, readingOf(f)));
      const hi = latestOf(latestOf(slot.f.at, readingOf(slot.f)), latestOf(f.at, readingOf(f)));
      const c = this.coalescedHoldings.get(key);
      if (c === undefined) {
        const disk = p.disk ?? p.path ?? p.resource;
        this.coalescedHoldings.set(key, { resource: p.resource, disk, owner: p.owner.uuid, ...(p.owner.name !== undefined ? { ownerName: p.owner.name } : {}), count: 1, from: lo, to: hi });
      } else {
        c.count++;
        if (lo < c.from) c.from = lo;
        if (hi > c.to) c.to = hi;
      }
    };
    // A LeaseLost ends the holding whatever came before; a Reacquired (always after a LeaseLost of
    // its holding: a verifier's re-take) is taken from nothing, so the LeaseLost before it stays.
    if (f.kind === 'LeaseLost') {
      supersede(h.lost);
      supersede(h.retaken);
      h.lost = { n: this.serial++, f };
      delete h.retaken;
    } else {
      supersede(h.retaken);
      h.retaken = { n: this.serial++, f };
    }
    this.holdingCount++;
    this.unsettled.add(p.owner.uuid);
  }

  /**
   * A ClockStepped past the bound: kept in its place. Past STEPS_KEPT, merged into the last one kept:
   * the earliest `to` and the latest `from`, a window that holds both, in the EARLIER step's place
   * (engine29, review28c): the lock facts kept after that step were made in the pass after it, and
   * `audit --at` reads a pass from its step on along seq (decision 0029); in the newest step's place
   * they lay before the merged step, outside every pass, and counted as done at every moment of its
   * window. The merged step is labelled with the latest `from`; a fact kept after it labelled earlier
   * is relabelled to it (the clock's floor after the step), its own reading kept as `wallAt`, as the
   * engine labels any fact made while the clock is behind the floor: no label goes back along seq.
   * `merged` counts the steps it stands for.
   */
  private keepStep(f: NewFact): void {
    if (this.steps.length < STEPS_KEPT) {
      this.steps.push({ n: this.serial++, f });
      return;
    }
    const last = this.steps[this.steps.length - 1]!;
    const a = last.f.payload as FactPayloads['ClockStepped'];
    const b = f.payload as { from: string; to: string; backMs: number };
    const from = a.from > b.from ? a.from : b.from;
    const to = a.to < b.to ? a.to : b.to;
    const merged = fact('ClockStepped', from, { ...a, from, to, backMs: Math.max(a.backMs, b.backMs, Date.parse(from) - Date.parse(to)), merged: (a.merged ?? 1) + 1 });
    this.steps[this.steps.length - 1] = { n: last.n, f: merged };
    // The holding facts kept since the earlier step (the only kept facts after it: it is the last step).
    const floor = (slot: Slot | undefined): Slot | undefined => {
      if (slot === undefined || slot.n < last.n || slot.f.at >= from) return slot;
      const p = slot.f.payload as { wallAt?: unknown };
      const wallAt = typeof p.wallAt === 'string' ? p.wallAt : slot.f.at;
      return { n: slot.n, f: { ...slot.f, at: from, payload: { ...slot.f.payload, wallAt } } as unknown as NewFact };
    };
    for (const h of this.holdings.values()) {
      const lost = floor(h.lost);
      const retaken = floor(h.retaken);
      if (lost !== undefined) h.lost = lost;
      if (retaken !== undefined) h.retaken = retaken;
    }
  }

  private drop(f: NewFact, d: Dropped): void {
    d.kinds[f.kind] = (d.kinds[f.kind] ?? 0) + 1;
    d.count++;
    this.droppedTotal++;
  }

  /** The facts kept past the bound (holding facts, clock steps), in the order they happened. */
  private coalesced(): NewFact[] {
    if (this.kept === 0) return [];
    const slots: Slot[] = [...this.steps];
    for (const h of this.holdings.values()) {
      if (h.lost) slots.push(h.lost);
      if (h.retaken) slots.push(h.retaken);
    }
    return slots.sort((a, b) => a.n - b.n).map((s) => s.f);
  }

  /** The FactsDropped for the facts past the bound, if any was not kept. */
  private droppedFact(): NewFact | null {
    const d = this.dropped;
    if (d === null || d.count === 0) return null;
    return fact('FactsDropped', d.to, {
      count: d.count,
      kinds: { ...d.kinds },
      from: d.from,
      to: d.to,
      reason:
        `the journal refused them (${this.lastError ?? 'no room in the state directory'}) while ${this.waitedAtBound} fact(s) waited in memory already (at most ${this.max}); they were in force in the daemon` +
        (d.superseded > 0 ? `; ${d.superseded} of them were a lock's loss or re-take that a later one of the same holding, journaled before this, stands for` : ''),
      ...(d.superseded > 0 ? { superseded: d.superseded, vouchedBy: Object.fromEntries(this.vouch) } : {}),
      ...(this.coalescedHoldings.size > 0 ? { coalesced: [...this.coalescedHoldings.values()].map((c) => ({ ...c })) } : {}),
    });
  }

  /** For `status`: null unless facts wait for the journal (or some were dropped). */
  status(): { facts: number; start: number; kinds: Record<string, number>; since: string; stageFile: string; error: string | null; max: number; kept: number; dropped: Dropped | null } | null {
    if (this.pending === 0 || this.since === null) return null;
    const kinds: Record<string, number> = {};
    for (const f of [...this.waiting, ...this.coalesced()]) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
    return {
      facts: this.waiting.length + this.kept,
      start: this.startCount,
      kinds,
      since: this.since,
      stageFile: this.o.stageFile,
      error: this.lastError,
      max: this.max,
      kept: this.kept,
      dropped: this.dropped === null || this.dropped.count === 0 ? null : { ...this.dropped, kinds: { ...this.dropped.kinds } },
    };
  }

  /** The start's part of `status()` (status `startFactsWaiting`, decision 0023). */
  startStatus(): { facts: number; since: string; stageFile: string; error: string | null } | null {
    if (this.startCount === 0 || this.since === null) return null;
    return { facts: this.startCount, since: this.since, stageFile: this.o.stageFile, error: this.lastError };
  }

  gauges(): Record<string, { help: string; value: number }> {
    return {
      journal_facts_waiting: { help: 'Facts no client waits for (a start\'s, the verifier\'s, a reload\'s) that the journal refused and that wait in memory, journaled first once it has room.', value: this.waiting.length + this.kept },
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
    if (this.pending === 0) return;
    const kinds: Record<string, number> = {};
    const left = [...this.waiting, ...this.coalesced()];
    for (const f of left) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
    const list = Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(', ');
    this.o.log(
      'error',
      `journal: stopping with ${left.length} fact(s) (${list}) never journaled (the staging file ${this.o.stageFile} still has no room)${this.dropped && this.dropped.count > 0 ? ` and ${this.dropped.count} dropped before` : ''}: ` +
        'they are lost with this process. The journal still records every lock as it was before them: the next start re-takes those locks and records a LeaseLost for any it cannot take.',
    );
  }

  /** The rows of every fact not journaled yet: those that wait, the holding facts kept past the bound, the FactsDropped. */
  private carried(): FactRowLike[] {
    if (this.pending === 0) return [];
    return [...this.waiting, ...this.pastBound()].map(toRow);
  }

  /**
   * The facts past the bound to journal: the coalesced holding facts and, after them, the FactsDropped.
   * A merged step (the last step kept) says how many facts follow it here (`span`): the steps merged
   * into it came among those, so its pass's wall times may go back anywhere up to there, and `audit
   * --at` a moment in its window reads every place there as a pass of its own (aud31, review30 M1).
   */
  private pastBound(): NewFact[] {
    const d = this.droppedFact();
    const kept = this.coalesced();
    if (d !== null) kept.push(d);
    for (let i = kept.length - 1; i >= 0; i--) {
      const f = kept[i]!;
      if (f.kind !== STEP_KIND) continue;
      const p = f.payload as FactPayloads['ClockStepped'];
      if (p.merged !== undefined) kept[i] = fact('ClockStepped', f.at, { ...p, span: kept.length - 1 - i });
      break;
    }
    return kept;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.pending === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retry();
    }, this.retryMs);
    this.timer.unref();
  }

  /**
   * The retry: the waiting facts in chunks, oldest first, each durable before the next (the journal
   * chains them in that order), halving a refused chunk down to one fact, so a disk with room for
   * some of them journals those now; then the facts past the bound with their FactsDropped, in one
   * write (the FactsDropped describes them). What cannot be written waits for the next retry.
   */
  private retry(): void {
    let chunk = CHUNK_ROWS;
    let progressed = false;
    try {
      while (this.waiting.length > 0) {
        const part = this.waiting.slice(0, chunk);
        let stored: StoredRowLike[];
        try {
          stored = this.journal.append(part.map(toRow));
        } catch (e) {
          if (chunk > 1) {
            chunk = Math.max(1, chunk >> 1);
            continue;
          }
          throw e;
        }
        this.waiting.splice(0, part.length);
        this.marks.splice(0, part.length);
        this.startCount = Math.max(0, this.startCount - part.length);
        progressed = true;
        if (this.pending > 0) this.journaled(stored);
        else this.done(stored);
      }
      if (this.pending > 0) this.done(this.journal.append(this.pastBound().map(toRow)));
    } catch (e) {
      this.lastError = (e as Error).message;
      // Room came back for some: the rest soon again; none: back off.
      this.retryMs = progressed ? FIRST_RETRY_MS : Math.min(this.retryMs * 2, MAX_RETRY_MS);
      this.o.remind(`JOURNAL FULL: ${this.pending} waiting fact(s) still cannot be written to the staging file ${this.o.stageFile} (no free space in the state directory; every lock stays held; retrying in ${this.retryMs / 1000} s): ${(e as Error).message}`);
      this.schedule();
    }
  }

  /** Some of the waiting facts are journaled (a chunk of a retry): the rest still wait. */
  private journaled(stored: readonly StoredRowLike[]): void {
    this.o.log('warning', `journal: ${stored.length} waiting fact(s) are journaled now (seq ${stored[0]?.seq}-${stored[stored.length - 1]?.seq}); ${this.pending} still wait for room`);
    this.o.stored(stored.map(fromRow));
  }

  /** Every fact not journaled yet is journaled now (`stored`: the last of them). */
  private done(stored: readonly StoredRowLike[]): void {
    const dropped = this.dropped;
    this.waiting = [];
    this.marks = [];
    this.boundMark = null;
    this.startCount = 0;
    this.dropped = null;
    this.holdings.clear();
    this.holdingCount = 0;
    this.coalescedHoldings.clear();
    this.steps = [];
    this.vouch.clear();
    this.unsettled.clear();
    this.since = null;
    this.lastError = null;
    this.retryMs = FIRST_RETRY_MS;
    this.stop();
    this.o.log('warning', `journal: ${stored.length} waiting fact(s) are journaled now (seq ${stored[0]?.seq}-${stored[stored.length - 1]?.seq})${dropped && dropped.count > 0 ? `, with a FactsDropped for the ${dropped.count} dropped` : ''}`);
    this.o.stored(stored.map(fromRow));
  }
}
