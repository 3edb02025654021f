// Opening the lockspaces at start (and when a reload moves one): never make a new lockspace where
// this host already knew one. A cluster filesystem that is not mounted leaves its mount point a bare
// local directory; a daemon that created a lockspace there "held" disks that other hosts hold in the
// real lockspace (two VMs on one disk). What this host knows: the ids it recorded in its state
// directory (`lockspaces.json`), else the ids its journal's last start recorded (DaemonStarted),
// else the locks its journal holds in a directory. docs/decisions/0015-lockspace-never-made-twice.md.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VmlockdError } from './errors.js';
import { ID_FILE, lockspaceId, readLockspaceId } from './locker-hosts.js';
import type { State } from './state.js';

export const KNOWN_FILE = 'lockspaces.json';

/** What this host knows of a lockspace directory before it opens it. */
export interface Expected {
  /** The id its id file held when this host last used it. */
  readonly id?: string;
  /** Where that knowledge comes from (for the error). */
  readonly from?: string;
  /** Locks the journal holds in it. */
  readonly held: number;
}

/** dir -> id, as recorded in the state directory (empty when none or unreadable). */
export function readKnown(stateDir: string): Record<string, string> {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(stateDir, KNOWN_FILE), 'utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return {};
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {};
  }
}

/** Record these lockspaces' ids (merged with what was known), atomically. */
export function remember(stateDir: string, ids: Readonly<Record<string, string>>): void {
  const next = { ...readKnown(stateDir), ...ids };
  const file = path.join(stateDir, KNOWN_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** What this host knows of `dir`: the state directory's record first, then the journal's last start. */
export function expectedOf(dir: string, known: Readonly<Record<string, string>>, lastStart: Readonly<Record<string, string>> | undefined, state: State | undefined, stateDir: string): Expected {
  let held = 0;
  if (state) for (const r of state.resources.values()) if (r.ref.kind !== 'direct' && path.dirname(r.ref.id) === dir) held += r.holders.size;
  const k = known[dir];
  if (k !== undefined) return { id: k, from: path.join(stateDir, KNOWN_FILE), held };
  const j = lastStart?.[dir];
  if (j !== undefined) return { id: j, from: "the journal's last start", held };
  return { held };
}

/**
 * The lockspace's id, after checking it is the one this host knew. A missing id file where one is
 * expected (a known id, or locks held there) refuses: the filesystem is not mounted. A different id
 * refuses too (another lockspace is mounted there, or one was made on the bare mount point before).
 * With nothing known, `init = "auto"` creates the lockspace (a first start) and `"explicit"` leaves
 * that to `vmlockd lockspace init`. `created`: this call made the id.
 */
export function openLockspace(dir: string, expected: Expected, init: 'auto' | 'explicit', what = 'lockspace'): { id: string; created: boolean } {
  const fix = `mount its filesystem and start again; if the lockspace was replaced on purpose, accept it with: vmlockd lockspace init ${dir}`;
  const current = readLockspaceId(dir);
  if (current !== undefined) {
    if (expected.id !== undefined && current !== expected.id) {
      throw new VmlockdError('VMLOCKD_ERR_LOCKSPACE', `${what} ${dir} is not the lockspace this host knew: its ${ID_FILE} holds ${current}, expected ${expected.id} (from ${expected.from}); ${fix}`);
    }
    return { id: current, created: false };
  }
  if (expected.id !== undefined) {
    throw new VmlockdError('VMLOCKD_ERR_LOCKSPACE', `${what} ${dir} has no ${ID_FILE}, expected lockspace id ${expected.id} (from ${expected.from}): its filesystem is not mounted? Nothing was created and no lock taken; ${fix}`);
  }
  if (expected.held > 0) {
    throw new VmlockdError('VMLOCKD_ERR_LOCKSPACE', `${what} ${dir} has no ${ID_FILE}, but the journal holds ${expected.held} lock(s) in it: its filesystem is not mounted? Nothing was created and no lock taken; ${fix}`);
  }
  if (init === 'explicit') {
    throw new VmlockdError('VMLOCKD_ERR_LOCKSPACE', `${what} ${dir} has no ${ID_FILE} and lockspace_init = "explicit": mount the shared filesystem, then run: vmlockd lockspace init ${dir}`);
  }
  return { id: lockspaceId(dir), created: true };
}

export interface LockspaceContext {
  readonly stateDir: string;
  readonly init: 'auto' | 'explicit';
  /** The lockspace ids the journal's last DaemonStarted recorded. */
  readonly lastStart: Readonly<Record<string, string>> | undefined;
  readonly state: State | undefined;
  readonly log: (level: 'info' | 'warning' | 'error', msg: string) => void;
}

/** The ids recorded by the journal's last start (its DaemonStarted payload's `lockspaces`). */
export function lastStartIds(payload: unknown): Record<string, string> | undefined {
  const v = (payload as { lockspaces?: unknown } | undefined)?.lockspaces;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** Open each configured lockspace (file, LVM, SCSI) as openLockspace says, all or none; remember their ids. */
export function openLockspaces(dirs: ReadonlyArray<readonly [string, string | null]>, ctx: LockspaceContext): Map<string, string> {
  const known = readKnown(ctx.stateDir);
  const out = new Map<string, string>();
  const created: string[] = [];
  for (const [what, dir] of dirs) {
    if (dir === null || out.has(dir)) continue;
    const r = openLockspace(dir, expectedOf(dir, known, ctx.lastStart, ctx.state, ctx.stateDir), ctx.init, what);
    out.set(dir, r.id);
    if (r.created) created.push(`${what} ${dir} (id ${r.id})`);
  }
  for (const c of created) ctx.log('warning', `created a new lockspace: ${c}; this host now knows it by that id and never creates it again (a missing id file there later means its filesystem is not mounted)`);
  const fresh = [...out].filter(([d, id]) => known[d] !== id);
  if (fresh.length > 0) {
    try {
      remember(ctx.stateDir, Object.fromEntries(fresh));
    } catch (e) {
      // The journal's DaemonStarted records the ids too; the next start falls back to it.
      ctx.log('warning', `cannot record the lockspace ids in ${path.join(ctx.stateDir, KNOWN_FILE)}: ${(e as Error).message}`);
    }
  }
  return out;
}

/** The configured lockspace directories, named for errors. */
export function lockspaceDirs(c: { fileLockspaceDir: string | null; lvmLockspaceDir: string | null; scsiLockspaceDir: string | null }): Array<readonly [string, string | null]> {
  return [
    ['file lockspace', c.fileLockspaceDir],
    ['LVM lockspace', c.lvmLockspaceDir],
    ['SCSI lockspace', c.scsiLockspaceDir],
  ];
}
