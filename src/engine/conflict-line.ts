// The fields of a CONFLICT log line, the same from every source that reports one (the verifier's
// lost lock now held by another, the qemu hook's refused migration take-over, the libvirt event
// stream's refused acquire of a running VM): the disk, the VM that should hold it, who holds it,
// and the seq of the journaled fact the line reports (a LeaseLost or a LockRefused), so
// `journalctl VMLOCKD_DISK=...` finds every one and `vmlockd audit` joins it. Pure: no I/O.
import type { Fact } from './facts.js';
import { isHandOverRefusal } from './holder-record.js';
import type { Refusal } from './locker.js';
import type { HolderInfo, Owner } from './types.js';

export interface ConflictFields {
  readonly event: 'Conflict';
  readonly disk: string;
  /** The VM(s) this host runs with the disk: name, else uuid (comma-separated when several). */
  readonly vm: string;
  /** The holder's VM (name, else uuid); absent when its lock file names none. */
  readonly holder?: string;
  /** The holder's host; absent when unknown. */
  readonly holderHost?: string;
  /** The fact the line reports; absent when none was journaled. */
  readonly seq?: number;
}

export function conflictFields(disk: string, owners: readonly Owner[], holder: HolderInfo, seq: number | undefined): ConflictFields {
  const h = holder.owner ? holder.owner.name ?? holder.owner.uuid : undefined;
  return {
    event: 'Conflict',
    disk,
    vm: owners.map((o) => o.name ?? o.uuid).join(', '),
    ...(h !== undefined ? { holder: h } : {}),
    ...(holder.host ? { holderHost: holder.host } : {}),
    ...(seq !== undefined ? { seq } : {}),
  };
}

/**
 * One line's fields per refused disk of a refused command (with its LockRefused seq, once
 * journaled). A disk this same VM holds on another host (a migration's source) is no conflict of
 * its own beside one held by another owner; when every refusal is such a disk, each is reported.
 */
export function refusalConflicts(owner: Owner, refusals: readonly Refusal[], host: string): Array<{ fields: ConflictFields; message: string }> {
  const others = refusals.filter((r) => !isHandOverRefusal(r.holder, owner, host));
  return (others.length > 0 ? others : refusals).map((r) => ({ fields: conflictFields(r.disk, [owner], r.holder, r.seq), message: r.message }));
}

/**
 * A refusal's outcome with each refusal's LockRefused seq, from the command's stored facts (the
 * group commit's result, in order). Refusals a quiet command journaled nothing for keep no seq.
 */
export function withRefusalSeqs<T extends { status: string; refusals?: readonly Refusal[] }>(outcome: T, stored: readonly Fact[]): T {
  if (outcome.status !== 'refused' || !outcome.refusals) return outcome;
  const refused = stored.filter((f): f is Extract<Fact, { kind: 'LockRefused' }> => f.kind === 'LockRefused');
  if (refused.length === 0) return outcome;
  const used = new Set<number>();
  const refusals = outcome.refusals.map((r) => {
    const f = refused.find((x) => !used.has(x.seq) && x.payload.resource === r.resource && x.payload.path === r.path);
    if (!f) return r;
    used.add(f.seq);
    return { ...r, seq: f.seq };
  });
  return { ...outcome, refusals };
}
