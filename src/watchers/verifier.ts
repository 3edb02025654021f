// Held-lock verification: on an interval, check every held lock from a second description; on
// evidence of a loss record LeaseLost, try to take the lock again, and if another owner has it,
// record the conflict with both owners and hand it to the on_conflict policy. Never steals a lock
// back. A check that fails (EMFILE, EIO, a mount that does not answer) is not a loss: it is logged,
// counted and retried. A pending re-take ends with any newer fact about its resource or a release.
import { conflictFields } from '../engine/conflict-line.js';
import { fact, type Fact, type NewFact } from '../engine/facts.js';
import type { Locker } from '../engine/locker.js';
import { resourceFields } from '../engine/locker.js';
import type { State } from '../engine/state.js';
import type { ResolvedCommand } from '../engine/types.js';
import type { HolderInfo, Mode, Owner, ResourceRef } from '../engine/types.js';

export interface Conflict {
  readonly resource: string;
  readonly disk: string;
  /** Our owners that lost the disk (their VMs still run, now unprotected). */
  readonly owners: readonly Owner[];
  /** Who holds it now, as its record says. */
  readonly holder: HolderInfo;
}

export interface VerifierDeps {
  readonly locker: Locker;
  state(): State;
  /** The recorded facts (with their seq), or nothing when the journal refused them. */
  record(facts: readonly NewFact[]): readonly Fact[] | void;
  /** Read on every round, so a config reload of verify_interval takes effect at once. */
  intervalMs(): number;
  /** Called on every round before the checks (the host heartbeat). */
  beforeRound?(at: string): void;
  onConflict(c: Conflict): void;
  /** fields: the log line's disk, vm, seq (src/daemon/log.ts); without them the wording classifies it. */
  log(level: 'info' | 'warning' | 'error', msg: string, fields?: { event?: string; disk?: string; vm?: string; seq?: number; holder?: string; holderHost?: string }): void;
  now?(): Date;
}

interface PendingHolder {
  readonly owner: Owner;
  readonly since: string;
  readonly path: string;
  /** The holding's source (virtlockd, api, libvirt...): a re-take keeps it, so its release rules still apply. */
  readonly source: string;
}

interface Pending {
  readonly ref: ResourceRef;
  readonly mode: Mode;
  holders: PendingHolder[];
}

/**
 * Facts the verifier itself writes, and IdentityLearned (it says what the disk is, not who holds it);
 * any other fact naming a resource is newer news about it.
 */
const OWN_KINDS: ReadonlySet<string> = new Set(['LeaseLost', 'Reacquired', 'IdentityLearned']);

/** A check that failed is logged again at most this often while its reason stays the same. */
const ERROR_LOG_EVERY_MS = 60_000;

export class Verifier {
  /** When every held lock last checked out (or start-up, before the first round). */
  lastOkAt: string;
  lastRunAt?: string;
  /** Checks that failed with an error (not a loss) since start: the metric verify_errors_total. */
  errorsTotal = 0;
  /** Locks whose last check failed with an error, by resource: the reason. */
  readonly unverified = new Map<string, string>();
  /** Held disks locked in place whose path no longer names them (renamed under their lock), by resource: why, logged once. */
  readonly renamed = new Map<string, string>();
  private timer?: NodeJS.Timeout;
  /** Locks lost (on evidence) whose re-take failed with an error: retried every round until retaken, taken by another, or cancelled. */
  private readonly pending = new Map<string, Pending>();
  private lastErrorLogAt = 0;

  private readonly startedAt: string;

  constructor(private readonly deps: VerifierDeps) {
    this.lastOkAt = this.now().toISOString();
    this.startedAt = this.lastOkAt;
  }

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  start(): void {
    this.arm(this.deps.intervalMs());
  }

  private arm(delayMs: number): void {
    const tick = () => {
      try {
        this.round();
      } catch (e) {
        this.deps.log('error', `lock verification failed: ${(e as Error).stack ?? e}`);
      }
      this.arm(this.deps.intervalMs());
    };
    this.timer = setTimeout(tick, delayMs);
    this.timer.unref();
  }

