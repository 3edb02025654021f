// Held-lock verification: on an interval, check every held lock from a second description; on any
// loss record LeaseLost, try to take the lock again, and if another owner has it, record the
// conflict with both owners and hand it to the on_conflict policy. Never steals a lock back.
import { fact, type NewFact } from '../engine/facts.js';
import type { Locker } from '../engine/locker.js';
import { resourceFields } from '../engine/locker.js';
import type { State } from '../engine/state.js';
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
  record(facts: readonly NewFact[]): void;
  /** Read on every round, so a config reload of verify_interval takes effect at once. */
  intervalMs(): number;
  /** Called on every round before the checks (the host heartbeat). */
  beforeRound?(at: string): void;
  onConflict(c: Conflict): void;
  log(level: 'info' | 'warning' | 'error', msg: string): void;
  now?(): Date;
}

interface Pending {
  readonly ref: ResourceRef;
  readonly mode: Mode;
  readonly holders: Array<{ owner: Owner; since: string; path: string }>;
}

export class Verifier {
  /** When every held lock last checked out (or start-up, before the first round). */
  lastOkAt: string;
  lastRunAt?: string;
  private timer?: NodeJS.Timeout;
  /** Locks lost to an error (not to another owner): retried every round until retaken or taken by another. */
  private readonly pending = new Map<string, Pending>();

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

  round(): { lost: number; retaken: number; conflicts: number } {
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
      if (reason !== null) {
        // The loss itself, with whoever holds the disk now when we know.
        for (const h of p.holders) {
          facts.push(fact('LeaseLost', at, { ...resourceFields(p.ref, h.path), owner: h.owner, mode: p.mode, holder: r.ok ? {} : r.holder, reason }));
        }
      }
      if (r.ok) {
        retaken++;
        this.pending.delete(p.ref.id);
        for (const h of p.holders) {
          facts.push(fact('Reacquired', at, { ...resourceFields(p.ref, h.path), owner: h.owner, mode: p.mode, ...(r.gen !== undefined ? { generation: r.gen } : {}) }));
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

    for (const { resource, reason } of locker.verify()) {
      const res = state.resources.get(resource);
      if (!res) continue;
      const holders = [...res.holders.values()].map((h) => ({ owner: h.owner, since: h.since, path: h.path }));
      attempt({ ref: res.ref, mode: res.mode, holders }, reason);
    }
    for (const p of [...this.pending.values()]) if (!locker.isHeld(p.ref.id)) attempt(p, null);

    if (facts.length > 0) this.deps.record(facts);
    for (const c of conflicts) {
      const who = c.holder.owner ? `VM ${c.holder.owner.name ?? c.holder.owner.uuid}${c.holder.host ? ` on host ${c.holder.host}` : ''}` : 'another owner';
      this.deps.log('error', `CONFLICT: disk ${c.disk} lost by ${c.owners.map((o) => o.name ?? o.uuid).join(', ')} is now held by ${who}; both may be writing it`);
      this.deps.onConflict(c);
    }
    const lost = facts.filter((f) => f.kind === 'LeaseLost').length;
    if (lost === 0 && this.pending.size === 0) this.lastOkAt = at;
    return { lost, retaken, conflicts: conflicts.length };
  }
}
