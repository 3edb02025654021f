// The audit questions across every host's published history. Each (host, journal) chain is a journal
// of its own in the read cache (cluster-cache.ts), so the one-journal answers of audit-query.ts (the
// hold rules: crash windows, stops, LeaseLost evidence, adoption) run on each chain unchanged; this
// module picks the chain of each host that a moment falls in, tells it whether that host's daemon is
// gone, and merges the hosts' answers.
import type { StoredFact, FactQuery, Journal } from '../journal/journal.js';
import { coalescedOver, holdersAnswer, namesOf, queryFacts, shownOf, timeline, type AuditSources, type CoalescedAt, type DiskArg, type HolderAt, type HoldersAnswer, type Interval, type TimelineEvent } from './audit-query.js';
import type { HostChange } from '../journal/host-changed.js';
import type { CachedChain } from './cluster-cache.js';
import { CLAIM_KINDS, claimsOf, hostGaps, overlaps, type Claim, type HostGap, type Overlap, type RunEvent } from './cluster-overlaps.js';

export interface ChainSource {
  readonly chain: CachedChain;
  readonly journal: Journal;
  /**
   * The journal went on under another host id from `changed.seq` (its state directory started under a
   * new host_id; host-changed.ts): its facts from `changed.at` on are not published, so what the host
   * held from then on is unknown, never "still held".
   */
  readonly changed?: HostChange;
}

/** One host's published history: its journals (a new one after a lost state directory), oldest first. */
export interface HostHistory {
  readonly host: string;
  /** Its daemon runs now (its host file in the lockspace is locked); undefined: unknown. */
  readonly alive: boolean | undefined;
  readonly chains: readonly ChainSource[];
}

export interface ClusterSources {
  readonly hosts: readonly HostHistory[];
  /** When the question was asked: the end of a dead host's "not restarted" window. */
  readonly now: string;
}

/**
 * Runs one question with each chain read in one read transaction: SQLite then takes its WAL read lock
 * and checks the file for changes once per chain instead of once per statement (~8 of ~25 us per
 * index seek; a question runs ~10-20 statements per chain), and every statement of the question sees
 * the same state of the chain. Ended before it returns (an open one would hold back the next
 * catch-up's checkpoint); a question asked inside another one's snapshot runs in that.
 */
export function inSnapshot<T>(cs: ClusterSources, question: () => T): T {
  const begun: Journal[] = [];
  try {
    for (const h of cs.hosts) {
      for (const c of h.chains) {
        if (c.journal.db.inTransaction) continue;
        c.journal.db.exec('BEGIN');
        begun.push(c.journal);
      }
    }
    return question();
  } finally {
    for (const j of begun) if (j.db.open && j.db.inTransaction) j.db.exec('COMMIT');
  }
}

/**
 * The one-journal sources for host `h` at moment `at`: the newest of its journals that had begun by
 * then. When a later journal exists, the earlier one's daemon is known to be gone (the host restarted
 * with a new state directory); when this is the newest and the host's daemon is not running, it is
 * gone now. Either way the hold rules then say "crashed, not restarted" after its last fact.
 */
export function sourcesAt(h: HostHistory, at: string, now: string): (AuditSources & { readonly journal: string }) | undefined {
  let i = -1;
  for (let k = 0; k < h.chains.length; k++) if ((h.chains[k]!.chain.firstAt ?? '') <= at) i = k;
  if (i < 0) return undefined;
  const c = h.chains[i]!;
  const later = h.chains[i + 1];
  const journal = c.chain.journal;
  if (later !== undefined) return { live: c.journal, journal, daemonGone: { pid: 0, checkedAt: later.chain.firstAt ?? now } };
  if (h.alive === false) return { live: c.journal, journal, daemonGone: { pid: 0, checkedAt: now } };
  return { live: c.journal, journal };
}

