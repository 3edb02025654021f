// Direct locks re-taken at a start (review26a F2, review24a F5; decision 0020): a disk locked in
// place (`--lockspace ""`, the virtlockd protocol's default lockspace) carries no holder record, and
// an OFD lock leaves no trace once released, so a re-take after a gap cannot prove that nobody else
// held the disk meanwhile. The start says so instead of staying silent: a warning naming the count
// and a few disks, `directUnproven` in DaemonStarted and in status. An adopted descriptor (systemd's
// store, a take-over) is no gap and is not counted, unless it is a shared one the locker cannot show
// to have held its lock throughout (review27c F3: another host's read lock hides a released
// description's; Adoption.unproven): those are counted too, with a line of their own.
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

/** For status (started.directNote); `adopted`: how many of `count` are adoptions (Adoption.unproven). */
export function directNote(count: number, adopted = 0): string {
  if (adopted === 0) return `${count} direct lock(s) re-taken after a gap: continuity unproven`;
  if (adopted === count) return `${count} direct shared lock(s) adopted through a descriptor that may have been released: continuity unproven`;
  return `${count} direct lock(s) re-taken after a gap or adopted through a descriptor that may have been released (${adopted}): continuity unproven`;
}

/** The start's line for adopted direct shared locks whose description may have been released; undefined for none. */
export function directAdoptedWarning(disks: readonly string[]): string | undefined {
  const n = disks.length;
  if (n === 0) return undefined;
  const named = disks.slice(0, SHOWN).join(', ') + (n > SHOWN ? ` and ${n - SHOWN} more` : '');
  return (
    `adopted ${n} direct shared lock(s) through a descriptor that cannot be shown to have held its lock throughout: continuity unproven (${named}). ` +
    `Another host holds ${n === 1 ? 'that disk' : 'those disks'} shared too, which hides whether the descriptor handed back is a released lock's; ` +
    `a lock on the disk itself leaves no record, so whether another host held ${n === 1 ? 'it' : 'them'} exclusively meanwhile cannot be told. ` +
    `The lock is held now. If another host may have run a VM on ${n === 1 ? 'this disk' : 'these disks'} meanwhile, check ${n === 1 ? 'it' : 'them'} (docs/operations.md)`
  );
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
