// The audit questions, answered from the journal (and its archive): who held a disk at a moment,
// a disk's or a VM's history, conflicts, a disk's holders over time. The journal stores generic rows;
// what the lock kinds mean is known here, on the engine's side of the port.
import type { FactKind, FactPayloads } from '../engine/facts.js';
import type { HolderInfo, Mode, Owner } from '../engine/types.js';
import type { FactQuery, Journal, StoredFact } from '../journal/journal.js';

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
  readonly resource: string;
  /** The fact that last confirmed the hold (a LockAcquired or a Reacquired). */
  readonly seq: number;
  readonly via: string;
}

type LockPayload = FactPayloads['LockAcquired'] | FactPayloads['Reacquired'];

/** (at, seq) order, the order every audit answer is given in. */
export function compareFacts(a: StoredFact, b: StoredFact): number {
  return a.at < b.at ? -1 : a.at > b.at ? 1 : a.seq - b.seq;
}

/**
 * Facts matching `q` from every source, oldest first. With `limit`, the newest `limit` of them:
 * each source gives its newest `limit` and the merge keeps the newest overall.
 */
export function queryFacts(src: AuditSources, q: FactQuery): StoredFact[] {
  const fromLive = src.live.query(q);
  if (src.archive === undefined) return fromLive;
  const all = [...src.archive.query(q), ...fromLive].sort(compareFacts);
  if (q.limit === undefined) return all;
  return q.newest === true ? all.slice(-q.limit) : all.slice(0, q.limit);
}

/** Newest first, lazily, across sources. */
function* newestFirst(iterators: Array<Iterator<StoredFact>>): Generator<StoredFact> {
  // An unfinished journal iterator keeps its statement (and the connection) busy: close them all.
  try {
    yield* merged(iterators);
  } finally {
    for (const it of iterators) it.return?.();
  }
}

function* merged(iterators: Array<Iterator<StoredFact>>): Generator<StoredFact> {
  const heads = iterators.map((it) => it.next());
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i]!;
      if (h.done === true) continue;
      if (best < 0 || compareFacts(h.value, (heads[best] as IteratorYieldResult<StoredFact>).value) > 0) best = i;
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

interface Run {
  latest: StoredFact;
  start: StoredFact;
  /** The start is found: a LockAcquired, or a close before the earliest re-take. */
  done: boolean;
}

/**
 * Who held `disk` at `at`: per (resource, owner), the newest lock fact at or before `at` decides;
 * a grant (LockAcquired, Reacquired) means held, a release or loss means not.
 *
 * The walk goes back in time over the disk's facts and stops as soon as no older fact can add a
 * holder: at the first exclusive grant (nobody else held the disk across it), or on passing the
 * newest daemon start before `at` (a starting daemon journals a Reacquired or a LeaseLost for every
 * lock it held, so every hold alive then shows up after it). A hold found by its re-take then gets
 * its start (`since`) from the VM's own facts, which are few between a grant and its re-takes,
 * where the disk's may be thousands (a shared disk's other VMs).
 */
export function holdersAt(src: AuditSources, disk: string, at: string): HolderAt[] {
  const q: FactQuery = { disk, kinds: [...LOCK_KINDS], until: at };
  const restartSeq = newestRestart(src, at);
  const seen = new Map<string, Run | 'closed'>();
  const walk = newestFirst(sourcesFor(src, q));
  try {
    for (const f of walk) {
      if (restartSeq !== undefined && f.seq < restartSeq) break;
      if (f.resource == null || f.owner == null) continue;
      const key = `${f.resource}\u0000${f.owner}`;
      const open = (OPEN_KINDS as readonly string[]).includes(f.kind);
      const run = seen.get(key);
      if (run === undefined) seen.set(key, open ? { latest: f, start: f, done: f.kind === 'LockAcquired' } : 'closed');
      else if (run !== 'closed' && !run.done) {
        if (open) run.start = f;
        if (!open || f.kind === 'LockAcquired') run.done = true;
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
      resource: run.latest.resource!,
      seq: run.latest.seq,
      via: run.latest.kind,
    });
  }
  return out.sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : a.seq - b.seq));
}

