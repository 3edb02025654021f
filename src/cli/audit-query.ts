// The audit questions, answered from the journal (and its archive): who held a disk at a moment,
// a disk's or a VM's history, conflicts, a disk's holders over time. The journal stores generic rows;
// what the lock kinds mean is known here, on the engine's side of the port.
import type { FactKind, FactPayloads } from '../engine/facts.js';
import type { HolderInfo, Mode, Owner } from '../engine/types.js';
import type { FactQuery, Journal, StoredFact } from '../journal/journal.js';
import type { HoldKinds } from '../journal/compact.js';
import { isIsoMsUtc } from '../journal/query.js';

export const OPEN_KINDS: readonly FactKind[] = ['LockAcquired', 'Reacquired'];
export const CLOSE_KINDS: readonly FactKind[] = ['LockReleased', 'LeaseLost'];
export const LOCK_KINDS: readonly FactKind[] = [...OPEN_KINDS, ...CLOSE_KINDS];
export const CONFLICT_KINDS: readonly FactKind[] = ['LockRefused', 'LeaseLost'];
/** What a disk's history shows: every acquire, re-take, release, refusal and loss. */
export const DISK_KINDS: readonly FactKind[] = ['LockAcquired', 'Reacquired', 'LockReleased', 'LockRefused', 'LeaseLost'];

/** The live journal, and the archive when the question reaches back past a compaction. */
export interface AuditSources {
  readonly live: Journal;
  readonly archive?: Journal;
  /**
   * The daemon writing this journal is not running and did not stop cleanly: its pid file names a
   * process that is gone (checked at `checkedAt`). Its last run's holds ended when it died, unless a
   * service manager's descriptor store kept them, and nothing journaled says which: see holdersAnswer.
   */
  readonly daemonGone?: { readonly pid: number; readonly checkedAt: string };
}

/**
 * A disk as the audit asks about it: `disk`, the name answers show (the path asked about), and
 * `names`, every name its facts may use (the path, a hard link's journaled name, a virtlockd-protocol
 * lease's lock file `<lockspace>/<sha256(path)>`: src/cli/disk-alias.ts). A plain string is a disk
 * with that one name.
 */
export interface DiskNames {
  readonly disk: string;
  readonly names: readonly string[];
}
export type DiskArg = string | DiskNames;

/** The names to query by (FactQuery.disk). */
export function namesOf(d: DiskArg): string | readonly string[] {
  return typeof d === 'string' ? d : d.names.length === 1 ? d.names[0]! : d.names;
}

/** The name an answer shows. */
export function shownOf(d: DiskArg): string {
  return typeof d === 'string' ? d : d.disk;
}

/** One holder of a disk at a moment. */
export interface HolderAt {
  readonly owner: Owner;
  /** The host that journaled the grant (this journal's host). */
  readonly host: string;
  readonly mode: Mode;
  readonly generation: number | null;
  /** When the hold began: its LockAcquired, or the first re-take after a loss. */
  readonly since: string;
  /** The wall clock's reading at that grant, when it was behind `since` after a step back (its wallAt, decision 0029). */
  readonly sinceClock?: string;
  readonly resource: string;
  /** The fact that last confirmed the hold (a LockAcquired or a Reacquired). */
  readonly seq: number;
  readonly via: string;
  /** The name the hold's facts gave the disk, when it is not the one asked about (a lease's lock file). */
  readonly as?: string;
}

type LockPayload = FactPayloads['LockAcquired'] | FactPayloads['Reacquired'];

/**
 * Journal order (seq), the order every audit answer is given in. Since 12.6 a fact's `at` is the
 * daemon's clock when it journaled the fact, never earlier than the fact before it, so for facts
 * journaled by this version (at, seq) order and seq order agree; for older facts that carry a
 * client's time, seq decides.
 */
export function compareFacts(a: StoredFact, b: StoredFact): number {
  return a.seq - b.seq;
}

/**
 * Facts matching `q` from every source, in journal order. With `limit`, the newest `limit` of them:
 * each source gives its newest `limit` and the merge keeps the newest overall. A fact in both files
 * (a compaction interrupted between its copy and its delete) is given once.
 */
export function queryFacts(src: AuditSources, q: FactQuery): StoredFact[] {
  const fromLive = src.live.query(q);
  if (src.archive === undefined) return fromLive.sort(compareFacts);
  const all = dedup([...src.archive.query(q), ...fromLive].sort(compareFacts));
  if (q.limit === undefined) return all;
  return q.newest === true ? all.slice(-q.limit) : all.slice(0, q.limit);
}

function dedup(sorted: StoredFact[]): StoredFact[] {
  return sorted.filter((f, i) => i === 0 || sorted[i - 1]!.seq !== f.seq);
}

/** Newest first, lazily, across sources; a seq seen in two files is given once. */
function* newestFirst(iterators: Array<Iterator<StoredFact>>): Generator<StoredFact> {
  // An unfinished journal iterator keeps its statement (and the connection) busy: close them all.
  try {
    let last: number | undefined;
    for (const f of merged(iterators)) {
      if (f.seq === last) continue;
      last = f.seq;
      yield f;
    }
  } finally {
    for (const it of iterators) it.return?.();
  }
}

/** Newest (at, seq) first: each source's index walk is in that order. */
function newer(a: StoredFact, b: StoredFact): number {
  return a.at < b.at ? -1 : a.at > b.at ? 1 : a.seq - b.seq;
}

function* merged(iterators: Array<Iterator<StoredFact>>): Generator<StoredFact> {
  const heads = iterators.map((it) => it.next());
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i]!;
      if (h.done === true) continue;
      if (best < 0 || newer(h.value, (heads[best] as IteratorYieldResult<StoredFact>).value) > 0) best = i;
    }
    if (best < 0) return;
    const value = (heads[best] as IteratorYieldResult<StoredFact>).value;
    heads[best] = iterators[best]!.next();
    yield value;
  }
}

function modeOf(f: StoredFact): Mode | undefined {
  const m = (f.payload as { mode?: unknown } | null)?.mode;
  return m === 'exclusive' || m === 'shared' ? m : undefined;
}

