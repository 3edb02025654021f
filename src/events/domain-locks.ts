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
  return { disks: [...lockRequests(plan.lock), ...leases], unprotected: plan.unprotected, aliases };
}
