// Cross-host questions that need no I/O: which owners believed they held a disk over which interval
// (claims), where two such claims on different hosts conflict (overlaps), and when a host's daemon was
// down (gaps). Pure functions of the facts they are given; the cluster audit reads the facts.
import type { Mode, Owner } from '../engine/types.js';
import type { StoredFact } from '../journal/journal.js';

/** The facts a claim is folded from (plus DaemonStarted/DaemonStopped for the gaps). */
export const CLAIM_KINDS = ['LockAcquired', 'Reacquired', 'LockReleased', 'LeaseLost'] as const;

/**
 * An owner's claim on a disk through one host: from its grant until it was told the lock was gone
 * (LockReleased, or LeaseLost: the VM kept running on the disk until then). A daemon stop or crash
 * does not end a claim: the VM keeps running, and the next start re-takes every lock it knew of
 * (Reacquired) or reports it lost (LeaseLost), so the claim ends at one of those facts.
 */
export interface Claim {
  readonly host: string;
  readonly owner: Owner;
  readonly resource: string;
  readonly disk: string;
  readonly mode: Mode;
  readonly from: string;
  /** undefined: still claimed at the end of the facts. */
  readonly to?: string;
  /** host-changed: its journal went on under another host id, unpublished (host-changed.ts): unknown after `to`. */
  readonly end?: 'released' | 'lost' | 'journal-replaced' | 'host-changed';
  /** The fact that opened the claim and the one that ended it (their seq in the host's journal). */
  readonly fromSeq: number;
  readonly toSeq?: number;
  /** The host's journal the claim was read from (a host's new journal starts new seq numbers). */
  readonly journal?: string;
  /**
   * The release was a migration hand-over (LockReleased's `handedTo`, decision 0009): the release
   * reserved the disk for this host and VM, so only that VM on that host could take it next.
   */
  readonly handedTo?: { readonly host: string; readonly uuid: string };
}

interface OpenClaim {
  owner: Owner;
  resource: string;
  disk: string;
  mode: Mode;
  from: string;
  fromSeq: number;
  journal?: string;
  /** Carried over from an earlier journal of the host: ends at the new journal's start unless re-taken. */
  carried?: string;
}

/**
 * Folds one host's lock facts on one disk (all of its journals, oldest first, each in seq order) into
 * claims. `journals` gives each journal's facts; a claim still open when a journal ends (its state
 * directory was lost) continues only if the next journal re-takes it (a Reacquired, found in the
 * lockspace), else it ends when that journal begins. A journal with `cut` went on under another
 * host id at that time (its later facts unpublished): its claims still open end there ('host-changed').
 */
export function claimsOf(host: string, journals: ReadonlyArray<{ journal?: string; facts: readonly StoredFact[]; cut?: string }>): Claim[] {
  const out: Claim[] = [];
  const open = new Map<string, OpenClaim>();
  /** The claim as reported; `to` undefined: still open at the end of the facts. */
  const claim = (c: OpenClaim, end?: { to: string; how: NonNullable<Claim['end']>; toSeq?: number; handedTo?: Claim['handedTo'] }): Claim => ({
    host,
    owner: c.owner,
    resource: c.resource,
    disk: c.disk,
    mode: c.mode,
    from: c.from,
    ...(end !== undefined ? { to: end.to, end: end.how } : {}),
    fromSeq: c.fromSeq,
    ...(end?.toSeq !== undefined ? { toSeq: end.toSeq } : {}),
    ...(c.journal !== undefined ? { journal: c.journal } : {}),
    ...(end?.handedTo !== undefined ? { handedTo: end.handedTo } : {}),
  });
  const close = (key: string, c: OpenClaim, to: string, how: NonNullable<Claim['end']>, toSeq?: number, handedTo?: Claim['handedTo']) => {
    open.delete(key);
    out.push(claim(c, { to, how, ...(toSeq !== undefined ? { toSeq } : {}), ...(handedTo !== undefined ? { handedTo } : {}) }));
  };
  for (const j of journals) {
    const first = j.facts[0];
    for (const c of open.values()) c.carried = first?.at;
    for (const f of j.facts) {
      if (f.resource == null || f.owner == null || f.disk == null) continue;
      const key = `${f.resource}\u0000${f.owner}`;
      const p = f.payload as { owner?: Owner; mode?: Mode; handedTo?: { host?: unknown; owner?: { uuid?: unknown } } } | null;
      const cur = open.get(key);
      if (cur?.carried !== undefined) {
        if (f.kind === 'Reacquired') {
          delete cur.carried;
          continue;
        }
        close(key, cur, cur.carried, 'journal-replaced');
      }
      const now = open.get(key);
      switch (f.kind) {
        case 'LockAcquired':
        case 'Reacquired': {
          const mode: Mode = p?.mode === 'shared' ? 'shared' : 'exclusive';
          if (now === undefined) {
            open.set(key, {
              owner: p?.owner ?? { uuid: f.owner },
              resource: f.resource,
              disk: f.disk,
              mode,
              from: f.at,
              fromSeq: f.seq,
              ...(j.journal !== undefined ? { journal: j.journal } : {}),
            });
          } else if (mode === 'exclusive') now.mode = 'exclusive';
          break;
        }
        case 'LockReleased':
        case 'LeaseLost':
          if (now !== undefined) close(key, now, f.at, f.kind === 'LeaseLost' ? 'lost' : 'released', f.seq, f.kind === 'LockReleased' ? handOver(p?.handedTo) : undefined);
          break;
        default:
          break;
      }
    }
    // The journal went on under another host id (unpublished): what it held after that is unknown.
    if (j.cut !== undefined) for (const [key, c] of [...open]) if (c.journal === j.journal) close(key, c, j.cut, 'host-changed');
  }
  for (const [key, c] of [...open]) {
    if (c.carried !== undefined) close(key, c, c.carried, 'journal-replaced');
    else out.push(claim(c));
  }
  return out.sort(byFrom);
}

