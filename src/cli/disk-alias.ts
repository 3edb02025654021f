// `audit --disk PATH`: every name the journals give the file at PATH. Another name of the same file
// (a hard link, a bind mount, the disk renamed, a loop device over it) is found by identity, as
// `vmlockd who` and acquire find it (review25a F7: audit answered "unknown disk" while who named the
// holder), and is always one more name of the disk, also when facts name PATH itself (review27 F2:
// once the journal named both A and its hard link B, `audit --disk A --at T` said nobody held A while
// a VM held it as B). Reads the file's identity here (stat) and looks it up among the identities the
// facts journaled.
import * as path from 'node:path';
import { canonicalPath, diskIdentity, sha256Hex } from '../engine/resolve.js';
import type { DiskNames } from './audit-query.js';

/** What an identity lookup found: the journaled disks, and the identity they matched by. */
export interface DiskAlias {
  readonly disks: readonly string[];
  readonly identity: string;
}

interface IdentityReader {
  disksWithInode(inodes: readonly string[]): string[];
}

/**
 * The journaled disks that are the same file as `canonical` now, sorted. A "dev:ino" record (written
 * before birth times) or a "blk:rdev" one (a device number is handed to another LV or loop device
 * once its device is gone) counts only while its journaled path still names this file. Undefined
 * when the file does not exist or no journaled disk is it.
 */
export function diskByIdentity(canonical: string, journals: readonly IdentityReader[]): DiskAlias | undefined {
  const identity = diskIdentity(canonical);
  if (identity === undefined) return undefined;
  const parts = identity.split(':');
  const legacy = parts.length === 3 && parts[0] !== 'blk' ? `${parts[0]}:${parts[1]}` : undefined;
  const reused = parts[0] === 'blk';
  const found = new Set<string>();
  for (const j of journals) for (const d of j.disksWithInode([identity])) if (!reused || d === canonical || diskIdentity(d) === identity) found.add(d);
  if (legacy !== undefined) {
    for (const j of journals) for (const d of j.disksWithInode([legacy])) if (diskIdentity(d) === identity) found.add(d);
  }
  const disks = [...found].sort();
  return disks.length === 0 ? undefined : { disks, identity };
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
 * or as typed), every other name of the same file found by identity (a hard link, a bind mount, a
 * loop device over it: diskByIdentity), and the lock file of a virtlockd-protocol lease on any of
 * them. libvirt's lockd plugin names a disk's lease sha256(disk path) in its lockspace directory,
 * and the facts of a lease name that lock file as their disk; so `<dir>/<sha256(path)>` is looked
 * for in every lockspace directory a start of the daemon named (DaemonStarted) and every directory
 * of a lock file the path's own facts used. Nothing: undefined.
 */
export function diskNames(raw: string, journals: readonly NameReader[]): ResolvedDisk | undefined {
  const candidates = [...new Set([canonicalPath(raw), path.resolve(raw)])];
  const known = (d: string) => journals.some((j) => j.knowsDisk(d));
  const notes: string[] = [];
  const paths = candidates.filter(known);
  let shown = paths[0] ?? candidates[0]!;
  const alias = diskByIdentity(candidates[0]!, journals);
  const others = alias === undefined ? [] : alias.disks.filter((d) => !paths.includes(d));
  if (alias !== undefined && others.length > 0) {
    if (paths.length === 0) shown = others[0]!;
    notes.push(aliasNote(raw, { disks: others, identity: alias.identity }, paths.length > 0));
    paths.push(...others);
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

/** The note `audit` prints when it answers for other journaled names of the file asked about too. */
export function aliasNote(raw: string, a: DiskAlias, named: boolean): string {
  const list = a.disks.join(', ');
  return named
    ? `vmlockd: note: facts also name the same file as ${raw} (identity ${a.identity}) ${list}: answering under every name\n`
    : `vmlockd: note: no fact names ${raw}; it is the same file (identity ${a.identity}) as ${list}: answering for ${list}\n`;
}
