// plan: a VM lifecycle event becomes the lock commands it implies. Pure.
import type { Command, DiskRequest, DiskSpec, VmEvent } from './types.js';

/** Read-only disks take no lock; shareable disks take a shared one. */
export function lockRequests(disks: readonly DiskSpec[]): DiskRequest[] {
  return disks.filter((d) => !d.readonly).map((d) => ({ path: d.path, mode: d.shareable ? 'shared' : 'exclusive', ...(d.create !== undefined ? { create: d.create } : {}) }));
}

export function plan(event: VmEvent): Command[] {
  const { vm: owner, at, source } = event;
  const c = event.clientAt !== undefined ? { clientAt: event.clientAt } : {};
  switch (event.type) {
    case 'started':
    case 'resumed':
    case 'migrated_in':
    case 'disk_attached':
      return [{ kind: 'acquire', owner, disks: lockRequests(event.disks), at, ...c, source }];
    case 'stopped':
    case 'crashed':
    case 'migrated_out':
      // A stopped VM writes nothing: release everything it holds, whatever the event listed.
      return [{ kind: 'release', owner, at, ...c, source }];
    case 'disk_detached':
      return [{ kind: 'release', owner, paths: event.disks.map((d) => d.path), at, ...c, source }];
    case 'suspended':
    case 'defined':
    case 'undefined':
      // A plain pause keeps the locks: the VM's memory still holds dirty state for its disks.
      return [{ kind: 'observe', owner, event: event.type, at, ...c, source }];
    default: {
      const _exhaustive: never = event.type;
      return _exhaustive;
    }
  }
}