/**
 * The zero-gap hook (issue 11): a lock a restarted daemon adopted (a descriptor systemd's store handed
 * back, or one the previous daemon handed over with `serve --takeover`) was never dropped, so its hold
 * continues through the restart instead of ending at the stop or the crash. The adopting start
 * journals it as a `Reacquired` with `how: "adopted" | "taken-over"` (the zero-gap branch's payload);
 * ADOPT_KINDS names any separate kind a later version journals for it. Every other re-take after a
 * restart is a new hold: the kernel dropped the lock in between.
 */
export const ADOPT_KINDS: readonly string[] = [];

export function continuesHold(f: Pick<StoredFact, 'kind' | 'payload'>): boolean {
  if (ADOPT_KINDS.includes(f.kind)) return true;
  if (f.kind !== 'Reacquired') return false;
  const how = (f.payload as { how?: unknown } | null)?.how;
  return how === 'adopted' || how === 'taken-over';
}

/** The hold rules compaction and publication's pruning carry past a cut (the holds still in force). */
export const HOLD_RULES: HoldKinds = {
  open: [...OPEN_KINDS, ...ADOPT_KINDS],
  close: CLOSE_KINDS,
  started: 'DaemonStarted',
  stopped: 'DaemonStopped',
  continues: (kind, payload) => continuesHold({ kind, payload }),
};

const isOpen = (f: StoredFact) => (OPEN_KINDS as readonly string[]).includes(f.kind) || ADOPT_KINDS.includes(f.kind);
const isClose = (f: StoredFact) => (CLOSE_KINDS as readonly string[]).includes(f.kind);
const HOLD_KINDS: readonly string[] = [...LOCK_KINDS, ...ADOPT_KINDS];
const RUN_KINDS: readonly string[] = ['DaemonStarted', 'DaemonStopped'];

interface Run {
  latest: StoredFact;
  start: StoredFact;
  /** The start is found: a grant or a re-take that is not an adoption. */
  done: boolean;
}

/** How the daemon's runs frame a moment: the run it falls in, and how that run ended. */
export interface RunBounds {
  /** The newest DaemonStarted at or before the moment. */
  readonly start?: StoredFact;
  /** That run's clean stop, at or before the moment: every lock was dropped then. */
  readonly stopped?: StoredFact;
  /** The next DaemonStarted after the moment. */
  readonly next?: StoredFact;
  /** The last fact before `next`: a run that does not end in DaemonStopped crashed after it. */
  readonly lastBeforeNext?: StoredFact;
}

/** Like queryFacts, and without the archive also the carried copies (the run boundaries at the cut). */
function withCarried(src: AuditSources, q: FactQuery): StoredFact[] {
  const found = queryFacts(src, q);
  if (src.archive !== undefined || src.live.archivedThrough() === 0) return found;
  const all = dedup([...src.live.carried(q), ...found].sort(compareFacts));
  if (q.limit === undefined) return all;
  return q.newest === true ? all.slice(-q.limit) : all.slice(0, q.limit);
}

function newestOf(src: AuditSources, q: FactQuery): StoredFact | undefined {
  return withCarried(src, { ...q, limit: 1, newest: true })[0];
}

/** The fact with this seq, from whichever file still has it (or its carried copy). */
function factAt(src: AuditSources, seq: number): StoredFact | undefined {
  if (seq < 1) return undefined;
  const q: FactQuery = { afterSeq: seq - 1, untilSeq: seq };
  return src.live.query(q)[0] ?? src.archive?.query(q)[0] ?? src.live.carried(q)[0];
}

/**
 * A moment on the journal's order: the facts through seq `seq` (labelled at most `label`, the time of
 * that fact). One pass of a clock that stepped back is answered so: its facts' times are the floor
 * they were given, so the time alone cannot say where in the pass the moment falls (decision 0029).
 */
export interface AsOf {
  readonly seq: number;
  readonly label: string;
}

export function runBounds(src: AuditSources, at: string, asOf?: AsOf): RunBounds {
  const ceil = asOf === undefined ? {} : { untilSeq: asOf.seq };
  const start = newestOf(src, { kinds: ['DaemonStarted'], until: at, ...ceil });
  const floor = start?.seq ?? 0;
  const stop = newestOf(src, { kinds: ['DaemonStopped'], until: at, ...ceil });
  const stopped = stop !== undefined && stop.seq > floor ? stop : undefined;
  // The first start after the moment (and after `start`: `at` is nondecreasing along the journal).
  const next =
    asOf === undefined
      ? withCarried(src, { kinds: ['DaemonStarted'], since: at, limit: 4 }).find((f) => f.seq > floor && f.at > at)
      : withCarried(src, { kinds: ['DaemonStarted'], since: at, limit: 64 }).find((f) => f.seq > asOf.seq);
  const lastBeforeNext = next === undefined ? undefined : factAt(src, next.seq - 1);
  return { ...(start ? { start } : {}), ...(stopped ? { stopped } : {}), ...(next ? { next } : {}), ...(lastBeforeNext ? { lastBeforeNext } : {}) };
}

