// The daemon's half of the qemu hook (`POST /v1/hook`): the hook sends its arguments and the domain
// XML; the daemon parses the XML (so bad XML is journaled as InputRejected like any bad input),
// decides acquire / release / check, and remembers incoming migrations across hook processes.
//
// Why the memory: on a migration DESTINATION libvirt runs `migrate begin` and then `prepare begin`
// while the source still runs and holds the disks. A prepare that follows an ACCEPTED migrate begin
// of the same uuid (within 30 s: libvirt runs both in one Prepare call) tries to acquire; if
// the only holder is this same VM on another host (the source), it passes and starts a hand-over:
// the daemon keeps trying to take the disks until it has them (the source releases them when the
// migration is over there, at its `release end` / `Stopped Migrated`), the VM's release end here
// cancels it, or another owner turns out to hold them (a conflict). So a migrated VM gets its lock
// with the hook alone, and the source's lock covers it until then (docs/decisions/0009). While it
// waits, a hand-over request in each lock file (the `hand-over` command, the locker's `await`) makes
// the source's release reserve the disk for this host and VM, so no third host can take it in the
// instant between that release and this host's next attempt. The wait journals HandOverWaiting and
// HandOverEnded; its attempts are quiet (their refusal by the source journals nothing).
// The memory is used once and is in-process: if vmlockd restarts between the two calls, the
// prepare acquires, is refused, and the migration fails safe (nothing runs without a lock).
import { refusalConflicts, type ConflictFields } from '../engine/conflict-line.js';
import { BadInputError } from '../engine/errors.js';
import { isHandOverRefusal } from '../engine/holder-record.js';
import type { Reply } from '../engine/pipeline.js';
import type { Command, DiskRequest, HandOverOutcome, Owner } from '../engine/types.js';
import { applyLeaseRules, DEFAULT_LEASE_RULES, domainLocks, type LeaseRules, type VolPathResolver } from '../events/domain-locks.js';
import type { Unprotected } from '../events/domain-xml.js';
import { parseDomainXmlOffLoop } from '../events/domain-xml-offload.js';
import { parseHookArgs, type HookAction } from '../events/hook-args.js';
import { volumePathFromPoolFiles } from '../events/pool-xml.js';
import { localLibvirt, type DomainState } from '../events/virsh-stream.js';

/**
 * Longer than any gap between `migrate begin` and `prepare begin` of one migration (milliseconds):
 * libvirt runs them back to back in one Prepare call. Short, so a migration that failed between
 * the two (no hook follows) cannot turn a later ordinary start into a hand-over.
 */
const INCOMING_TTL_MS = 30_000;
const MAX_INCOMING = 10_000;
/**
 * How long a destination waits for the source to let go of the disks. With a libvirt URI, virsh
 * domstate ends the wait as soon as the VM is not on this host, so this only bounds a long
 * (post-copy) migration. With the hook alone nothing tells that the migration failed without a
 * `release end` here (libvirtd crashed, a hook call lost): the wait is the bound (decision 0009).
 */
const HAND_OVER_TTL_MS = 30 * 60_000;
const HAND_OVER_HOOK_ONLY_TTL_MS = 5 * 60_000;
/**
 * From prepare begin until QEMU exists, libvirt may say "shut off" (or not know the domain) for an
 * incoming migration: domstate counts only this long after prepare. Checked at most every
 * DOMSTATE_EVERY_MS, not at every attempt (virsh is a process).
 */
const DOMSTATE_GRACE_MS = 10_000;
const DOMSTATE_EVERY_MS = 2000;
/** Attempt n of a hand-over waits this long first: 50 ms for the first 2 s, then 500 ms. */
function handOverDelay(attempt: number): number {
  return attempt < 40 ? 50 : 500;
}