function handOver(h: { host?: unknown; owner?: { uuid?: unknown } } | undefined): Claim['handedTo'] {
  return typeof h?.host === 'string' && typeof h.owner?.uuid === 'string' ? { host: h.host, uuid: h.owner.uuid } : undefined;
}

function byFrom(a: { from: string }, b: { from: string }): number {
  return a.from < b.from ? -1 : a.from > b.from ? 1 : 0;
}

/** Two claims on one disk, on different hosts, in conflicting modes, over a common interval. */
export interface Overlap {
  readonly disk: string;
  readonly from: string;
  /** undefined: both claims are still open. */
  readonly to?: string;
  readonly a: Claim;
  readonly b: Claim;
  /**
   * `a` is not a claim the facts show but a range whose loss / re-take facts were coalesced on a full
   * disk (FactsDropped #seq's `coalesced`): whether its VM held the disk there is not in the journal, so
   * the overlap with `b` is possible, not shown (review31a MEDIUM 5: "no overlaps" over such a range).
   */
  readonly possible?: { readonly seq: number; readonly count: number };
}

export function conflicting(a: Mode, b: Mode): boolean {
  return a === 'exclusive' || b === 'exclusive';
}

/**
 * How far apart two hosts' clocks may be for a hand-over to be told from an overlap. The take comes
 * within the reservation's 60 s of the release (decision 0009), so the destination's grant reads within
 * [release - skew, release + 60 s + skew] of the source's release by the two clocks.
 */
export const HANDOVER_SKEW_MS = 5 * 60_000;
const RESERVATION_MS = 60_000;

/**
 * The hand-overs the facts prove: each claim released with `handedTo` (host H, VM U) paired with the
 * claim of U on H on the same disk that is the take of THIS release. The release reserved the disk for
 * U on H alone (decision 0009) and both sides took the lock file's byte 0 to write their fact, so U on H
 * took the disk after the release, whatever the two hosts' clocks say. A claim is that take only if it
 * began at or after the source's claim began, did not end before the release, and began within the
 * window around the release (HANDOVER_SKEW_MS); of those the first (by start) is the take, and one take
 * excuses at most one release (releases paired oldest first). A claim of U on H that ended before the
 * release, or a hold of U on H with no grant around the release, excuses nothing: a failed migration's
 * stale `handedTo` cannot hide a real overlap.
 */
function handOvers(list: readonly Claim[]): Set<string> {
  const pairs = new Set<string>();
  const used = new Set<Claim>();
  const releases = list.filter((x) => x.handedTo !== undefined && x.to !== undefined).sort((p, q) => (p.to! < q.to! ? -1 : p.to! > q.to! ? 1 : 0));
  for (const x of releases) {
    const t = Date.parse(x.to!);
    let take: Claim | undefined;
    for (const y of list) {
      if (used.has(y) || y.host !== x.handedTo!.host || y.owner.uuid !== x.handedTo!.uuid || y.host === x.host) continue;
      const from = Date.parse(y.from);
      if (y.from < x.from || (y.to !== undefined && Date.parse(y.to) < t)) continue;
      if (from < t - HANDOVER_SKEW_MS || from > t + RESERVATION_MS + HANDOVER_SKEW_MS) continue;
      if (take === undefined || y.from < take.from) take = y;
    }
    if (take !== undefined) {
      used.add(take);
      pairs.add(pairKey(x, take));
    }
  }
  return pairs;
}

