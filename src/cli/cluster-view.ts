// `who`, `generation`, `locks --cluster` and `cluster`: read the shared lockspace directly, from any
// host, with or without a daemon. Reading goes through the locker's inspector (fresh read-only
// descriptions, no lock taken), so it disturbs no lock anywhere.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VmlockdError } from '../engine/errors.js';
import { inspectLockFile } from '../engine/locker.js';
import { mountWarnings, readMounts } from '../engine/host-mounts.js';
import { HOSTS_DIR, listHosts, type HostEntry } from '../engine/locker-hosts.js';
import { diskIdentity, resolveDisk } from '../engine/resolve.js';
import { initialState } from '../engine/state.js';
import type { HolderInfo } from '../engine/types.js';
import type { Inspection } from '../engine/holder-record.js';
import { onSharedFs } from '../engine/shared-fs.js';

export interface WhoAnswer extends Inspection {
  readonly path: string;
  readonly canonical: string;
  readonly name: string;
}

/**
 * Who holds a disk. Never "free" when it cannot know: a missing or unreadable lockspace is an error,
 * and a disk whose own lock file is free is looked up among the held lock files by identity, as
 * `acquire` unifies aliases (a hard link or bind mount of a held disk is that disk, while the held
 * path still names the same inode).
 */
export function who(disk: string, lockspace: string | null): WhoAnswer {
  if (lockspace !== null) checkLockspace(lockspace, disk);
  const r = resolveDisk({ path: disk, mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
  const inspection = inspectLockFile(r.resource.id, { direct: r.resource.kind === 'file' && onSharedFs(path.dirname(r.resource.id)) });
  if (inspection.state === 'free' && lockspace !== null && r.resource.inode !== undefined) {
    const alias = heldAlias(lockspace, r.resource.inode, r.resource.id);
    if (alias) return { ...alias, path: disk, canonical: alias.disk!, name: path.basename(alias.file) };
  }
  return { ...inspection, path: disk, canonical: r.resource.canonical, name: r.resource.name };
}

function checkLockspace(lockspace: string, disk: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(lockspace);
  } catch (e) {
    throw new VmlockdError('VMLOCKD_ERR_IO', `cannot tell who holds ${disk}: lockspace ${lockspace} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
  }
  if (!st.isDirectory()) throw new VmlockdError('VMLOCKD_ERR_IO', `cannot tell who holds ${disk}: lockspace ${lockspace} is not a directory`);
}

/** A held lock file whose recorded disk is this identity (another path of the same disk). */
function heldAlias(lockspace: string, identity: string, own: string): Inspection | undefined {
  return clusterLocks(lockspace).find((i) => i.file !== own && i.disk !== undefined && diskIdentity(i.disk) === identity);
}


/** Every held resource in the lockspace, with its holders. */
export function clusterLocks(lockspace: string): Inspection[] {
  let names: string[];
  try {
    names = fs.readdirSync(lockspace);
  } catch (e) {
    throw new VmlockdError('VMLOCKD_ERR_IO', `cannot read lockspace ${lockspace}: ${(e as Error).message}`, { cause: e });
  }
  const out: Inspection[] = [];
  const direct = onSharedFs(lockspace);
  for (const name of names.sort()) {
    if (name === HOSTS_DIR || name.startsWith('.')) continue;
    const file = path.join(lockspace, name);
    // Every lock file (vmlockd's or virtlockd's) is a regular file: a directory, FIFO or symlink
    // placed in the lockspace is no lock anyone holds, and must not sink the whole view.
    let st: fs.Stats;
    try {
      st = fs.lstatSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed since readdir
      throw e;
    }
    if (!st.isFile()) continue;
    const i = inspectLockFile(file, { direct });
    if (i.state !== 'free') out.push(i);
  }
  return out;
}

export interface HostView extends HostEntry {
  readonly locks: Array<{ disk: string; file: string; mode: string; vm?: string; since?: string; generation?: number }>;
}

export interface ClusterView {
  readonly lockspace: string;
  readonly hosts: HostView[];
  /** Held resources whose holder left no record (virtlockd hosts). */
  readonly unattributed: Inspection[];
  readonly warnings: string[];
}

export function clusterView(lockspace: string): ClusterView {
  const hosts = listHosts(lockspace);
  const locks = clusterLocks(lockspace);
  const byHost = new Map<string, HostView['locks']>();
  const unattributed: Inspection[] = [];
  for (const l of locks) {
    if (l.holders.length === 0) unattributed.push(l);
    for (const h of l.holders) {
      const list = byHost.get(h.host ?? '?') ?? [];
      list.push({
        disk: l.disk ?? l.file,
        file: l.file,
        mode: h.mode ?? l.state,
        ...(h.owner ? { vm: h.owner.name ? `${h.owner.name} (${h.owner.uuid})` : h.owner.uuid } : {}),
        ...(h.since ? { since: h.since } : {}),
        ...(h.mode === 'exclusive' ? { generation: l.generation } : {}),
      });
      byHost.set(h.host ?? '?', list);
    }
  }
  const warnings: string[] = [];
  const prints = new Map<string, string[]>();
  for (const h of hosts) {
    if (!h.alive || !h.record) continue;
    prints.set(h.record.fingerprint, [...(prints.get(h.record.fingerprint) ?? []), h.host]);
  }
  if (prints.size > 1) {
    const groups = [...prints.entries()].map(([fp, names]) => `${names.join(', ')} (${fp.slice(0, 12)})`).join(' vs ');
    warnings.push(`lock settings differ between running hosts: ${groups}. Lockspace settings must match on every host before any VM starts (vmlockd config show on each host)`);
  }
  for (const h of hosts) {
    if (!h.alive && (byHost.get(h.host)?.length ?? 0) > 0) warnings.push(`host ${h.host} is gone but its records still name locks: those locks are held by another process on that host`);
  }
  // One shared filesystem mounted at different paths (across the hosts alive now): a disk named by
  // two paths gets two lock files in lockspace mode.
  const alive = hosts.filter((h) => h.alive);
  const paths = new Map(alive.map((h) => [h.host, [h.record?.lockspace ?? lockspace, ...(byHost.get(h.host) ?? []).map((l) => l.disk)]]));
  warnings.push(...mountWarnings(readMounts(lockspace, alive.map((h) => h.host)), paths));
  const known = new Set(hosts.map((h) => h.host));
  for (const host of byHost.keys()) {
    if (!known.has(host)) warnings.push(`locks are held by host ${host}, which has no host file in ${path.join(lockspace, HOSTS_DIR)}`);
  }
  return {
    lockspace,
    hosts: hosts.map((h) => ({ ...h, locks: byHost.get(h.host) ?? [] })),
    unattributed,
    warnings,
  };
}

export function describeHolder(h: HolderInfo): string {
  const vm = h.owner ? `VM ${h.owner.name ?? h.owner.uuid}${h.owner.name ? ` (uuid ${h.owner.uuid})` : ''}` : 'an owner with no record';
  return `${vm}${h.host ? ` on host ${h.host}` : ''}${h.since ? ` since ${h.since}` : ''}${h.pid ? ` (vmlockd pid ${h.pid})` : ''}`;
}

export function formatWho(w: WhoAnswer): string {
  const head = `${w.canonical}${w.canonical !== w.path ? ` (as ${w.path})` : ''}\n  lock file ${w.file}\n`;
  switch (w.state) {
    case 'free':
      return (
        `${head}  free${w.generation ? ` (generation ${w.generation})` : ''}\n` +
        (w.reserved
          ? `  reserved for the migration hand-over of VM ${w.reserved.vm.name ?? w.reserved.vm.uuid}${w.reserved.vm.name ? ` (uuid ${w.reserved.vm.uuid})` : ''} to host ${w.reserved.host}${w.reserved.from ? ` from host ${w.reserved.from}` : ''} since ${w.reserved.since}, until that host takes it or stops waiting, at the latest ${w.reserved.until}\n`
          : '')
      );
    case 'exclusive':
      return `${head}  held exclusively by ${w.holders[0] ? describeHolder(w.holders[0]) : 'a holder that writes no record (virtlockd?)'}\n  generation ${w.generation}\n`;
    case 'shared':
      return `${head}  held shared by ${w.holders.length ? '\n' + w.holders.map((h) => `    ${describeHolder(h)}`).join('\n') : 'holders that write no record (virtlockd?)'}\n`;
    default: {
      const _exhaustive: never = w.state;
      return _exhaustive;
    }
  }
}

export function formatClusterLocks(list: Inspection[]): string {
  if (list.length === 0) return 'no locks held in the lockspace\n';
  const rows = [['DISK', 'MODE', 'HOST', 'VM', 'SINCE', 'GEN']];
  for (const l of list) {
    if (l.holders.length === 0) rows.push([l.disk ?? l.file, l.state, '?', '(no record)', '-', String(l.generation)]);
    for (const h of l.holders) rows.push([l.disk ?? l.file, l.state, h.host ?? '?', h.owner?.name ?? h.owner?.uuid ?? '-', h.since ?? '-', l.state === 'exclusive' ? String(l.generation) : '-']);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n').join('');
}

export function formatCluster(v: ClusterView): string {
  const lines: string[] = [`lockspace ${v.lockspace}`];
  if (v.hosts.length === 0) lines.push('no hosts have registered in this lockspace');
  for (const h of v.hosts) {
    const r = h.record;
    const what = h.alive ? 'alive' : 'gone';
    lines.push(`host ${h.host}: ${what}${r ? ` (machine ${r.machine}, pid ${r.pid}, started ${r.started}, last heartbeat ${r.heartbeat}, version ${r.version}, settings ${r.fingerprint.slice(0, 12)})` : ''}`);
    for (const l of h.locks) lines.push(`  ${l.disk}  ${l.mode}  ${l.vm ?? '-'}  since ${l.since ?? '-'}${l.generation !== undefined ? `  generation ${l.generation}` : ''}`);
  }
  for (const u of v.unattributed) lines.push(`held ${u.state} with no record (virtlockd?): ${u.file}`);
  for (const w of v.warnings) lines.push(`WARNING: ${w}`);
  return lines.join('\n') + '\n';
}
