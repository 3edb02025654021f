// The daemon's half of the qemu hook (`POST /v1/hook`): the hook sends its arguments and the domain
// XML; the daemon parses the XML (so bad XML is journaled as InputRejected like any bad input),
// decides acquire / release / check, and remembers incoming migrations across hook processes.
//
// Why the memory: on a migration DESTINATION libvirt runs `migrate begin` and then `prepare begin`
// while the source still runs and holds the disks. Acquiring at that prepare would be refused and
// abort every live migration; so a prepare that follows a migrate begin of the same uuid only
// checks, and the destination takes the disks when the VM resumes here ("Resumed Migrated" on the
// event stream). The memory is in-process: if vmlockd restarts between the two calls, the prepare
// acquires, is refused, and the migration fails safe (nothing runs without a lock).
import { BadInputError } from '../engine/errors.js';
import type { Reply } from '../engine/pipeline.js';
import type { Command, DiskRequest, Owner } from '../engine/types.js';
import { applyLeaseRules, DEFAULT_LEASE_RULES, domainLocks, type LeaseRules, type VolPathResolver } from '../events/domain-locks.js';
import type { Unprotected } from '../events/domain-xml.js';
import { parseDomainXml } from '../events/domain-xml.js';
import { parseHookArgs, type HookAction } from '../events/hook-args.js';
import { volumePathFromPoolFiles } from '../events/pool-xml.js';

/** Longer than any gap between `migrate begin` and `prepare begin` of one migration (milliseconds). */
const INCOMING_TTL_MS = 10 * 60_000;
const MAX_INCOMING = 10_000;

export interface HookRouteDeps {
  submit(cmd: Command): Promise<Reply>;
  /** This host's id: a holder on another host with the same VM uuid is a migration source. */
  host(): string;
  now?: () => number;
  volPath?: VolPathResolver;
  incomingTtlMs?: number;
  /** virtlockd's lease rules (qemu-lockd.conf), read at every call: they reload live. */
  leaseRules?(): LeaseRules;
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

export class HookRoute {
  private readonly incoming = new Map<string, number>();
  private readonly now: () => number;
  private readonly ttl: number;
  private readonly volPath: VolPathResolver;

  constructor(private readonly deps: HookRouteDeps) {
    this.now = deps.now ?? Date.now;
    this.ttl = deps.incomingTtlMs ?? INCOMING_TTL_MS;
    this.volPath = deps.volPath ?? ((p, v) => volumePathFromPoolFiles(p, v));
  }

  /** Whether a migrate begin of `uuid` was seen and has not been consumed or expired (tests). */
  isIncoming(uuid: string): boolean {
    const until = this.incoming.get(uuid);
    return until !== undefined && until > this.now();
  }

  async handle(body: Record<string, unknown>): Promise<HookReply> {
    const driver = str(body, 'driver', false) ?? 'qemu';
    if (driver !== 'qemu') throw new BadInputError(`only the qemu hook is supported, got driver ${JSON.stringify(driver)}`);
    const call = parseHookArgs([str(body, 'name', true)!, str(body, 'op', true)!, str(body, 'subop', true)!, str(body, 'extra', false) ?? '-']);
    if (call.action === 'noop') return { ...okEmpty(), action: 'noop', op: `${call.op} ${call.subop}` };

    const info = parseDomainXml(str(body, 'xml', true)!);
    const owner: Owner = { uuid: info.uuid, name: info.name };
    const at = new Date(this.now()).toISOString();
    const op = `${call.op} ${call.subop}`;
    const base = { action: call.action, op, vm: owner };

    if (call.action === 'release') {
      this.incoming.delete(owner.uuid);
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
      if (call.op === 'migrate') this.remember(owner.uuid);
      const reply = await this.check(owner, locks.disks, at, call.op === 'migrate');
      return { ...reply, ...withPlan };
    }

    // prepare begin
    if (this.takeIncoming(owner.uuid)) {
      const reply = await this.check(owner, locks.disks, at, true);
      return { ...reply, ...withPlan, action: 'check', note: 'incoming migration: the disks are checked now and taken when the VM resumes on this host (event stream)' };
    }
    if (locks.disks.length === 0) return { ...okEmpty(), ...withPlan };
    const reply = await this.deps.submit({ kind: 'acquire', owner, disks: locks.disks, at, source: 'hook' });
    return { ...reply, ...withPlan };
  }

  /** A check; with `migration`, refusals that only name this same VM on another host (the source) pass. */
  private async check(owner: Owner, disks: DiskRequest[], at: string, migration: boolean): Promise<Reply & { note?: string }> {
    if (disks.length === 0) return { ...okEmpty() };
    const reply = await this.deps.submit({ kind: 'check', owner, disks, at, source: 'hook' });
    if (reply.status !== 'refused' || !migration) return reply;
    const host = this.deps.host();
    const fromSource = reply.refusals.every((r) => r.holder.owner?.uuid === owner.uuid && r.holder.host !== undefined && r.holder.host !== host);
    if (!fromSource) return reply;
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