/** Who held a disk at a moment, and what a stop or a crash around it did to the holds. */
export interface HoldersAnswer {
  readonly disk: string;
  readonly at: string;
  readonly holders: HolderAt[];
  /** The moment falls after a clean stop and before the next start: the kernel dropped every lock at the stop. */
  readonly stopped?: { readonly at: string; readonly restarted?: string };
  /**
   * The moment falls after the last fact of a run that crashed and before the next start: these holds
   * ended at the crash, at a moment between `after` and their `before` (the restart, or sooner when a
   * LeaseLost's other party took the disk earlier), so whether they lasted until `at` is unknown.
   */
  readonly crash?: {
    readonly after: string;
    readonly before: string;
    readonly holds: ReadonlyArray<HolderAt & { readonly before: string }>;
    /** The daemon has not started again: `before` is when that was checked, not a restart. */
    readonly notRestarted?: true;
  };
  /**
   * This host's clock stepped back over the moment (ClockStepped), so it came more than once and the
   * passes' answers differ: each pass's answer, in journal order. `holders` is then empty: the journal
   * cannot say which pass the asker means (decision 0029).
   */
  readonly ambiguous?: { readonly steps: readonly ClockStepAt[]; readonly readings: readonly Reading[] };
  /** The clock stepped back over the moment, and every pass gives this same answer (or, with `current`, the answer is the current pass's). */
  readonly clockSteps?: readonly ClockStepAt[];
  /**
   * `--at now` inside a step's window: answered by the current pass, the one after the step `step`
   * (after seq `asOf`): the operator asks about the present, not the earlier times the clock showed
   * the same (decision 0029).
   */
  readonly current?: { readonly step: number; readonly asOf: number };
  /**
   * A journal written before ClockStepped existed: the run the moment falls in began (DaemonStarted
   * `seq`, at `at`) before the time of the fact journaled ahead of it (`before`): the clock was set back
   * across that restart, so the moment came twice, and this answer follows the times as they are.
   */
  readonly unmarkedStep?: { readonly seq: number; readonly at: string; readonly before: string };
  /**
   * The journal's disk was full and these holdings' loss / re-take facts around the moment were
   * coalesced (a FactsDropped's `coalesced`): whether they held the disk at the moment is not in the
   * journal, whatever `holders` says (aud31, review30 M2).
   */
  readonly incomplete?: readonly CoalescedAt[];
}

/** A holding whose loss / re-take facts from `from` to `to` were coalesced (FactsDropped `seq`, decision 0026). */
export interface CoalescedAt {
  readonly seq: number;
  readonly resource: string;
  readonly disk: string;
  readonly owner: string;
  readonly ownerName?: string;
  readonly count: number;
  readonly from: string;
  readonly to: string;
}

/**
 * The coalesced holdings of a disk (any of `names`) whose range [from, to) meets [since, until] (either
 * end open): a FactsDropped is journaled after the facts it stands for (labelled at their end), so
 * those from `since` on are read, by kind (rare: one per full-disk episode past the bound).
 */
export function coalescedOver(src: AuditSources, names: string | readonly string[] | undefined, since: string | undefined, until: string | undefined, owner?: string): CoalescedAt[] {
  return coalescedMatching(src, names, since, until).filter((c) => owner === undefined || c.owner === owner || c.owner === '?');
}

/**
 * Whether a list of facts of these kinds (undefined: every kind) would hold the loss / re-take facts a
 * FactsDropped coalesced: then its coalesced ranges are noted with the list (review31a MEDIUM 5).
 */
export function listsHoldings(kinds: readonly string[] | undefined): boolean {
  return kinds === undefined || kinds.includes('LeaseLost') || kinds.includes('Reacquired');
}

function coalescedMatching(src: AuditSources, names: string | readonly string[] | undefined, since: string | undefined, until: string | undefined): CoalescedAt[] {
  // No disk named (audit --vm, --conflicts, a whole list): every disk's.
  const want: ReadonlySet<string> | undefined = names === undefined ? undefined : new Set(typeof names === 'string' ? [names] : names);
  const out: CoalescedAt[] = [];
  for (const f of queryFacts(src, { kinds: ['FactsDropped'], ...(since !== undefined ? { since } : {}) })) {
    const list = (f.payload as { coalesced?: unknown } | null)?.coalesced;
    if (!Array.isArray(list)) {
      out.push(...olderCoalesced(src, want, f, since, until));
      continue;
    }
    for (const e of list as unknown[]) {
      const c = coalescedEntry(e);
      if (c === undefined || (want !== undefined && !want.has(c.disk))) continue;
      if (until !== undefined && c.from > until) continue;
      if (since !== undefined && c.to <= since) continue;
      out.push({ seq: f.seq, ...c });
    }
  }
  return out;
}

/**
 * A FactsDropped from before `coalesced` (35edeeb..7fc2335: `superseded` and `vouchedBy` only): which
 * holding's facts were superseded is not said, only the owners and the window [from, to]. Marked for
 * each owner in `vouchedBy` with a hold fact of this disk journaled before it, or, with no owner named,
 * for every disk (review31a MEDIUM 6: audit --at inside its window answered alpha, unmarked).
 */
function olderCoalesced(src: AuditSources, want: ReadonlySet<string> | undefined, f: StoredFact, since: string | undefined, until: string | undefined): CoalescedAt[] {
  const p = f.payload as { superseded?: unknown; vouchedBy?: unknown; from?: unknown; to?: unknown } | null;
  if (typeof p?.superseded !== 'number' || p.superseded <= 0 || typeof p.from !== 'string' || typeof p.to !== 'string') return [];
  const from = p.from;
  const to = p.to > f.at ? p.to : f.at;
  if ((until !== undefined && from > until) || (since !== undefined && to <= since)) return [];
  const names = want === undefined ? undefined : [...want];
  const owners = typeof p.vouchedBy === 'object' && p.vouchedBy !== null ? Object.keys(p.vouchedBy) : [];
  // `superseded` counts every holding's: one owner's only when it is the one named (0 shows as "some").
  const base = { seq: f.seq, count: owners.length === 1 ? p.superseded : 0, from, to };
  if (owners.length === 0) return [{ ...base, resource: '?', disk: names?.[0] ?? '?', owner: '?' }];
  const out: CoalescedAt[] = [];
  for (const owner of owners) {
    const disk = names === undefined ? {} : { disk: names.length === 1 ? names[0]! : names };
    const held = queryFacts(src, { ...disk, owner, kinds: [...HOLD_KINDS], untilSeq: f.seq, limit: 1, newest: true })[0];
    if (held === undefined) continue;
    const name = (held.payload as { owner?: { name?: unknown } } | null)?.owner?.name ?? held.ownerName;
    out.push({ ...base, resource: held.resource ?? '?', disk: held.disk ?? names?.[0] ?? '?', owner, ...(typeof name === 'string' ? { ownerName: name } : {}) });
  }
  return out;
}

/**
 * One entry of a FactsDropped's `coalesced`, checked: a range (from, to) of a disk is all the mark needs;
 * a missing owner, resource or count (a damaged or hand-edited journal, another writer) is shown as
 * unknown rather than read as a string (review31a LOW 7: an entry without owner threw a TypeError in
 * coalescedText and the audit died instead of answering with the mark).
 */