export interface HookRouteDeps {
  submit(cmd: Command): Promise<Reply>;
  /** This host's id: a holder on another host with the same VM uuid is a migration source. */
  host(): string;
  now?: () => number;
  volPath?: VolPathResolver;
  incomingTtlMs?: number;
  /** virtlockd's lease rules (qemu-lockd.conf), read at every call: they reload live. */
  leaseRules?(): LeaseRules;
  /** fields: a CONFLICT line's (src/engine/conflict-line.ts); without them the wording classifies the line. */
  log?(level: 'info' | 'warning' | 'error', msg: string, fields?: ConflictFields | { vm: string }): void;
  /** Schedule fn after ms; returns a cancel function (tests pass a fake). */
  later?(fn: () => void, ms: number): () => void;
  handOverTtlMs?: number;
  /** The wait without a libvirt URI (libvirt() answers undefined). */
  handOverHookOnlyTtlMs?: number;
  /**
   * This host's libvirt: `state` is `virsh domstate`; undefined when no libvirt URI is configured
   * (default: the running event stream's, events/virsh-stream.ts).
   */
  libvirt?(): { state(uuid: string): Promise<DomainState> } | undefined;
  domstateGraceMs?: number;
}

/** libvirt's lockd plugin's text for require_lease_for_disks (it refuses with CONFIG_UNSUPPORTED). */
export const NO_LEASE_MESSAGE = 'Read/write, exclusive access, disks were present, but no leases specified';

export type HookReply = Reply & {
  readonly action: HookAction;
  readonly op: string;
  readonly vm?: Owner;
  readonly unprotected?: readonly Unprotected[];
  /** What was done beyond the plain action (an incoming migration, a hand-over seen). */
  readonly note?: string;
};

function str(body: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const v = body[field];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string') throw new BadInputError(`${field} must be a string, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v;
}

function okEmpty(): Extract<Reply, { status: 'ok' }> {
  return { status: 'ok', acquired: [], released: [], already: [], free: [] };
}

function who(owner: Owner): string {
  return owner.name ? `${owner.name} (uuid ${owner.uuid})` : owner.uuid;
}

/**
 * Every refusal names this same VM holding the disk on another host than `host` (the migration
 * source), or a reservation for this VM on this host (another host's taker reading it at that
 * instant). A reservation for this VM on another host is no source: that host is the VM's
 * destination, and this one is not.
 */
function onlySource(reply: Extract<Reply, { status: 'refused' }>, owner: Owner, host: string): boolean {
  return reply.refusals.length > 0 && reply.refusals.every((r) => isHandOverRefusal(r.holder, owner, host));
}

export class HookRoute {
  private readonly incoming = new Map<string, number>();
  /** Destinations waiting for the source to let go: uuid -> end the wait (journaled with why, unless the daemon stops). */
  private readonly handOvers = new Map<string, (outcome?: HandOverOutcome, detail?: string) => Promise<void>>();
  private readonly now: () => number;
  private readonly ttl: number;
  private readonly volPath: VolPathResolver;

  constructor(private readonly deps: HookRouteDeps) {
    this.now = deps.now ?? Date.now;
    this.ttl = deps.incomingTtlMs ?? INCOMING_TTL_MS;
    this.volPath = deps.volPath ?? ((p, v) => volumePathFromPoolFiles(p, v));
  }

  /** Whether a hand-over of `uuid` is under way (tests). */
  isHandingOver(uuid: string): boolean {
    return this.handOvers.has(uuid);
  }

  /** Stop every hand-over (daemon stop). */
  close(): void {
    for (const cancel of this.handOvers.values()) void cancel();
    this.handOvers.clear();
  }

  /** Whether an accepted migrate begin of `uuid` was seen and has not been consumed or expired (tests). */
  isIncoming(uuid: string): boolean {
    const until = this.incoming.get(uuid);
    return until !== undefined && until > this.now();
  }

