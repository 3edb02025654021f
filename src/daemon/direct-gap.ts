// Direct locks re-taken at a start (review26a F2, review24a F5; decision 0020): a disk locked in
// place (`--lockspace ""`, the virtlockd protocol's default lockspace) carries no holder record, and
// an OFD lock leaves no trace once released, so a re-take after a gap cannot prove that nobody else
// held the disk meanwhile. The start says so instead of staying silent: a warning naming the count
// and a few disks, `directUnproven` in DaemonStarted and in status. An adopted descriptor (systemd's
// store, a take-over) is no gap and is never counted.
import type { NewFact } from '../engine/facts.js';

/** How many disks the warning names before "and N more". */
export const SHOWN = 3;

/** The disks of the direct resources a start's re-take (never an adoption) took again, once each. */
export function directRetaken(retakeFacts: readonly NewFact[]): string[] {
  const disks = new Map<string, string>();
  for (const f of retakeFacts) {
    if (f.kind !== 'Reacquired' || f.payload.kind !== 'direct' || f.payload.how !== undefined) continue;
    if (!disks.has(f.payload.resource)) disks.set(f.payload.resource, f.payload.disk);
  }
  return [...disks.values()];
}

/** For status (started.directNote). */
export function directNote(count: number): string {
  return `${count} direct lock(s) re-taken after a gap: continuity unproven`;
}

/** The start's warning line; undefined when no direct lock was re-taken. */
export function directGapWarning(disks: readonly string[]): string | undefined {
  const n = disks.length;
  if (n === 0) return undefined;
  const named = disks.slice(0, SHOWN).join(', ') + (n > SHOWN ? ` and ${n - SHOWN} more` : '');
  return (
    `re-took ${n} direct lock(s) after a gap: continuity unproven (${named}). ` +
    `A lock on the disk itself leaves no record, so whether another host held ${n === 1 ? 'it' : 'them'} while vmlockd was down cannot be told; ` +
    `if another host may have run a VM on ${n === 1 ? 'this disk' : 'these disks'} meanwhile, check ${n === 1 ? 'it' : 'them'} now. ` +
    `A file lockspace (lockspace_dir) or systemd's descriptor store avoids the doubt (docs/operations.md)`
  );
}
