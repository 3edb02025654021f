// Start-up check: do the locks the journal holds carry the names this start would give their disks?
// Pure (no I/O): it compares each held resource's recorded naming with the naming rules in force.
//
// A start with another file lockspace, or direct mode instead of a file lockspace (or back), or other
// LVM/SCSI lockspace directories, would re-take the held locks on their old lock files (the ids come
// from the journal) while new requests name new ones: neither this daemon nor the kernel would see a
// conflict, and a second VM could be granted a disk a running VM holds. The live reload refuses such
// a change while locks are held (watchers/config.ts, classifyChange); the start refuses it the same way.
import * as path from 'node:path';
import { sha256Hex, type NamingRules } from './resolve.js';
import type { ResourceState, State } from './state.js';

/** The source of the virtlockd protocol server: its resources are named by the requester, not by our rules. */
const REQUESTER_NAMED_SOURCE = 'virtlockd';

export interface NamingMismatch {
  readonly disk: string;
  /** How the held lock was named, for the operator ("file lockspace /a", "direct mode (the image itself)"). */
  readonly held: string;
  /** How this start would name it. */
  readonly now: string;
  /** The `serve` flags that name it as it was held. */
  readonly flag: string;
}

function isBlockPath(canonical: string): boolean {
  return canonical.startsWith('/dev');
}

/**
 * How the rules in force may name this disk path, as kinds and lockspace directories. A `/dev` path
 * with an LVM or SCSI lockspace configured is named there when its identity reads (LV UUID, SCSI id);
 * one that is neither an LV nor a SCSI disk falls through to file (or direct) naming, as in virtlockd.
 * Without I/O the check cannot tell which, so any of these counts as the same naming.
 */
function rulesFor(canonical: string, heldKind: string, rules: NamingRules): Array<{ kind: 'file' | 'direct' | 'lvm' | 'scsi'; lockspace: string }> {
  const out: Array<{ kind: 'file' | 'direct' | 'lvm' | 'scsi'; lockspace: string }> = [];
  // A block device outside /dev (a device node made elsewhere) was held under its identity: that is a block path too.
  const block = isBlockPath(canonical) || heldKind === 'lvm' || heldKind === 'scsi';
  if (block && rules.lvmLockspaceDir) out.push({ kind: 'lvm', lockspace: rules.lvmLockspaceDir });
  if (block && rules.scsiLockspaceDir) out.push({ kind: 'scsi', lockspace: rules.scsiLockspaceDir });
  out.push(rules.fileLockspaceDir === null ? { kind: 'direct', lockspace: '' } : { kind: 'file', lockspace: rules.fileLockspaceDir });
  return out;
}

function describe(kind: string, lockspace: string): string {
  switch (kind) {
    case 'direct':
      return 'direct mode (the image itself)';
    case 'lvm':
      return `LVM lockspace ${lockspace}`;
    case 'scsi':
      return `SCSI lockspace ${lockspace}`;
    default:
      return `file lockspace ${lockspace}`;
  }
}

function flagFor(kind: string, lockspace: string): string {
  switch (kind) {
    case 'direct':
      return '--lockspace ""';
    case 'lvm':
      return `--lvm-lockspace-dir ${lockspace}`;
    case 'scsi':
      return `--scsi-lockspace-dir ${lockspace}`;
    default:
      return `--lockspace ${lockspace}`;
  }
}

/** Named by the requester (virtlockd protocol): its lockspace is the requester's, whatever our rules. */
function requesterNamed(res: ResourceState): boolean {
  let all = true;
  for (const h of res.holders.values()) if (h.source !== REQUESTER_NAMED_SOURCE) all = false;
  if (all) return true;
  // A file resource whose name is not the SHA-256 of its disk path was named by the requester.
  return res.ref.kind === 'file' && res.ref.name !== sha256Hex(res.ref.canonical);
}

/**
 * Held resources that the rules in force would name differently. Run once per start over every held
 * lock (10,000 at a large restart): the rules' two possible lists and each lockspace's resolved path
 * are worked out once, and the SHA-256 of a disk path only for a lock the rules would name otherwise.
 */
export function namingMismatches(state: State, rules: NamingRules): NamingMismatch[] {
  const out: NamingMismatch[] = [];
  const wantsBlock = rulesFor('/dev', 'file', rules);
  const wantsFile = rulesFor('', 'file', rules);
  const resolved = new Map<string, string>();
  const resolve = (dir: string) => {
    let r = resolved.get(dir);
    if (r === undefined) resolved.set(dir, (r = path.resolve(dir)));
    return r;
  };
  const matches = (w: { kind: string; lockspace: string }, kind: string, lockspace: string | null | undefined) =>
    w.kind === kind && (!w.lockspace || !lockspace ? !w.lockspace && !lockspace : resolve(w.lockspace) === resolve(lockspace));
  for (const res of state.resources.values()) {
    if (res.holders.size === 0) continue;
    const { kind, lockspace, canonical } = res.ref;
    const wants = isBlockPath(canonical) || kind === 'lvm' || kind === 'scsi' ? wantsBlock : wantsFile;
    if (wants.some((w) => matches(w, kind, lockspace))) continue;
    if (requesterNamed(res)) continue;
    const now = wants.map((w) => describe(w.kind, w.lockspace)).join(' or ');
    out.push({ disk: canonical, held: describe(kind, lockspace), now, flag: flagFor(kind, lockspace) });
  }
  return out;
}

/** One line for the operator, or null when every held lock keeps its name. */
export function namingMismatchMessage(state: State, rules: NamingRules): string | null {
  const all = namingMismatches(state, rules);
  if (all.length === 0) return null;
  const first = all[0]!;
  const flags = [...new Set(all.map((m) => m.flag))].join(' ');
  return (
    `the journal holds ${all.length} lock(s) named under another naming than this start's ` +
    `(disk ${first.disk}: held in ${first.held}, this start names it in ${first.now}); ` +
    'starting would re-take them on their old lock files while new requests use new ones, so another VM could take those disks. ' +
    `Start with the setting they were taken with (${flags}), release them (vmlockd release --vm UUID) and then restart with the new one`
  );
}