  async handle(body: Record<string, unknown>): Promise<HookReply> {
    const driver = str(body, 'driver', false) ?? 'qemu';
    if (driver !== 'qemu') throw new BadInputError(`only the qemu hook is supported, got driver ${JSON.stringify(driver)}`);
    const call = parseHookArgs([str(body, 'name', true)!, str(body, 'op', true)!, str(body, 'subop', true)!, str(body, 'extra', false) ?? '-']);
    if (call.action === 'noop') return { ...okEmpty(), action: 'noop', op: `${call.op} ${call.subop}` };

    // A large document is parsed on a worker thread: megabytes of <metadata> must not stop the loop.
    const info = await parseDomainXmlOffLoop(str(body, 'xml', true)!);
    const owner: Owner = { uuid: info.uuid, name: info.name };
    const at = new Date(this.now()).toISOString();
    const op = `${call.op} ${call.subop}`;
    const base = { action: call.action, op, vm: owner };

    if (call.action === 'release') {
      // The VM stopped here (or its incoming migration or start failed): forget both.
      this.incoming.delete(owner.uuid);
      await this.handOvers.get(owner.uuid)?.('cancelled', `the VM's ${op} hook came on this host (its incoming migration failed or it stopped)`);
      const reply = await this.deps.submit({ kind: 'release', owner, at, source: 'hook' });
      return { ...reply, ...base };
    }

    const found = await domainLocks(info, this.volPath);
    const rules = this.deps.leaseRules?.() ?? DEFAULT_LEASE_RULES;
    // auto_disk_leases = 0: like the lockd plugin, lock only the domain's <lease> elements.
    const locks = applyLeaseRules(found, rules);
    const withPlan = { ...base, unprotected: locks.unprotected };
    if (call.action === 'acquire' && rules.requireLeaseForDisks && info.leases.length === 0 && found.disks.some((d) => d.mode === 'exclusive')) {
      return { status: 'error', code: 'VMLOCKD_ERR_CONFIG', message: `${NO_LEASE_MESSAGE} (require_lease_for_disks = 1)`, ...withPlan };
    }
    if (call.action === 'check') {
      const reply = await this.check(owner, locks.disks, at, call.op === 'migrate');
      // Remembered only once accepted: a refused migration leaves nothing behind.
      if (call.op === 'migrate') {
        if (reply.status === 'ok') this.remember(owner.uuid);
        else this.incoming.delete(owner.uuid);
      }
      return { ...reply, ...withPlan };
    }

    // prepare begin
    const incoming = this.takeIncoming(owner.uuid);
    if (locks.disks.length === 0) return { ...okEmpty(), ...withPlan };
    // An incoming migration's refusal by its own source is the wait below, journaled once as HandOverWaiting.
    const reply = await this.deps.submit({ kind: 'acquire', owner, disks: locks.disks, at, source: 'hook', ...(incoming ? { quiet: true } : {}) });
    if (!incoming || reply.status !== 'refused' || !onlySource(reply, owner, this.deps.host())) return { ...reply, ...withPlan };
    // The migration destination, before its QEMU exists: the source still runs and holds the disks.
    const hosts = [...new Set(reply.refusals.map((r) => r.holder.host))].join(', ');
    await this.startHandOver(owner, locks.disks, hosts);
    return {
      ...okEmpty(),
      free: reply.refusals.map(({ holder: _h, message: _m, ...d }) => d),
      ...withPlan,
      action: 'check',
      note: `incoming migration: held by this VM on the migration source (host ${hosts}); this host takes the disks as soon as the source lets go`,
    };
  }