export interface ClusterHolders {
  readonly disk: string;
  readonly at: string;
  /** Every host's holders, by since; `journal`: the host's journal the hold is read from (its seq counts there). */
  readonly holders: Array<HolderAt & { readonly journal: string }>;
  /**
   * Each host's own answer (its stop or crash notes), for the hosts that had begun by then. `changed`:
   * by then its journal went on under another host id, unpublished: its holds are unknown (`unknown`
   * lists those its published history still had, not counted in `holders`).
   */
  readonly hosts: ReadonlyArray<{ readonly host: string; readonly journal?: string; readonly answer: HoldersAnswer; readonly changed?: HostChange; readonly unknown?: readonly HolderAt[] }>;
}

/** Who held `disk` at `at`, on any host. */
export function clusterHolders(cs: ClusterSources, disk: DiskArg, at: string, opts: { readonly now?: boolean } = {}): ClusterHolders {
  return inSnapshot(cs, () => holdersOf(cs, disk, at, opts));
}

function holdersOf(cs: ClusterSources, asked: DiskArg, at: string, opts: { readonly now?: boolean }): ClusterHolders {
  const disk = shownOf(asked);
  const hosts: Array<{ host: string; journal: string; answer: HoldersAnswer; changed?: HostChange; unknown?: HolderAt[] }> = [];
  for (const h of cs.hosts) {
    const src = sourcesAt(h, at, cs.now);
    if (src === undefined) continue;
    const answer = holdersAnswer(src, asked, at, opts);
    const changed = h.chains.find((c) => c.chain.journal === src.journal)?.changed;
    if (changed !== undefined && changed.at <= at) hosts.push({ host: h.host, journal: src.journal, answer: { ...answer, holders: [] }, changed, unknown: answer.holders });
    else hosts.push({ host: h.host, journal: src.journal, answer });
  }
  const holders = hosts.flatMap((x) => x.answer.holders.map((h) => ({ ...h, journal: x.journal }))).sort((a, b) => (a.since < b.since ? -1 : a.since > b.since ? 1 : a.host < b.host ? -1 : 1));
  return { disk, at, holders, hosts };
}

/** Cluster order for facts of different hosts: time, then host, then the host's seq. */
export function clusterOrder(a: StoredFact, b: StoredFact): number {
  return a.at < b.at ? -1 : a.at > b.at ? 1 : a.host < b.host ? -1 : a.host > b.host ? 1 : a.seq - b.seq;
}

/** Facts matching `q` from every chain; with `limit`, the newest `limit` overall (oldest first). */
/** A fact of the cluster's history: `journal` is the id of the host's journal it is from (seq counts within it). */
export type ClusterFact = StoredFact & { readonly journal: string };

export function clusterFacts(cs: ClusterSources, q: FactQuery, limit: number | undefined): ClusterFact[] {
  return inSnapshot(cs, () => factsOf(cs, q, limit));
}

function factsOf(cs: ClusterSources, q: FactQuery, limit: number | undefined): ClusterFact[] {
  const all: ClusterFact[] = [];
  for (const h of cs.hosts) {
    for (const c of h.chains) {
      // Each fact is a fresh object from the query: tagged in place, not copied (a copy per fact was a tenth of the question).
      for (const f of withNames(c.journal, queryFacts({ live: c.journal }, { ...q, ...(limit !== undefined ? { limit, newest: true } : {}) }))) {
        (f as { journal?: string }).journal = c.chain.journal;
        all.push(f as ClusterFact);
      }
    }
  }
  all.sort(clusterOrder);
  return limit === undefined ? all : all.slice(-limit);
}

/** Facts journaled with the uuid alone (a release by uuid) get the VM's name from the chain's owners table. */
export function withNames(j: Journal, facts: StoredFact[]): StoredFact[] {
  const names = new Map<string, string | undefined>();
  return facts.map((f) => {
    if (f.owner == null || f.ownerName != null) return f;
    if (!names.has(f.owner)) names.set(f.owner, nameOf(j, f.owner));
    const name = names.get(f.owner);
    return name === undefined ? f : { ...f, ownerName: name };
  });
}

function nameOf(j: Journal, uuid: string): string | undefined {
  return j.db.prepare(`SELECT name FROM owners WHERE uuid = ? ORDER BY name LIMIT 1`).pluck().get(uuid) as string | undefined;
}