function coalescedEntry(e: unknown): Omit<CoalescedAt, 'seq'> | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const c = e as Record<string, unknown>;
  if (typeof c.from !== 'string' || typeof c.to !== 'string' || typeof c.disk !== 'string') return undefined;
  return {
    resource: typeof c.resource === 'string' ? c.resource : '?',
    disk: c.disk,
    owner: typeof c.owner === 'string' ? c.owner : '?',
    ...(typeof c.ownerName === 'string' ? { ownerName: c.ownerName } : {}),
    count: typeof c.count === 'number' && Number.isFinite(c.count) ? c.count : 0,
    from: c.from,
    to: c.to,
  };
}

/** A step back of this host's clock, as journaled (ClockStepped, decision 0029): times in [to, from) came twice. */
export interface ClockStepAt {
  /** The ClockStepped fact. */
  readonly seq: number;
  readonly from: string;
  readonly to: string;
  readonly seenBy: string;
  /** A merged step: it stands for this many (waiting-facts keepStep; aud31). */
  readonly merged?: number;
}

/** One pass of the clock over the moment, and who held the disk then. */
export interface Reading {
  /** `before`: before any step whose window holds the moment (the time labels say this one); `after`: after the step `step`. */
  readonly pass: 'before' | 'after';
  readonly step?: number;
  /**
   * The step is a merged one standing for this many (the journal's disk was full: waiting-facts
   * keepStep): its passes cannot be told apart, so each distinct answer along it is a reading (aud31).
   */
  readonly merged?: number;
  /** The moment falls after this fact and before the next one, on the journal's order. */
  readonly asOf: number;
  readonly holders: HolderAt[];
  readonly stopped?: HoldersAnswer['stopped'];
  readonly crash?: HoldersAnswer['crash'];
}

/**
 * Who held `disk` at `at` by the time labels, the holders only: the journal's order up to `at` (for a
 * moment the clock showed twice, the pass before the step), which is where a timeline folding the
 * facts after `at` in that order must start (holdersAnswer gives every pass).
 */
export function holdersAt(src: AuditSources, disk: DiskArg, at: string): HolderAt[] {
  return holdersAnswerAt(src, disk, at).holders;
}

/**
 * Who held `disk` at `at`. A hold is a lock this host's daemon had: it begins with a LockAcquired or
 * a Reacquired and ends with a LockReleased or a LeaseLost (at the LeaseLost's evidence: the other
 * party's `since` when it took the disk earlier), at a clean stop (DaemonStopped), or at a crash (the
 * kernel drops every lock of a dead process): the last fact before the next DaemonStarted. A re-take
 * after a restart opens a new hold; an adoption (continuesHold) continues the old one.
 */
export function holdersAnswer(src: AuditSources, asked: DiskArg, at: string, opts: { readonly now?: boolean } = {}): HoldersAnswer {
  const a = holdersAnswerPasses(src, asked, at, opts);
  // A moment inside a range whose loss / re-take facts were coalesced: marked, never a silent "held".
  const incomplete = coalescedOver(src, namesOf(asked), at, at).filter((c) => c.from <= at && at < c.to);
  return incomplete.length > 0 ? { ...a, incomplete } : a;
}

function holdersAnswerPasses(src: AuditSources, asked: DiskArg, at: string, opts: { readonly now?: boolean }): HoldersAnswer {
  const steps = stepsOver(src, at);
  if (steps.length > 0 && opts.now === true) {
    // The present is the last pass: the one after the newest step over it.
    const last = steps[steps.length - 1]!;
    // A merged step's span has wall times going back (aud31 M1): the search assumes they rise and could
    // land at the step's start (review31a HIGH 3: alpha answered as the current pass after its loss).
    // The present is the pass's end: answered after its last fact.
    const asOf = mergedOf(last) !== undefined ? passEnd(src, last) : secondPass(src, last, at);
    return { ...holdersAnswerAt(src, asked, at, asOf), clockSteps: steps.map(stepAt), current: { step: last.seq, asOf: asOf.seq } };
  }
  const first = holdersAnswerAt(src, asked, at);
  if (steps.length === 0) {
    const unmarked = unmarkedStepOver(src, at);
    return unmarked === undefined ? first : { ...first, unmarkedStep: unmarked };
  }
  const readings: Reading[] = [readingOf('before', first, lastSeqAt(src, at))];
  for (const s of steps) {
    if (mergedOf(s) !== undefined) {
      readings.push(...mergedReadings(src, asked, at, s));
      continue;
    }
    const asOf = secondPass(src, s, at);
    readings.push(readingOf('after', holdersAnswerAt(src, asked, at, asOf), asOf.seq, s.seq));
  }
  const stepsAt = steps.map(stepAt);
  const key = (r: Reading) => r.holders.map((h) => `${h.resource}\u0000${h.owner.uuid}\u0000${h.mode}`).sort().join('\n');
  if (readings.every((r) => key(r) === key(readings[0]!))) return { ...first, clockSteps: stepsAt };
  return { disk: first.disk, at, holders: [], ambiguous: { steps: stepsAt, readings } };
}

/**
 * A step back across a restart that an older vmlockd journaled without a ClockStepped: the newest
 * start at or before `at` has a time earlier than the fact before it, and `at` lies between the two.
 */
function unmarkedStepOver(src: AuditSources, at: string): HoldersAnswer['unmarkedStep'] {
  const start = newestOf(src, { kinds: ['DaemonStarted'], until: at });
  if (start === undefined || start.seq < 2) return undefined;
  const prev = factAt(src, start.seq - 1);
  if (prev === undefined || prev.at <= at || prev.kind === 'ClockStepped') return undefined;
  return { seq: start.seq, at: start.at, before: prev.at };
}

function readingOf(pass: Reading['pass'], a: HoldersAnswer, asOf: number, step?: number, merged?: number): Reading {
  return { pass, ...(step !== undefined ? { step } : {}), ...(merged !== undefined ? { merged } : {}), asOf, holders: a.holders, ...(a.stopped ? { stopped: a.stopped } : {}), ...(a.crash ? { crash: a.crash } : {}) };
}