  /**
   * The destination's half of a migration hand-over: take the disks as soon as the source (this
   * same VM on another host) lets go. Ends when they are taken, when the VM's release end here
   * cancels it, when another owner holds them (a conflict, logged), when virsh domstate says the VM
   * is not on this host (the incoming migration is over: it failed, or libvirtd lost it), or after
   * the bound (HAND_OVER_TTL_MS with a libvirt URI, HAND_OVER_HOOK_ONLY_TTL_MS without). Disks it
   * took for a VM that domstate then says is not here are released again.
   */
  private async startHandOver(owner: Owner, disks: DiskRequest[], hosts: string): Promise<void> {
    await this.handOvers.get(owner.uuid)?.('cancelled', 'a new prepare of the same VM replaced this wait');
    const later =
      this.deps.later ??
      ((fn: () => void, ms: number) => {
        const t = setTimeout(fn, ms);
        t.unref();
        return () => clearTimeout(t);
      });
    const log = this.deps.log ?? (() => {});
    const libvirt = this.deps.libvirt ? this.deps.libvirt() : localLibvirt();
    const ttl = libvirt ? (this.deps.handOverTtlMs ?? HAND_OVER_TTL_MS) : (this.deps.handOverHookOnlyTtlMs ?? HAND_OVER_HOOK_ONLY_TTL_MS);
    const grace = this.deps.domstateGraceMs ?? DOMSTATE_GRACE_MS;
    const started = this.now();
    const since = (): string => `${((this.now() - started) / 1000).toFixed(2)} s after prepare`;
    const iso = (): string => new Date(this.now()).toISOString();
    let lastProbe = -Infinity;
    let stopped = false;
    let refusals = 0;
    let cancelTimer: () => void = () => {};
    /**
     * End the wait once: stop the timer, withdraw the hand-over request and journal how it ended
     * (HandOverEnded). Without an outcome (the daemon stops) nothing is journaled: the locker
     * withdraws every request as it closes.
     */
    const end = async (outcome?: HandOverOutcome, detail?: string): Promise<void> => {
      if (stopped) return;
      stopped = true;
      cancelTimer();
      if (this.handOvers.get(owner.uuid) === end) this.handOvers.delete(owner.uuid);
      if (outcome === undefined) return;
      const r = await this.deps.submit({ kind: 'hand-over', step: 'end', owner, disks, outcome, detail: `${detail ?? outcome} (${since()}, ${refusals} attempt(s) refused)`, at: iso(), source: 'hook' });
      if (r.status === 'error') log('warning', `hook: VM ${who(owner)}: could not record the end of the migration hand-over: ${r.message}`);
    };
    this.handOvers.set(owner.uuid, end);
    // One fact for the whole wait, and the request that makes the source's release reserve the
    // disks for this host and VM (decision 0009); the attempts below journal nothing.
    const waiting = await this.deps.submit({ kind: 'hand-over', step: 'wait', owner, disks, from: hosts, at: iso(), source: 'hook' });
    if (waiting.status === 'error') log('warning', `hook: VM ${who(owner)}: could not file the hand-over request (${waiting.message}); waiting without a reservation`);
    log(
      'info',
      `hook: VM ${who(owner)} migrates in; waiting for host ${hosts} to hand its disks over (at most ${Math.round(ttl / 1000)} s${libvirt ? ', or until virsh domstate says the VM is not on this host' : '; no libvirt_uri, so nothing else ends the wait'})`,
    );
    /** Whether libvirt says the VM is not on this host (only after the grace: QEMU may not exist yet). */
    const probe = async (): Promise<DomainState | undefined> => {
      if (!libvirt || this.now() - started < grace) return undefined;
      lastProbe = this.now();
      return libvirt.state(owner.uuid);
    };
    /**
     * The disks are taken: keep them only while the VM is on this host (domstate, when known). The
     * VM's release end, or a daemon stop, meanwhile ends this check (the wait itself is over).
     */
    let verifying = true;
    const stopVerify = async (): Promise<void> => {
      verifying = false;
      cancelTimer();
      if (this.handOvers.get(owner.uuid) === stopVerify) this.handOvers.delete(owner.uuid);
    };
    const verify = async (): Promise<void> => {
      if (!verifying) return;
      if (!libvirt) return stopVerify();
      const wait = started + grace - this.now();
      if (wait > 0) {
        cancelTimer = later(() => void verify(), wait);
        return;
      }
      const st = await probe();
      if (!verifying) return;
      await stopVerify();
      if (st?.kind !== 'gone') {
        log('info', `hook: VM ${who(owner)}: ${st?.kind === 'active' ? `virsh domstate says it is on this host (${st.state})` : `virsh domstate failed (${st?.kind === 'unknown' ? st.error : 'no answer'}), so`}: it keeps the disks taken in the hand-over`);
        return;
      }
      const gone = st;
      await this.deps.submit({ kind: 'release', owner, at: iso(), source: 'hook' });
      log('warning', `hook: VM ${who(owner)}: took its disks in the migration hand-over, but virsh domstate says the VM is not on this host (${gone.state}): released them again (${since()})`);
    };
    const attempt = async (n: number): Promise<void> => {
      if (stopped) return;
      if (libvirt && this.now() - lastProbe >= DOMSTATE_EVERY_MS) {
        const gone = await probe();
        if (stopped) return;
        if (gone?.kind === 'gone') {
          await end('gone', `virsh domstate says the VM is not on this host (${gone.state})`);
          log('warning', `hook: VM ${who(owner)}: stopped waiting for the migration hand-over from host ${hosts} (${since()}, ${refusals} refusals): virsh domstate says the VM is not on this host (${gone.state}), so no incoming migration is in progress; this host does not hold its disks`);
          return;
        }
      }
      // Quiet: a refusal here is the wait journaled once above, not news.
      const reply = await this.deps.submit({ kind: 'acquire', owner, disks, at: iso(), source: 'hook', quiet: true });
      if (stopped) {
        // The VM's release end came while this attempt ran: give back what it took.
        if (reply.status === 'ok' && reply.acquired.length > 0) await this.deps.submit({ kind: 'release', owner, at: iso(), source: 'hook' });
        return;
      }
      if (reply.status === 'ok') {
        this.handOvers.set(owner.uuid, stopVerify);
        stopped = true;
        cancelTimer();
        const r = await this.deps.submit({ kind: 'hand-over', step: 'end', owner, disks, outcome: 'taken', detail: `this host holds the disks (${since()}, ${refusals} attempt(s) refused)`, at: iso(), source: 'hook' });
        if (r.status === 'error') log('warning', `hook: VM ${who(owner)}: could not record the end of the migration hand-over: ${r.message}`);
        log('info', `hook: VM ${who(owner)}: migration hand-over done, this host holds its disks (${since()})`);
        await verify();
        return;
      }
      if (reply.status === 'refused' && onlySource(reply, owner, this.deps.host())) {
        refusals++;
        if (this.now() - started >= ttl) {
          await end('timeout', `host ${hosts} did not let go of the disks in ${Math.round(ttl / 1000)} s: ${reply.message}`);
          log('error', `hook: VM ${who(owner)}: stopped waiting for the migration hand-over: host ${hosts} did not let go of its disks in ${Math.round(ttl / 1000)} s (${refusals} refusals); this host does not hold them: ${reply.message}`);
          return;
        }
        cancelTimer = later(() => void attempt(n + 1), handOverDelay(n));
        return;
      }
      if (reply.status === 'refused') refusals++;
      await end('conflict', reply.message);
      if (reply.status === 'error') {
        // No disk was refused to another owner: the take itself failed (as the event stream says it).
        log('error', `hook: VM ${who(owner)} migrated in, but its disks could not be taken: ${reply.message}; this host does not hold them`, { vm: owner.name ?? owner.uuid });
        return;
      }
      // One line per refused disk, each with the disk, the VM, its holder and the LockRefused's seq.
      for (const c of refusalConflicts(owner, reply.refusals, this.deps.host())) log('error', `CONFLICT: VM ${who(owner)} migrated in, but its disks are not this VM's to take over: ${c.message}`, c.fields);
    };
    cancelTimer = later(() => void attempt(0), handOverDelay(0));
  }