export interface ClusterTimeline {
  readonly disk: string;
  readonly from: string;
  readonly to: string;
  readonly intervals: Array<Interval & { readonly host: string }>;
  readonly events: Array<TimelineEvent & { readonly host: string }>;
  /** When each host's daemon was down in the window. */
  readonly gaps: HostGap[];
  /** Each host's coalesced ranges in the window (FactsDropped.coalesced): its bars there are not the whole story (review31a MEDIUM 5). */
  readonly incomplete?: Array<CoalescedAt & { readonly host: string }>;
}

/** Each host's holders of `disk` over [from, to] (the one-journal timeline per chain) and its down gaps. */
export function clusterTimeline(cs: ClusterSources, disk: DiskArg, from: string, to: string): ClusterTimeline {
  return inSnapshot(cs, () => timelineOf(cs, disk, from, to));
}

function timelineOf(cs: ClusterSources, asked: DiskArg, from: string, to: string): ClusterTimeline {
  const disk = shownOf(asked);
  const names = namesOf(asked);
  const known = (j: Journal) => (typeof names === 'string' ? j.knowsDisk(names) : names.some((n) => j.knowsDisk(n)));
  const intervals: ClusterTimeline['intervals'] = [];
  const events: ClusterTimeline['events'] = [];
  const gaps: HostGap[] = [];
  const incomplete: NonNullable<ClusterTimeline['incomplete']> = [];
  for (const h of cs.hosts) {
    for (let i = 0; i < h.chains.length; i++) {
      const c = h.chains[i]!;
      const start = c.chain.firstAt ?? from;
      const next = h.chains[i + 1]?.chain.firstAt;
      const a = start > from ? start : from;
      const b = next !== undefined && next < to ? next : to;
      if (a > b || !known(c.journal)) continue;
      const t = timeline({ live: c.journal }, asked, a, b);
      // A later journal of the same host (its state directory was lost): this journal's run ended
      // after its last fact and before the next journal began, at a moment nobody journaled. A hold
      // still open at its end ended at that crash, like the one-journal crash rule, not at the window's end.
      const last = c.chain.last?.at;
      for (const x of t.intervals) {
        if (next !== undefined && x.to === undefined && next <= to) {
          const surely = last !== undefined && last >= x.from && last <= next ? last : x.from;
          intervals.push({ ...x, to: surely, end: 'crash', crashBefore: next, host: h.host });
        } else intervals.push({ ...x, host: h.host });
      }
      for (const e of t.events) events.push({ ...e, host: h.host });
      for (const x of t.incomplete ?? []) incomplete.push({ ...x, host: h.host });
    }
    for (const g of gapsOf(h)) if ((g.to === undefined || g.to >= from) && g.from <= to) gaps.push(g);
  }
  intervals.sort((x, y) => (x.from < y.from ? -1 : x.from > y.from ? 1 : x.host < y.host ? -1 : 1));
  return { disk, from, to, intervals, events, gaps, ...(incomplete.length > 0 ? { incomplete } : {}) };
}

/** When host `h`'s daemon was down, from its starts and stops across its journals. */
export function gapsOf(h: HostHistory): HostGap[] {
  const events: RunEvent[] = [];
  let last: StoredFact | undefined;
  for (const c of h.chains) {
    const prevEnd = last;
    for (const f of c.journal.query({ kinds: ['DaemonStarted', 'DaemonStopped'] })) {
      if (f.kind === 'DaemonStarted') {
        // The fact before a start dates a crash, and only a start right after a start (no stop
        // between) is one: hostGaps reads prevAt for nothing else. A statement per restart saved.
        const crashed = events[events.length - 1]?.kind === 'DaemonStarted';
        const before = !crashed ? undefined : f.seq > 1 ? c.journal.query({ afterSeq: f.seq - 2, untilSeq: f.seq - 1 })[0] : prevEnd;
        events.push({ kind: 'DaemonStarted', at: f.at, ...(before !== undefined ? { prevAt: before.at } : {}) });
      } else events.push({ kind: 'DaemonStopped', at: f.at });
    }
    last = c.journal.query({ limit: 1, newest: true, afterSeq: Math.max(0, (c.chain.last?.seq ?? 1) - 1) })[0] ?? last;
  }
  return hostGaps(h.host, events, last, h.alive !== false);
}

