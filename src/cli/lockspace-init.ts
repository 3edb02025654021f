// `vmlockd lockspace init [DIR...]`: make (or accept) a lockspace on purpose. It writes the id file
// when there is none and records the id as the one this host knows (state directory, lockspaces.json),
// so the next start accepts it: a first start with lockspace_init = "explicit", or a lockspace
// replaced on purpose (a new cluster volume). The daemon never creates a lockspace this host knew
// (src/engine/lockspaces.ts); this command is how an operator says "this one, really".
import * as fs from 'node:fs';
import * as path from 'node:path';
import { lockspaceId, readLockspaceId } from '../engine/locker-hosts.js';
import { lockspaceDirs, readKnown, remember } from '../engine/lockspaces.js';
import { networkFsName } from '../journal/journal.js';

export interface InitResult {
  readonly dir: string;
  readonly id: string;
  readonly created: boolean;
  /** The id this host knew for the directory before, when it differed. */
  readonly replaced?: string;
  /** The filesystem the lockspace is on (statfs type name, or its magic number). */
  readonly fs: string;
}

function fsOf(dir: string): string {
  try {
    const t = fs.statfsSync(dir, { bigint: true }).type;
    return networkFsName(t) ?? `local (statfs type 0x${t.toString(16)})`;
  } catch (e) {
    return `unknown (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
}

export function initLockspaces(stateDir: string, dirs: readonly string[]): InitResult[] {
  const known = readKnown(stateDir);
  const out: InitResult[] = [];
  for (const raw of dirs) {
    const dir = path.resolve(raw);
    const had = readLockspaceId(dir);
    const id = had ?? lockspaceId(dir);
    const before = known[dir];
    out.push({ dir, id, created: had === undefined, ...(before !== undefined && before !== id ? { replaced: before } : {}), fs: fsOf(dir) });
  }
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  remember(stateDir, Object.fromEntries(out.map((r) => [r.dir, r.id])));
  return out;
}

/** The directories `lockspace init` works on without arguments: the configured lockspaces. */
export function configuredDirs(c: { fileLockspaceDir: string | null; lvmLockspaceDir: string | null; scsiLockspaceDir: string | null }): string[] {
  return lockspaceDirs(c).flatMap(([, d]) => (d === null ? [] : [d]));
}

export function formatInit(rs: readonly InitResult[]): string {
  return rs
    .map((r) => `${r.dir}: ${r.created ? 'created lockspace' : 'lockspace'} ${r.id} on ${r.fs} filesystem${r.replaced ? ` (this host knew ${r.replaced} there before; it now expects ${r.id})` : ''}\n`)
    .join('');
}