  /** A check; with `migration`, refusals that only name this same VM on another host (the source) pass. */
  private async check(owner: Owner, disks: DiskRequest[], at: string, migration: boolean): Promise<Reply & { note?: string }> {
    if (disks.length === 0) return { ...okEmpty() };
    // A migration's check refused only by its source (this VM on another host) is the expected case: not journaled as a refusal.
    const reply = await this.deps.submit({ kind: 'check', owner, disks, at, source: 'hook', ...(migration ? { quiet: true } : {}) });
    if (reply.status !== 'refused' || !migration) return reply;
    if (!onlySource(reply, owner, this.deps.host())) return reply;
    const hosts = [...new Set(reply.refusals.map((r) => r.holder.host))].join(', ');
    return {
      ...okEmpty(),
      free: reply.refusals.map(({ holder: _h, message: _m, ...d }) => d),
      note: `held by this VM on the migration source (host ${hosts})`,
    };
  }

  private remember(uuid: string): void {
    const now = this.now();
    if (this.incoming.size >= MAX_INCOMING) {
      for (const [k, until] of this.incoming) if (until <= now) this.incoming.delete(k);
    }
    this.incoming.set(uuid, now + this.ttl);
  }

  private takeIncoming(uuid: string): boolean {
    const fresh = this.isIncoming(uuid);
    this.incoming.delete(uuid);
    return fresh;
  }
}