/** How many steps a ClockStepped stands for, when it is a merged one (waiting-facts keepStep); else undefined. */
function mergedOf(step: StoredFact): number | undefined {
  const m = (step.payload as { merged?: unknown } | null)?.merged;
  return typeof m === 'number' && m >= 2 ? m : undefined;
}

/**
 * The last seq of a merged step's pass where the steps merged into it may lie: its `span` (the facts
 * journaled after it in the same write), or, without one, the whole pass (`last`).
 */
function mergedSpanEnd(step: StoredFact, last: number): number {
  const span = (step.payload as { span?: unknown } | null)?.span;
  return typeof span === 'number' && span >= 0 ? Math.min(last, step.seq + span) : last;
}

/**
 * The readings of a merged step's pass (aud31, review30 M1): the clock passed `at` once per step the
 * merged one stands for, but where each of those passes began is gone (the steps merged away lay among
 * the facts of its span, and the wall times go back there), so the place in the pass where each met
 * `at` is unknown. Every answer the disk had anywhere in the span may be one of them: each distinct
 * one is a reading (in journal order), and past the span (wall times rise again) the one the search
 * finds. A false single answer is never given: the answer is agreed only if all of them agree.
 */
function mergedReadings(src: AuditSources, asked: DiskArg, at: string, step: StoredFact): Reading[] {
  const merged = mergedOf(step);
  const first = firstOfPass(src, step);
  const last = lastOfPass(src, step);
  const spanEnd = mergedSpanEnd(step, last);
  const changes = [
    ...queryFacts(src, { disk: namesOf(asked), kinds: [...HOLD_KINDS], afterSeq: first - 1, untilSeq: spanEnd }),
    ...queryFacts(src, { kinds: [...RUN_KINDS], afterSeq: first - 1, untilSeq: spanEnd }),
  ];
  const places: AsOf[] = [{ seq: first - 1, label: factAt(src, first - 1)?.at ?? step.at }, ...changes.map((f) => ({ seq: f.seq, label: f.at }))];
  if (spanEnd < last) {
    const past = searchPass(src, spanEnd + 1, last, at);
    if (past.seq > spanEnd) places.push(past);
  }
  places.sort((a, b) => a.seq - b.seq);
  const out: Reading[] = [];
  const seen = new Set<string>();
  for (const asOf of places) {
    const r = readingOf('after', holdersAnswerAt(src, asked, at, asOf), asOf.seq, step.seq, merged);
    const k = `${r.holders.map((h) => `${h.resource}\u0000${h.owner.uuid}\u0000${h.mode}`).sort().join('\n')}|${r.stopped ? 's' : ''}${r.crash ? 'c' : ''}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(r);
  }
  return out;
}

function stepAt(f: StoredFact): ClockStepAt {
  const p = f.payload as { from: string; to: string; seenBy?: string };
  const merged = mergedOf(f);
  return { seq: f.seq, from: p.from, to: p.to, seenBy: p.seenBy ?? 'monotonic', ...(merged !== undefined ? { merged } : {}) };
}

/** The ClockStepped facts whose window [to, from) holds `at`, in journal order. */
export function stepsOver(src: AuditSources, at: string): StoredFact[] {
  return queryFacts(src, { kinds: ['ClockStepped'], since: at }).filter((f) => {
    const p = f.payload as { from?: unknown; to?: unknown } | null;
    return typeof p?.from === 'string' && typeof p.to === 'string' && p.to <= at && at < p.from;
  });
}

/** The ClockStepped facts whose window [to, from) meets [since, until] (either end open), in journal order. */
export function stepsWithin(src: AuditSources, since?: string, until?: string): StoredFact[] {
  return queryFacts(src, { kinds: ['ClockStepped'], ...(since !== undefined ? { since } : {}) }).filter((f) => {
    const p = f.payload as { from?: unknown; to?: unknown } | null;
    return typeof p?.from === 'string' && typeof p.to === 'string' && (since === undefined || p.from > since) && (until === undefined || p.to <= until);
  });
}

/**
 * The facts a window [since, until] holds by the clock's reading and not by the labels: a step's window
 * that `until` falls in has a pass after the step whose facts are labelled later than `until` (the
 * time the clock had reached) though the clock showed a time in the window when they were made. Their
 * seq ranges, one per such step (decision 0029).
 */
export function passRanges(src: AuditSources, since: string | undefined, until: string): Array<{ afterSeq: number; untilSeq: number }> {
  const out: Array<{ afterSeq: number; untilSeq: number }> = [];
  for (const step of stepsOver(src, until)) {
    if (mergedOf(step) !== undefined) {
      // A merged step (aud31): its span's wall times go back anywhere, so no search there: each of its
      // facts whose own reading is in [since, until] (the span is bounded by the holdings kept); past
      // the span they rise again, and the searches find the range as for any step.
      const first = firstOfPass(src, step);
      const last = lastOfPass(src, step);
      const spanEnd = mergedSpanEnd(step, last);
      for (const f of queryFacts(src, { afterSeq: first - 1, untilSeq: spanEnd })) {
        const w = wallOf(f);
        if (w > until || (since !== undefined && w < since)) continue;
        const prev = out[out.length - 1];
        if (prev !== undefined && prev.untilSeq === f.seq - 1) prev.untilSeq = f.seq;
        else out.push({ afterSeq: f.seq - 1, untilSeq: f.seq });
      }
      if (spanEnd < last) {
        const end = searchPass(src, spanEnd + 1, last, until).seq;
        const before = since === undefined ? undefined : new Date(Date.parse(since) - 1).toISOString();
        const start = before === undefined ? spanEnd : Math.max(spanEnd, searchPass(src, spanEnd + 1, last, before).seq);
        if (end > start) out.push({ afterSeq: start, untilSeq: end });
      }
      continue;
    }
    const end = secondPass(src, step, until).seq;
    const before = since === undefined ? undefined : new Date(Date.parse(since) - 1).toISOString();
    const start = before === undefined ? firstOfPass(src, step) - 1 : Math.max(firstOfPass(src, step) - 1, secondPass(src, step, before).seq);
    if (end > start) out.push({ afterSeq: start, untilSeq: end });
  }
  return out;
}

function firstOfPass(src: AuditSources, step: StoredFact): number {
  return (step.payload as { seenBy?: unknown } | null)?.seenBy === 'start' && factAt(src, step.seq - 1)?.kind === 'DaemonStarted' ? step.seq - 1 : step.seq;
}

/** The last fact labelled at or before `at` (0: none). */
function lastSeqAt(src: AuditSources, at: string): number {
  return newestOf(src, { until: at })?.seq ?? 0;
}

/** The wall clock's reading when a fact was made: its wallAt after a step back, else its time. A ClockStepped's is the step's `to`. */
export function wallOf(f: StoredFact): string {
  const p = f.payload as { wallAt?: unknown; to?: unknown } | null;
  if (f.kind === 'ClockStepped' && typeof p?.to === 'string') return p.to;
  return typeof p?.wallAt === 'string' ? p.wallAt : f.at;
}

/**
 * Where `at` falls in the pass after the step `step`: after the last fact of that pass whose wall time
 * is at or before it. The pass runs from the step (a start's step: from its DaemonStarted just before
 * it) to the next step; wall times are nondecreasing along it, so a binary search over seq finds it
 * with a few point reads, however long the pass.
 */
export function secondPass(src: AuditSources, step: StoredFact, at: string): AsOf {
  const first = firstOfPass(src, step);
  const found = searchPass(src, first, lastOfPass(src, step), at);
  return found.seq < first ? { seq: found.seq, label: factAt(src, found.seq)?.at ?? step.at } : found;
}

/** After the last fact of the pass after `step` (a merged step's `--at now`: the present is the pass's end). */
function passEnd(src: AuditSources, step: StoredFact): AsOf {
  const seq = lastOfPass(src, step);
  return { seq, label: factAt(src, seq)?.at ?? step.at };
}

/**
 * The last fact of the pass after `step`: before the next step's pass, or the journal's last. The next
 * step is found by seq, not by label: while the clock is behind the floor every step is labelled at the
 * floor, and a lookup of the 64 steps from `step.at` missed the next one past the 64th (review31a HIGH 4:
 * 66 steps on one label read the 65th pass to the journal's end, and --at answered alpha agreed, falsely).
 */
function lastOfPass(src: AuditSources, step: StoredFact): number {
  // The label lookup first (the rare kinds' index, however long the journal); only when its 64 are all
  // at or before `step` is the seq range read (it scans the facts after the step to the next one).
  const byLabel = queryFacts(src, { kinds: ['ClockStepped'], since: step.at, limit: 64 });
  const next = byLabel.find((f) => f.seq > step.seq) ?? (byLabel.length < 64 ? undefined : queryFacts(src, { kinds: ['ClockStepped'], afterSeq: step.seq, limit: 1 })[0]);
  return next !== undefined ? firstOfPass(src, next) - 1 : (newestOf(src, {})?.seq ?? step.seq);
}

/** The last fact in seq [first, last] whose wall time is at or before `at` (wall times rise along it); first - 1 if none. */
function searchPass(src: AuditSources, first: number, last: number, at: string): AsOf {
  let lo = first;
  let hi = last;
  let found = first - 1;
  while (lo <= hi) {
    const mid = Math.floor((lo + hi) / 2);
    const f = factAt(src, mid);
    if (f !== undefined && wallOf(f) <= at) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  const f = factAt(src, found);
  return { seq: found, label: f?.at ?? '' };
}

/** holdersAnswer for one pass: at `at` by the time labels, or, with `asOf`, after that fact on the journal's order. */
function holdersAnswerAt(src: AuditSources, asked: DiskArg, moment: string, asOf?: AsOf): HoldersAnswer {
  const disk = shownOf(asked);
  const names = namesOf(asked);
  // Journal queries go by the label; comparisons with other hosts' times (a LeaseLost's evidence) by the moment asked.
  const at = asOf?.label ?? moment;
  const ceil = asOf?.seq;
  const after = (f: StoredFact) => (ceil !== undefined ? ceil >= f.seq : at > f.at);
  const b = runBounds(src, at, asOf);
  const floor = b.start?.seq ?? 0;
  const adoptedBy = (h: HolderAt) => b.next !== undefined && adoptedAt(src, names, h, b.next);
  if (b.stopped !== undefined) {
    const atStop = holdsAt(src, names, b.stopped.at, floor, b.stopped.seq, disk);
    return { disk, at: moment, holders: atStop.filter(adoptedBy), stopped: { at: b.stopped.at, ...(b.next ? { restarted: b.next.at } : {}) } };
  }
  // The last run crashed and no start followed yet (the daemon is gone now): after its last fact the
  // journal cannot say whether a hold lasted (the kernel dropped it at the death, or systemd's
  // descriptor store kept it until the next start adopts it). Say so; never name them as holders.
  if (b.next === undefined && src.daemonGone !== undefined) {
    const end = withCarried(src, { limit: 1, newest: true })[0];
    if (end !== undefined && end.kind !== 'DaemonStopped' && after(end)) {
      const before = src.daemonGone.checkedAt;
      const holds = holdsAt(src, names, end.at, floor, end.seq, disk).map((h) => ({ ...h, before }));
      if (holds.length > 0) return { disk, at: moment, holders: [], crash: { after: end.at, before, holds, notRestarted: true } };
    }
  }
  const last = b.lastBeforeNext;
  if (b.next !== undefined && last !== undefined && after(last) && last.kind !== 'DaemonStopped') {
    const atCrash = holdsAt(src, names, last.at, floor, last.seq, disk);
    const holders: HolderAt[] = [];
    const ended: Array<HolderAt & { before: string }> = [];
    for (const h of atCrash) {
      if (adoptedBy(h)) {
        holders.push(h);
        continue;
      }
      // A LeaseLost at the restart whose other party took the disk before `at` proves the hold over by then.
      const lost = nextFactOf(src, names, h, b.next.seq - 1);
      const evidence = lost?.kind === 'LeaseLost' ? evidenceAt(lost, last.at) : undefined;
      const before = evidence !== undefined && evidence < b.next.at ? evidence : b.next.at;
      if (ceil !== undefined || before > at) ended.push({ ...h, before });
    }
    return { disk, at: moment, holders, ...(ended.length > 0 ? { crash: { after: last.at, before: b.next.at, holds: ended } } : {}) };
  }
  // Inside a run: a hold lost while running ended by its LeaseLost's evidence, which may precede `at`.
  const holders = holdsAt(src, names, at, floor, ceil, disk).filter((h) => {
    const f = nextFactOf(src, names, h, h.seq);
    if (f === undefined || f.kind !== 'LeaseLost') return true;
    const evidence = evidenceAt(f, h.since);
    return evidence === undefined || evidence > moment;
  });
  return { disk, at: moment, holders };
}

/**
 * When a LeaseLost shows the lock was gone: the other party's `since` (it took the disk then, so our
 * lock had ended), when that lies after `after` and before the LeaseLost itself.
 */
function evidenceAt(f: StoredFact, after: string): string | undefined {
  const since = (f.payload as { holder?: { since?: unknown } } | null)?.holder?.since;
  if (typeof since !== 'string' || !isIsoMsUtc(since)) return undefined;
  return since > after && since < f.at ? since : undefined;
}

/** The first hold fact of the hold's (resource, VM) after seq `after`. */
function nextFactOf(src: AuditSources, disk: string | readonly string[], h: HolderAt, after: number): StoredFact | undefined {
  const at = factAt(src, after)?.at;
  const q: FactQuery = { disk, resource: h.resource, owner: h.owner.uuid, kinds: [...HOLD_KINDS], ...(at !== undefined ? { since: at } : {}) };
  return queryFacts(src, { ...q, limit: 8 }).find((f) => f.seq > after);
}

/** Did the start `next` adopt this hold (the first fact of its key after the start continues it)? */
function adoptedAt(src: AuditSources, disk: string | readonly string[], h: HolderAt, next: StoredFact): boolean {
  const f = nextFactOf(src, disk, h, next.seq);
  return f !== undefined && continuesHold(f);
}

/**
 * The holds of `disk` at `at` within one run: per (resource, VM) the newest hold fact at or before
 * `at` (and at or before seq `ceil`) decides. The walk goes back in time over the disk's facts and
 * stops at the run's DaemonStarted (`floor`: every hold alive later was re-taken or adopted after
 * it) or at the first exclusive grant (nobody else held the disk across it).
 */
function holdsAt(src: AuditSources, disk: string | readonly string[], at: string, floor: number, ceil?: number, shown?: string): HolderAt[] {
  const q: FactQuery = { disk, kinds: [...HOLD_KINDS], until: at, ...(ceil !== undefined ? { untilSeq: ceil } : {}) };
  const seen = new Map<string, Run | 'closed'>();
  const walk = newestFirst(sourcesFor(src, q));
  try {
    for (const f of walk) {
      if (f.seq < floor) break;
      if (f.resource == null || f.owner == null) continue;
      const key = `${f.resource}\u0000${f.owner}`;
      const open = isOpen(f);
      const run = seen.get(key);
      if (run === undefined) seen.set(key, open ? { latest: f, start: f, done: !continuesHold(f) } : 'closed');
      else if (run !== 'closed' && !run.done) {
        if (open) run.start = f;
        if (!open || !continuesHold(f)) run.done = true;
      }
      if (open && modeOf(f) === 'exclusive') break;
    }
  } finally {
    walk.return(undefined);
  }
  const out: HolderAt[] = [];
  for (const run of seen.values()) {
    if (run === 'closed') continue;
    if (!run.done) findStart(src, run);
    const p = run.latest.payload as LockPayload;
    out.push({
      owner: p.owner ?? { uuid: run.latest.owner! },
      host: run.latest.host,
      mode: p.mode,
      generation: typeof p.generation === 'number' ? p.generation : null,
      since: run.start.at,
      ...(typeof (run.start.payload as { wallAt?: unknown } | null)?.wallAt === 'string' ? { sinceClock: (run.start.payload as { wallAt: string }).wallAt } : {}),
      resource: run.latest.resource!,
      seq: run.latest.seq,
      via: run.latest.kind,
      ...(shown !== undefined && run.latest.disk != null && run.latest.disk !== shown ? { as: run.latest.disk } : {}),
    });
  }
  return out.sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : a.seq - b.seq));
}

/** Iterators newest first over the live journal and the archive, or, without it, the carried facts. */
function sourcesFor(src: AuditSources, q: FactQuery): Array<Iterator<StoredFact>> {
  const iterators: Array<Iterator<StoredFact>> = [src.live.iterate(q, { descending: true })];
  if (src.archive !== undefined) iterators.push(src.archive.iterate(q, { descending: true }));
  // Without the archive, the facts compaction carried (holds still open at the cut) stand in for it.
  else iterators.push(src.live.carried(q).sort(newer).reverse()[Symbol.iterator]());
  return iterators;
}

/** Walks the VM's own facts back from an adoption to the grant or re-take that began the hold. */
function findStart(src: AuditSources, run: Run): void {
  const walk = newestFirst(sourcesFor(src, { owner: run.latest.owner!, kinds: [...HOLD_KINDS], until: run.start.at }));
  try {
    for (const f of walk) {
      if (f.resource !== run.latest.resource || f.owner !== run.latest.owner || f.seq >= run.start.seq) continue;
      if (isClose(f)) break;
      run.start = f;
      if (!continuesHold(f)) break;
    }
  } finally {
    walk.return(undefined);
  }
  run.done = true;
}

/** The other party of a conflict: who held the disk when this owner was refused or lost it. */
export function otherParty(f: StoredFact): HolderInfo | undefined {
  if (f.kind !== 'LockRefused' && f.kind !== 'LeaseLost') return undefined;
  return (f.payload as { holder?: HolderInfo } | null)?.holder;
}

export interface Interval {
  readonly owner: Owner;
  readonly mode: Mode;
  readonly from: string;
  /** undefined: still held at the end of the window. After a crash: the last moment it surely held. */
  readonly to?: string;
  readonly generation: number | null;
  /** How the hold ended (absent while held): released, lost, the daemon stopped, or it crashed. */
  readonly end?: 'released' | 'lost' | 'stopped' | 'crash';
  /** end = crash: the crash came after `to` and before this (the restart, or the other party's grant). */
  readonly crashBefore?: string;
}

export interface TimelineEvent {
  readonly at: string;
  readonly kind: 'LockRefused' | 'LeaseLost';
  readonly owner: Owner;
  readonly other?: HolderInfo;
}

export interface Timeline {
  readonly disk: string;
  readonly from: string;
  readonly to: string;
  readonly intervals: Interval[];
  readonly events: TimelineEvent[];
  /** Holdings whose loss / re-take facts in the window were coalesced: their intervals there are not the whole story (aud31). */
  readonly incomplete?: readonly CoalescedAt[];
}

interface OpenHold {
  owner: Owner;
  mode: Mode;
  from: string;
  generation: number | null;
  /** Set at a stop or a crash: the hold ends there unless the next start adopts it. */
  pending?: { end: 'stopped' | 'crash'; at: string; before?: string; started?: boolean };
}

/**
 * The disk's holders over [from, to]: who held it at `from`, then every change until `to`, folded in
 * journal order with the daemon's starts and stops: a stop ends every hold at the DaemonStopped, a
 * start not preceded by a stop ends them at the crash (after the run's last fact, before the start),
 * unless the start adopted the lock (continuesHold).
 */
export function timeline(src: AuditSources, asked: DiskArg, from: string, to: string): Timeline {
  const disk = shownOf(asked);
  const names = namesOf(asked);
  const intervals: Interval[] = [];
  const open = new Map<string, OpenHold>();
  for (const h of holdersAt(src, asked, from)) {
    open.set(`${h.resource}\u0000${h.owner.uuid}`, { owner: h.owner, mode: h.mode, from: h.since, generation: h.generation });
  }
  const close = (key: string, cur: OpenHold, at: string, end: Interval['end']) => {
    open.delete(key);
    if (cur.pending !== undefined) {
      intervals.push({ owner: cur.owner, mode: cur.mode, from: cur.from, generation: cur.generation, to: cur.pending.at, end: cur.pending.end, ...(cur.pending.before ? { crashBefore: cur.pending.before } : {}) });
    } else intervals.push({ owner: cur.owner, mode: cur.mode, from: cur.from, generation: cur.generation, to: at, ...(end ? { end } : {}) });
  };
  const events: TimelineEvent[] = [];
  const facts = dedup(
    [...withCarried(src, { disk: names, kinds: [...DISK_KINDS, ...ADOPT_KINDS], since: from, until: to }), ...withCarried(src, { kinds: [...RUN_KINDS], since: from, until: to })].sort(compareFacts),
  );
  let stoppedSinceStart = false;
  for (const f of facts) {
    if (f.kind === 'DaemonStopped' || f.kind === 'DaemonStarted') {
      if (f.at === from) continue;
      // Holds a start has already passed without adopting or re-taking them ended at their boundary.
      for (const [key, cur] of [...open]) if (cur.pending?.started === true) close(key, cur, f.at, undefined);
      if (f.kind === 'DaemonStopped') {
        stoppedSinceStart = true;
        for (const cur of open.values()) cur.pending ??= { end: 'stopped', at: f.at };
        continue;
      }
      if (!stoppedSinceStart) {
        const last = factAt(src, f.seq - 1);
        for (const cur of open.values()) cur.pending ??= { end: 'crash', at: last?.at ?? f.at, before: f.at };
      }
      for (const cur of open.values()) if (cur.pending !== undefined) cur.pending.started = true;
      stoppedSinceStart = false;
      continue;
    }
    if (f.resource == null || f.owner == null) continue;
    // holdersAt(from) has folded the grants and releases at exactly `from`; their events still show.
    if (f.at === from && f.kind !== 'LockRefused' && f.kind !== 'LeaseLost') continue;
    const key = `${f.resource}\u0000${f.owner}`;
    const p = f.payload as { owner?: Owner; mode?: Mode; generation?: number; holder?: HolderInfo };
    const owner = p.owner ?? { uuid: f.owner };
    const cur = open.get(key);
    if (isOpen(f)) {
      if (cur !== undefined && continuesHold(f)) {
        delete cur.pending;
        if (typeof p.generation === 'number') cur.generation = p.generation;
        continue;
      }
      // A grant, or a re-take after a stop, a crash or a loss: a new hold.
      if (cur !== undefined) close(key, cur, f.at, undefined);
      open.set(key, { owner, mode: p.mode ?? 'exclusive', from: f.at, generation: typeof p.generation === 'number' ? p.generation : null });
      continue;
    }
    switch (f.kind) {
      case 'LockReleased':
      case 'LeaseLost': {
        if (cur !== undefined && f.at !== from) {
          if (f.kind === 'LeaseLost' && cur.pending?.end === 'crash') {
            // The other party's grant bounds the crash sooner than the restart.
            const ev = evidenceAt(f, cur.pending.at);
            if (ev !== undefined && ev < (cur.pending.before ?? f.at)) cur.pending.before = ev;
          }
          const ev = f.kind === 'LeaseLost' && cur.pending === undefined ? evidenceAt(f, cur.from) : undefined;
          close(key, cur, ev ?? f.at, f.kind === 'LeaseLost' ? 'lost' : 'released');
        }
        if (f.kind === 'LeaseLost') events.push({ at: f.at, kind: 'LeaseLost', owner, ...(p.holder ? { other: p.holder } : {}) });
        break;
      }
      case 'LockRefused':
        events.push({ at: f.at, kind: 'LockRefused', owner, ...(p.holder ? { other: p.holder } : {}) });
        break;
      default:
        break;
    }
  }
  for (const [key, cur] of [...open]) {
    if (cur.pending !== undefined) close(key, cur, cur.pending.at, undefined);
    else intervals.push({ owner: cur.owner, mode: cur.mode, from: cur.from, generation: cur.generation });
  }
  intervals.sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  const incomplete = coalescedOver(src, names, from, to);
  return { disk, from, to, intervals, events, ...(incomplete.length > 0 ? { incomplete } : {}) };
}