/** Iterators newest first over the live journal and the archive, or, without it, the carried facts. */
function sourcesFor(src: AuditSources, q: FactQuery): Array<Iterator<StoredFact>> {
  const iterators: Array<Iterator<StoredFact>> = [src.live.iterate(q, { descending: true })];
  if (src.archive !== undefined) iterators.push(src.archive.iterate(q, { descending: true }));
  // Without the archive, the facts compaction carried (holds still open at the cut) stand in for it.
  else iterators.push(src.live.carried(q).sort(compareFacts).reverse()[Symbol.iterator]());
  return iterators;
}

/** The seq of the newest DaemonStarted at or before `at`, where one is journaled. */
function newestRestart(src: AuditSources, at: string): number | undefined {
  const q: FactQuery = { kinds: ['DaemonStarted'], until: at, limit: 1, newest: true };
  const found = src.live.query(q)[0] ?? src.archive?.query(q)[0];
  return found?.seq;
}

/** Walks the VM's own facts back from the run's earliest re-take to the grant that began it. */
function findStart(src: AuditSources, run: Run): void {
  const walk = newestFirst(sourcesFor(src, { owner: run.latest.owner!, kinds: [...LOCK_KINDS], until: run.start.at }));
  try {
    for (const f of walk) {
      if (f.resource !== run.latest.resource || f.owner !== run.latest.owner || f.seq >= run.start.seq) continue;
      if ((CLOSE_KINDS as readonly string[]).includes(f.kind)) break;
      run.start = f;
      if (f.kind === 'LockAcquired') break;
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
  /** undefined: still held at the end of the window. */
  readonly to?: string;
  readonly generation: number | null;
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
}

/** The disk's holders over [from, to]: who held it at `from`, then every change until `to`. */
export function timeline(src: AuditSources, disk: string, from: string, to: string): Timeline {
  const intervals: Interval[] = [];
  const open = new Map<string, { owner: Owner; mode: Mode; from: string; generation: number | null }>();
  for (const h of holdersAt(src, disk, from)) {
    open.set(`${h.resource}\u0000${h.owner.uuid}`, { owner: h.owner, mode: h.mode, from: h.since, generation: h.generation });
  }
  const events: TimelineEvent[] = [];
  const facts = queryFacts(src, { disk, kinds: [...DISK_KINDS], since: from, until: to });
  for (const f of facts) {
    if (f.resource == null || f.owner == null) continue;
    // holdersAt(from) has folded the grants and releases at exactly `from`; their events still show.
    if (f.at === from && f.kind !== 'LockRefused' && f.kind !== 'LeaseLost') continue;
    const key = `${f.resource}\u0000${f.owner}`;
    const p = f.payload as { owner?: Owner; mode?: Mode; generation?: number; holder?: HolderInfo };
    const owner = p.owner ?? { uuid: f.owner };
    switch (f.kind) {
      case 'LockAcquired':
      case 'Reacquired': {
        const cur = open.get(key);
        // A re-take continues the hold it restores; a grant always starts a new one.
        if (cur !== undefined && f.kind === 'Reacquired') {
          if (typeof p.generation === 'number') cur.generation = p.generation;
          break;
        }
        if (cur !== undefined) intervals.push({ ...cur, to: f.at });
        open.set(key, { owner, mode: p.mode ?? 'exclusive', from: f.at, generation: typeof p.generation === 'number' ? p.generation : null });
        break;
      }
      case 'LockReleased':
      case 'LeaseLost': {
        const cur = f.at === from ? undefined : open.get(key);
        if (cur !== undefined) intervals.push({ ...cur, to: f.at });
        open.delete(key);
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
  for (const cur of open.values()) intervals.push({ ...cur });
  intervals.sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  return { disk, from, to, intervals, events };
}