function pairKey(x: Claim, y: Claim): string {
  const k = (c: Claim) => `${c.host}\u0000${c.journal ?? ''}\u0000${c.fromSeq}`;
  const a = k(x);
  const b = k(y);
  return a < b ? `${a}\u0001${b}` : `${b}\u0001${a}`;
}

/**
 * Every interval in which two claims of different hosts on the same disk both held it in conflicting
 * modes (exclusive against anything). An interval of zero length (one released as the other was
 * granted, in the same millisecond) is no overlap, and neither is a migration hand-over the facts
 * prove (handOvers: the source's release named the destination's host and VM), however skewed the
 * clocks. Ordered by start, then host.
 */
export function overlaps(claims: readonly Claim[]): Overlap[] {
  const byDisk = new Map<string, Claim[]>();
  for (const c of claims) {
    const list = byDisk.get(c.disk);
    if (list === undefined) byDisk.set(c.disk, [c]);
    else list.push(c);
  }
  const out: Overlap[] = [];
  for (const [disk, list] of byDisk) {
    const handed = handOvers(list);
    // A sweep by start time: each claim is compared with the ones started before it that still run.
    const sorted = [...list].sort(byFrom);
    const active: Claim[] = [];
    for (const c of sorted) {
      for (let i = active.length - 1; i >= 0; i--) {
        const o = active[i]!;
        if (o.to !== undefined && o.to <= c.from) active.splice(i, 1);
      }
      for (const o of active) {
        if (o.host === c.host || !conflicting(o.mode, c.mode) || handed.has(pairKey(o, c))) continue;
        const to = o.to === undefined ? c.to : c.to === undefined ? o.to : o.to < c.to ? o.to : c.to;
        if (to !== undefined && to <= c.from) continue;
        out.push({ disk, from: c.from, ...(to !== undefined ? { to } : {}), a: o, b: c });
      }
      active.push(c);
    }
  }
  return out.sort((x, y) => byFrom(x, y) || (x.a.host < y.a.host ? -1 : x.a.host > y.a.host ? 1 : 0));
}

/** A stretch of time a host's daemon was not running, as its facts tell it. */
export interface HostGap {
  readonly host: string;
  /** Clean stop: the DaemonStopped. Crash: the last fact of the run (the death came after it). */
  readonly from: string;
  /** The next DaemonStarted; undefined: not started again (yet). */
  readonly to?: string;
  /** stopped: a clean stop at `from`. crash: died between `from` and `to` (unknown when, exactly). */
  readonly how: 'stopped' | 'crash';
}

/** A start or a stop of a host's daemon; a start also says when the fact before it was journaled. */
export interface RunEvent {
  readonly kind: 'DaemonStarted' | 'DaemonStopped';
  readonly at: string;
  /** DaemonStarted: the host's previous fact (in this journal, or the end of its previous journal). */
  readonly prevAt?: string;
}

/**
 * The gaps in one host's runs. `events` are its starts and stops, oldest first (across its journals);
 * `last` is its newest fact and `alive` whether its daemon runs now (its host file is locked). A start
 * with no stop since the previous start means the previous run crashed after its last fact; a host
 * whose newest fact is no DaemonStopped and whose daemon is not running crashed after that fact.
 */
export function hostGaps(host: string, events: readonly RunEvent[], last: { readonly at: string; readonly kind: string } | undefined, alive: boolean): HostGap[] {
  const gaps: HostGap[] = [];
  let started = false;
  let stop: string | undefined;
  for (const e of events) {
    if (e.kind === 'DaemonStopped') {
      stop = e.at;
      continue;
    }
    if (stop !== undefined) gaps.push({ host, from: stop, to: e.at, how: 'stopped' });
    else if (started) gaps.push({ host, from: e.prevAt ?? e.at, to: e.at, how: 'crash' });
    started = true;
    stop = undefined;
  }
  if (last !== undefined) {
    if (last.kind === 'DaemonStopped') gaps.push({ host, from: last.at, how: 'stopped' });
    else if (!alive) gaps.push({ host, from: last.at, how: 'crash' });
  }
  return gaps;
}
