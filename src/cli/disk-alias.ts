// `audit --disk PATH` for a path no fact names that is another name of a journaled disk (a hard link,
// a bind mount, the disk renamed): found by identity, as `vmlockd who` and acquire find it (review25a
// F7: audit answered "unknown disk" while who named the holder). Reads the file's identity here
// (stat) and looks it up among the identities the facts journaled.
import * as path from 'node:path';
import { canonicalPath, diskIdentity, sha256Hex } from '../engine/resolve.js';
import type { DiskNames } from './audit-query.js';

/** What an identity lookup found: the journaled disk, and the identity it matched by. */
export interface DiskAlias {
  readonly disk: string;
  readonly identity: string;
}

interface IdentityReader {
  disksWithInode(inodes: readonly string[]): string[];
}

/**
 * The one journaled disk that is the same file as `canonical`, if any. A "dev:ino" record (written
 * before birth times) counts only while its journaled path still names this file (an inode number is
 * handed out again once its file is deleted). Several disks: an error naming them (the question must
 * name one).
 */
export function diskByIdentity(canonical: string, journals: readonly IdentityReader[]): DiskAlias | { readonly several: readonly string[]; readonly identity: string } | undefined {
  const identity = diskIdentity(canonical);
  if (identity === undefined) return undefined;
  const parts = identity.split(':');
  const legacy = parts.length === 3 && parts[0] !== 'blk' ? `${parts[0]}:${parts[1]}` : undefined;
  const found = new Set<string>();
  for (const j of journals) for (const d of j.disksWithInode([identity])) found.add(d);
  if (legacy !== undefined) {
    for (const j of journals) for (const d of j.disksWithInode([legacy])) if (diskIdentity(d) === identity) found.add(d);
  }
  const disks = [...found].sort();
  if (disks.length === 0) return undefined;
  if (disks.length > 1) return { several: disks, identity };
  return { disk: disks[0]!, identity };
}

export interface NameReader extends IdentityReader {
  knowsDisk(disk: string): boolean;
  startLockspaces(): string[];
  diskResources(disk: string): string[];
  leaseDisks(hashes: readonly string[], scan?: boolean): string[];
}

/** Every name the journals give the disk at `raw`, the name to show, and the notes to print about them. */
export interface ResolvedDisk extends DiskNames {
  readonly notes: readonly string[];
}

/**
 * The disk at `raw` under every name the journals use for it (review25a F12): the path (canonical,
 * or as typed), else another name of the same file found by identity (a hard link, a bind mount:
 * diskByIdentity), and the lock file of a virtlockd-protocol lease on it. libvirt's lockd plugin
 * names a disk's lease sha256(disk path) in its lockspace directory, and the facts of a lease name
 * that lock file as their disk; so `<dir>/<sha256(path)>` is looked for in every lockspace directory
 * a start of the daemon named (DaemonStarted) and every directory of a lock file the path's own facts
 * used. Several identity matches: `several` (the question must name one). Nothing: undefined.
 */
export function diskNames(raw: string, journals: readonly NameReader[]): ResolvedDisk | { readonly several: readonly string[]; readonly identity: string } | undefined {
  const candidates = [...new Set([canonicalPath(raw), path.resolve(raw)])];
  const known = (d: string) => journals.some((j) => j.knowsDisk(d));
  const notes: string[] = [];
  let paths = candidates.filter(known);
  let shown = paths[0] ?? candidates[0]!;
  if (paths.length === 0) {
    const alias = diskByIdentity(candidates[0]!, journals);
    if (alias !== undefined && 'several' in alias) return alias;
    if (alias !== undefined) {
      notes.push(aliasNote(raw, alias));
      paths = [alias.disk];
      shown = alias.disk;
    }
  }
  const leases = leaseNames([...candidates, ...paths], paths, journals);
  if (leases.length > 0) {
    notes.push(
      `vmlockd: note: facts also name ${raw} as ${leases.join(', ')}: the lock file of a virtlockd-protocol lease on it (<lockspace>/<sha256 of the path>); answering for ${shown} under every name\n`,
    );
  }
  const names = [...paths, ...leases];
  if (names.length === 0) return undefined;
  return { disk: shown, names, notes };
}

/**
 * The journaled lock files of virtlockd-protocol leases on the disk at any of `paths` (libvirt's lockd
 * plugin names a lease sha256(disk path) in its lockspace directory): `<dir>/<sha256(path)>` for every
 * lockspace directory a daemon start named and every directory of a lock file the facts of `named`
 * (journaled names of the disk) used, where a fact names it; and any journaled lock file named by the
 * hash, whatever its directory (Journal.leaseDisks: disk_names; `scan` false: without the scan of the
 * facts it does not index yet, for the control API on the event loop). A few index probes.
 */
export function leaseNames(paths: readonly string[], named: readonly string[], journals: readonly NameReader[], scan = true): string[] {
  const known = (d: string) => journals.some((j) => j.knowsDisk(d));
  const hashes = new Set(paths.map(sha256Hex));
  const dirs = new Set<string>();
  for (const j of journals) for (const d of j.startLockspaces()) dirs.add(d);
  for (const p of named) for (const j of journals) for (const r of j.diskResources(p)) dirs.add(path.dirname(r));
  // Any directory (a lease lockspace no start named): the journal's index of lock files named by a hash.
  const leases: string[] = [];
  for (const j of journals) for (const name of j.leaseDisks([...hashes], scan)) if (!named.includes(name) && !leases.includes(name)) leases.push(name);
  for (const dir of [...dirs].sort()) {
    for (const h of hashes) {
      const name = path.join(dir, h);
      if (!named.includes(name) && !leases.includes(name) && known(name)) leases.push(name);
    }
  }
  return leases;
}

/** The note `audit` prints when it answers for the journaled name of the path asked about. */
export function aliasNote(raw: string, a: DiskAlias): string {
  return `vmlockd: note: no fact names ${raw}; it is the same file (identity ${a.identity}) as ${a.disk}: answering for ${a.disk}\n`;
}