/**
 * Every interval in which owners on two hosts both claimed `disk` (every disk when undefined) in
 * conflicting modes, from each host's LockAcquired/Reacquired/LockReleased/LeaseLost facts; with
 * `since`/`until`, the overlaps that reach into that window.
 */
export function clusterOverlaps(cs: ClusterSources, disk: DiskArg | undefined, since?: string, until?: string): Overlap[] {
  return inSnapshot(cs, () => overlapsOf(cs, disk, since, until));
}

function overlapsOf(cs: ClusterSources, disk: DiskArg | undefined, since?: string, until?: string): Overlap[] {
  const claims = cs.hosts.flatMap((h) =>
    claimsOf(
      h.host,
      h.chains.map((c) => ({ journal: c.chain.journal, ...(c.changed !== undefined ? { cut: c.changed.at } : {}), facts: claimFacts(c.journal, disk, until) })),
    ),
  );
  const shown = overlaps(claims).filter((o) => (since === undefined || o.to === undefined || o.to >= since) && (until === undefined || o.from <= until));
  return [...shown, ...possibleOverlaps(cs, disk, since, until, claims)];
}

/**
 * Each host's coalesced ranges (FactsDropped.coalesced) that meet another host's claim of the disk: the
 * facts that would say whether the host's VM held it there are gone, so each is a possible overlap
 * (review31a MEDIUM 5: alpha's re-take coalesced away, beta's hold on another host inside the range,
 * and --overlaps said "no overlaps").
 */
function possibleOverlaps(cs: ClusterSources, disk: DiskArg | undefined, since: string | undefined, until: string | undefined, claims: readonly Claim[]): Overlap[] {
  const out: Overlap[] = [];
  const shownDisk = (d: string) => (disk !== undefined && typeof disk !== 'string' && disk.names.includes(d) ? disk.disk : d);
  for (const h of cs.hosts) {
    for (const c of h.chains) {
      for (const x of coalescedOver({ live: c.journal }, disk === undefined ? undefined : namesOf(disk), since, until)) {
        const d = shownDisk(x.disk);
        for (const b of claims) {
          if (b.host === h.host || b.disk !== d) continue;
          const from = b.from > x.from ? b.from : x.from;
          const to = b.to === undefined || b.to > x.to ? x.to : b.to;
          if (from >= to) continue;
          const a: Claim = { host: h.host, owner: { uuid: x.owner, ...(x.ownerName !== undefined ? { name: x.ownerName } : {}) }, resource: x.resource, disk: d, mode: 'exclusive', from: x.from, to: x.to, fromSeq: x.seq, journal: c.chain.journal };
          out.push({ disk: d, from, to, a, b, possible: { seq: x.seq, count: x.count } });
        }
      }
    }
  }
  return out;
}

/**
 * A chain's claim facts in seq order, the carried ones first: the holds in force where the host's
 * daemon pruned its older segments (the pruned-through marker's carried facts, the cache's `carried`
 * table) open claims like the facts they copy, so an overlap with them is found as at `--at`.
 */
function claimFacts(j: Journal, disk: DiskArg | undefined, until: string | undefined): StoredFact[] {
  const q: FactQuery = { ...(disk !== undefined ? { disk: namesOf(disk) } : {}), kinds: [...CLAIM_KINDS], ...(until !== undefined ? { until } : {}) };
  const live = [...j.iterate(q)];
  const seen = new Set(live.map((f) => f.seq));
  const all = [...j.carried(q).filter((f) => !seen.has(f.seq)), ...live].sort((a, b) => a.seq - b.seq);
  // One disk under several names (a lease's lock file, a hard link): its claims are one disk's.
  if (disk === undefined || typeof disk === 'string' || disk.names.length === 1) return all;
  return all.map((f) => (f.disk === disk.disk ? f : { ...f, disk: disk.disk }));
}
