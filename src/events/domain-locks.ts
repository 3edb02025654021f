// A parsed domain -> the lock requests it implies (disks and leases), shared by the virsh event
// stream and the qemu hook route. Volume disks are resolved by a caller-supplied function, because
// the two callers must resolve them differently: the event stream asks `virsh vol-path`, while the
// hook must not call back into libvirtd (libvirtd waits for the hook; docs/hooks.rst warns of
// deadlock) and reads the pool's XML file instead.
import { lockRequests } from '../engine/plan.js';
import type { DiskRequest } from '../engine/types.js';
import { lockPlan, type DomainDisk, type DomainInfo, type Unprotected } from './domain-xml.js';

export type VolPathResolver = (pool: string, volume: string) => Promise<string | null>;

export interface DomainLocks {
  readonly disks: DiskRequest[];
  readonly unprotected: Unprotected[];
  /**
   * Volume disks the resolver could not resolve right now (vol-path failed: pool inactive, storage
   * driver restarting). Their path is unknown, not "not wanted": a caller must not release a held
   * lock on the grounds that these locks do not list it.
   */
  readonly unresolved: Unprotected[];
  /** Device alias (what device-added/removed events name) -> the path locked for that disk. */
  readonly aliases: Map<string, string>;
}

async function resolveVolumes(disks: readonly DomainDisk[], volPath: VolPathResolver | undefined): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (const d of disks) {
    if (d.type !== 'volume' || d.pool === undefined || d.volume === undefined) continue;
    const key = `${d.pool}\0${d.volume}`;
    if (out.has(key)) continue;
    out.set(key, volPath ? await volPath(d.pool, d.volume).catch(() => null) : null);
  }
  return out;
}

/** The lock requests of a domain; `only` restricts them to the disks it keeps (one hot-plugged disk). */
export async function domainLocks(info: DomainInfo, volPath?: VolPathResolver, only?: (d: DomainDisk) => boolean): Promise<DomainLocks> {
  const disks = only ? info.disks.filter(only) : info.disks;
  const vols = await resolveVolumes(disks, volPath);
  const plan = lockPlan({ ...info, disks, leases: only ? [] : info.leases }, { volPath: (p, v) => vols.get(`${p}\0${v}`) ?? null });
  const aliases = new Map<string, string>();
  for (const d of disks) {
    if (d.alias === undefined || d.readonly) continue;
    const path = d.type === 'volume' ? (vols.get(`${d.pool}\0${d.volume}`) ?? null) : d.path;
    if (path !== null && path.startsWith('/')) aliases.set(d.alias, path);
  }
  const leases: DiskRequest[] = plan.leases.map((l) => ({
    path: l.path,
    mode: 'exclusive',
    named: { lockspace: l.lockspace, name: l.name, create: true },
  }));
  const unresolved = plan.unprotected.filter((u) => disks.some((d) => d.target === u.target && d.type === 'volume' && d.pool !== undefined && d.volume !== undefined && vols.get(`${d.pool}\0${d.volume}`) === null));
  return { disks: [...lockRequests(plan.lock), ...leases], unprotected: plan.unprotected, unresolved, aliases };
}

/** virtlockd's lease rules (qemu-lockd.conf), the part that decides which disks get a lock. */
export interface LeaseRules {
  readonly autoDiskLeases: boolean;
  readonly requireLeaseForDisks: boolean;
}

export const DEFAULT_LEASE_RULES: LeaseRules = { autoDiskLeases: true, requireLeaseForDisks: false };

/**
 * The one rule for which of a domain's locks are taken, used by every libvirt source (the hook, the
 * event stream, reconcile): with auto_disk_leases = 0 only the domain's <lease> elements are locked,
 * as libvirt's lockd plugin does; otherwise every lockable disk and every lease.
 */
export function applyLeaseRules(locks: DomainLocks, rules: LeaseRules): DomainLocks {
  if (rules.autoDiskLeases) return locks;
  const disks = locks.disks.filter((d) => d.named !== undefined);
  const kept = new Set(disks.map((d) => d.path));
  const aliases = new Map([...locks.aliases].filter(([, p]) => kept.has(p)));
  return { ...locks, disks, aliases, unresolved: [] };
}
