// `audit --disk PATH` for a path no fact names that is another name of a journaled disk (a hard link,
// a bind mount, the disk renamed): found by identity, as `vmlockd who` and acquire find it (review25a
// F7: audit answered "unknown disk" while who named the holder). Reads the file's identity here
// (stat) and looks it up among the identities the facts journaled.
import { diskIdentity } from '../engine/resolve.js';

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

/** The note `audit` prints when it answers for the journaled name of the path asked about. */
export function aliasNote(raw: string, a: DiskAlias): string {
  return `vmlockd: note: no fact names ${raw}; it is the same file (identity ${a.identity}) as ${a.disk}: answering for ${a.disk}\n`;
}