  /**
   * verify_interval changed: re-arm now, counted from the last round (or the start), so a shorter
   * interval does not wait out a timer set with the old one (600 s -> 1 s would otherwise wait 600 s).
   */
  reschedule(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    const last = Date.parse(this.lastRunAt ?? this.startedAt);
    this.arm(Math.max(0, last + this.deps.intervalMs() - this.now().getTime()));
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Milliseconds since every held lock last checked out. */
  sinceLastOkMs(): number {
    return this.now().getTime() - Date.parse(this.lastOkAt);
  }

  /** Re-takes waiting for the lock file to become usable again. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Durable facts from anyone: a newer fact about a pending resource ends its re-take. */
  factsSeen(facts: readonly { kind: string; payload: unknown }[]): void {
    if (this.pending.size === 0) return;
    for (const f of facts) {
      if (OWN_KINDS.has(f.kind)) continue;
      const resource = (f.payload as { resource?: unknown } | null)?.resource;
      if (typeof resource !== 'string') continue;
      const p = this.pending.get(resource);
      if (!p) continue;
      this.pending.delete(resource);
      this.deps.log('warning', `the pending re-take of ${p.ref.canonical} for ${names(p.holders)} is cancelled: a newer ${f.kind} names that disk`);
    }
  }

  /** A release by an owner whose lock is waiting to be re-taken: it no longer wants it, so it must not come back. */
  commandSeen(cmd: ResolvedCommand): void {
    if (this.pending.size === 0 || cmd.kind !== 'release') return;
    const named = cmd.resolved === undefined ? undefined : new Set(cmd.resolved.map((d) => d.resource.id));
    for (const [id, p] of [...this.pending]) {
      if (named !== undefined && !named.has(id)) continue;
      const left = p.holders.filter((h) => h.owner.uuid !== cmd.owner.uuid);
      if (left.length === p.holders.length) continue;
      this.deps.log('warning', `the pending re-take of ${p.ref.canonical} for VM ${cmd.owner.name ?? cmd.owner.uuid} is cancelled: it released the disk`);
      if (left.length === 0) this.pending.delete(id);
      else p.holders = left;
    }
  }

  round(): { lost: number; retaken: number; conflicts: number; errors: number } {
    const at = this.now().toISOString();
    this.lastRunAt = at;
    try {
      this.deps.beforeRound?.(at);
    } catch (e) {
      // A failing heartbeat (a dead mount) must not stop the lock checks that report the loss.
      this.deps.log('error', `host heartbeat failed: ${(e as Error).message}`);
    }
    const { locker } = this.deps;
    const state = this.deps.state();
    const facts: NewFact[] = [];
    const conflicts: Conflict[] = [];
    let retaken = 0;

    const attempt = (p: Pending, reason: string | null) => {
      const vms = p.holders.map((h) => ({ ...h.owner, since: h.since }));
      const r = locker.retake(p.ref, p.mode, vms, at);
      if (r.ok && r.kept) {
        // The old description still holds the lock: nothing was lost.
        this.pending.delete(p.ref.id);
        if (reason !== null) this.deps.log('info', `lock on ${p.ref.canonical} looked lost (${reason}) but still holds`);
        return;
      }
      if (reason !== null || (!r.ok && r.error === undefined)) {
        // The loss itself, with whoever holds the disk now when we know; for a re-take that was
        // pending, only once another owner is found, so the conflict names both owners.
        const why = reason ?? 'taken by another owner before vmlockd could take it again';
        for (const h of p.holders) {
          facts.push(fact('LeaseLost', at, { ...resourceFields(p.ref, h.path), owner: h.owner, mode: p.mode, holder: r.ok ? {} : r.holder, reason: why }));
        }
      }
      if (r.ok) {
        retaken++;
        this.pending.delete(p.ref.id);
        for (const h of p.holders) {
          facts.push(
            fact('Reacquired', at, { ...resourceFields(p.ref, h.path), owner: h.owner, mode: p.mode, source: h.source, ...(r.gen !== undefined ? { generation: r.gen } : {}), ...r.seen }),
          );
        }
        this.deps.log('warning', `lock on ${p.ref.canonical} was lost (${reason ?? 'earlier'}) and has been taken again`);
      } else if (r.error === undefined) {
        this.pending.delete(p.ref.id);
        conflicts.push({ resource: p.ref.id, disk: p.ref.canonical, owners: p.holders.map((h) => h.owner), holder: r.holder });
      } else {
        this.pending.set(p.ref.id, p);
        if (reason !== null) this.deps.log('error', `lock on ${p.ref.canonical} was lost (${reason}) and cannot be taken again yet: ${r.error}; retrying every round`);
      }
    };

    // Re-takes pending from earlier rounds (this round's losses are not in the state's facts yet).
    const earlier = [...this.pending.values()];
    const errors: Array<{ disk: string; reason: string }> = [];
    const fresh: Array<{ disk: string; reason: string }> = [];
    const checked = locker.verify();
    const failing = new Set<string>();
    const moved = new Set<string>();
    for (const v of checked) {
      const res = state.resources.get(v.resource);
      if (!res) continue;
      if (v.status === 'renamed') {
        // The lock holds on the disk itself; only its name changed: said once, never taken or dropped for it.
        moved.add(v.resource);
        if (this.renamed.get(v.resource) !== v.reason) {
          const vms = [...res.holders.values()].map((h) => `VM ${h.owner.name ?? h.owner.uuid}`).join(', ');
          this.deps.log('warning', `disk ${res.ref.canonical} of ${vms} was renamed under its lock: ${v.reason}; vmlockd keeps holding the disk itself`, { disk: res.ref.canonical });
        }
        this.renamed.set(v.resource, v.reason);
        continue;
      }
      if (v.status === 'error') {
        failing.add(v.resource);
        errors.push({ disk: res.ref.canonical, reason: v.reason });
        if (this.unverified.get(v.resource) !== v.reason) fresh.push({ disk: res.ref.canonical, reason: v.reason });
        this.unverified.set(v.resource, v.reason);
        continue;
      }
      const holders = [...res.holders.values()].map((h) => ({ owner: h.owner, since: h.since, path: h.path, source: h.source }));
      attempt({ ref: res.ref, mode: res.mode, holders }, v.reason);
    }
    for (const id of [...this.renamed.keys()]) if (!moved.has(id)) this.renamed.delete(id);
    const recovered = [...this.unverified.keys()].filter((id) => !failing.has(id));
    for (const id of recovered) this.unverified.delete(id);
    if (recovered.length > 0) this.deps.log('warning', `${recovered.length} lock(s) that could not be checked check out again`);
    this.errorsTotal += errors.length;
    const nowMs = this.now().getTime();
    if (errors.length > 0 && (fresh.length > 0 || nowMs - this.lastErrorLogAt >= ERROR_LOG_EVERY_MS)) {
      this.lastErrorLogAt = nowMs;
      const shown = fresh.length > 0 ? fresh : errors;
      this.deps.log(
        'error',
        `cannot verify ${errors.length} held lock(s) (not a loss: the check itself failed; retrying every round): ${shown[0]!.reason} (disk ${shown[0]!.disk})` +
          (errors.length > 1 ? ` and ${errors.length - 1} more` : ''),
      );
    }

    for (const p of earlier) {
      if (this.pending.get(p.ref.id) !== p) continue;
      // Anyone holding it in the state now (a newer acquire) ends the re-take: never bring it back over them.
      if (state.resources.has(p.ref.id)) this.pending.delete(p.ref.id);
      else if (!locker.isHeld(p.ref.id)) attempt(p, null);
    }

    const recorded = facts.length > 0 ? this.deps.record(facts) ?? [] : [];
    for (const c of conflicts) {
      const who = c.holder.owner ? `VM ${c.holder.owner.name ?? c.holder.owner.uuid}${c.holder.host ? ` on host ${c.holder.host}` : ''}` : 'another owner';
      // The line reports the LeaseLost of this disk: its seq joins it with `vmlockd audit` (review14).
      const lostFact = recorded.find((f) => f.kind === 'LeaseLost' && f.payload.disk === c.disk);
      const fields = conflictFields(c.disk, c.owners, c.holder, lostFact?.seq);
      this.deps.log('error', `CONFLICT: disk ${c.disk} lost by ${fields.vm} is now held by ${who}; both may be writing it`, fields);
      this.deps.onConflict(c);
    }
    const lost = facts.filter((f) => f.kind === 'LeaseLost').length;
    if (lost === 0 && this.pending.size === 0 && errors.length === 0) this.lastOkAt = at;
    return { lost, retaken, conflicts: conflicts.length, errors: errors.length };
  }
}

function names(holders: readonly PendingHolder[]): string {
  return holders.map((h) => `VM ${h.owner.name ?? h.owner.uuid}`).join(', ');
}
