// A disk's identity, as resolve.ts unifies aliases by it and as the journal records it (ResourceRef.inode):
// "dev:ino:btime" (btime the birth time in ns, statx; "dev:ino" where the filesystem records none),
// or "blk:rdev" for a block device (whichever device node names it).
import * as fs from 'node:fs';

export function identityOfStats(st: fs.BigIntStats): string {
  if (st.isBlockDevice()) return `blk:${st.rdev}`;
  // The birth time tells a renamed disk (same inode, same birth) from a new file that reused a
  // deleted disk's inode number (a new birth).
  return st.birthtimeNs > 0n ? `${st.dev}:${st.ino}:${st.birthtimeNs}` : `${st.dev}:${st.ino}`;
}

/** The identity of the disk a path names now; undefined if it names none (or cannot be stat'ed). */
export function identityOfPath(p: string): string | undefined {
  try {
    return identityOfStats(fs.statSync(p, { bigint: true }));
  } catch {
    return undefined;
  }
}

/** The identity of the disk an open description is on, whatever its name (if any) is now. Throws as fstat does. */
export function identityOfFd(fd: number): string {
  return identityOfStats(fs.fstatSync(fd, { bigint: true }));
}

/**
 * Whether two identities name one disk. A side without a birth time (a filesystem that records
 * none, a journal written before birth times were) is compared by dev and inode alone.
 */
export function sameIdentity(a: string, b: string): boolean {
  if (a === b) return true;
  if (a.startsWith('blk:') || b.startsWith('blk:')) return false;
  const pa = a.split(':');
  const pb = b.split(':');
  if (pa[0] !== pb[0] || pa[1] !== pb[1]) return false;
  return pa.length < 3 || pb.length < 3;
}
