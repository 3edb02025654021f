// Human text for refusals: name the disk and, when known, who holds it and how to look closer.
import type { HolderInfo, Mode } from './types.js';

function modeWord(mode: Mode | undefined): string {
  return mode === 'shared' ? 'shared' : mode === 'exclusive' ? 'exclusively' : '';
}

/** e.g. `disk /images/a.qcow2 is held exclusively by VM web1 (uuid ...) on host hv2 since 2026-11-25T10:00:00Z (generation 7)` */
export function refusalMessage(disk: string, holder: HolderInfo): string {
  if (holder.reservation) {
    // Free in the kernel, but its holder handed it to a migration's destination (decision 0009).
    const r = holder.reservation;
    const vm = holder.owner ? (holder.owner.name ? `VM ${holder.owner.name} (uuid ${holder.owner.uuid})` : `VM ${holder.owner.uuid}`) : 'a VM';
    return (
      `disk ${disk} is reserved for ${vm} on host ${holder.host ?? '?'}: a live migration hands it over` +
      `${r.from ? ` from host ${r.from}` : ''} (released ${r.since}); nobody else may take it until that host takes it or stops waiting, at the latest ${r.until}`
    );
  }
  const parts = [`disk ${disk} is held`];
  const how = modeWord(holder.mode);
  if (how) parts.push(how === 'shared' ? 'shared' : how);
  if (holder.owner) {
    const name = holder.owner.name ? `VM ${holder.owner.name} (uuid ${holder.owner.uuid})` : `VM ${holder.owner.uuid}`;
    parts.push(`by ${name}`);
  } else if (!holder.host) {
    parts.push('by another owner (no holder record)');
  }
  if (holder.host) parts.push(`on host ${holder.host}`);
  if (holder.since) parts.push(`since ${holder.since}`);
  if (holder.generation !== undefined) parts.push(`(generation ${holder.generation})`);
  return parts.join(' ');
}
