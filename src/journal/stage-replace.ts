// The staging file removed or cut short under a running daemon (an operator cleaning `journal.db-*`
// as SQLite leftovers, a `truncate`): the daemon's fd then writes into an unlinked inode, or past the
// end of an emptied file (a hole of NULs, where recovery stops). A fact acknowledged there is lost at
// the next crash, and while another process holds journal.db's write lock the staging file is its
// only durable copy (decisions 0006, 0018, 0023). Before each append (one group of facts, one
// acknowledgement) the stage checks that its fd is still the file at its path; if not, every fact not
// yet in SQLite (the stage keeps them in memory) is written to a fresh file, synced, renamed over the
// path, the directory synced, and the stage switches to it before acknowledging anything more.
import { flockSync } from './flock.js';
import { closeSync, fdatasyncSync, fstatSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync, constants as fsConstants } from 'node:fs';
import * as path from 'node:path';

/**
 * fstat(fd) and stat(path) in one call that makes no JS object (the native binding's stageCheck, handed
 * in by the daemon: the journal imports nothing of the project): fills `out` with the fd's link count,
 * its size, and whether `path` is the same file (1), another (0) or missing (-1); other failures throw
 * as fs does.
 */
export type StageCheck = (fd: number, path: string, out: Float64Array) => void;

/**
 * Why the file open as `fd` is no longer the staging file at `file` holding the `written` bytes this
 * process staged there (removed, replaced, cut short), or null while it is. One fstat and one stat:
 * through `check` when given (it runs before every append: two fs.Stats were ~1.8 KB of garbage per
 * group commit; bench/README.md, proto26), else through fs.
 */
export function stageDisplaced(fd: number, file: string, written: number, check?: StageCheck): string | null {
  if (check === undefined) return stageDisplacedFs(fd, file, written);
  check(fd, file, checked);
  if (checked[0] === 0) return 'removed';
  const same = checked[2];
  if (same === -1) return 'removed (renamed away)';
  if (same !== 1) return 'replaced by another file';
  const size = checked[1]!;
  if (size < written) return `truncated to ${size} bytes (${written} had been staged)`;
  return null;
}

/** The check's answers, reused (one check at a time: the event loop's thread). */
const checked = new Float64Array(3);

/** `stageDisplaced` through fs.fstatSync and fs.statSync (a native binding built before stageCheck). */
export function stageDisplacedFs(fd: number, file: string, written: number): string | null {
  const own = fstatSync(fd);
  if (own.nlink === 0) return 'removed';
  let onPath;
  try {
    onPath = statSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'removed (renamed away)';
    throw e;
  }
  if (onPath.ino !== own.ino || onPath.dev !== own.dev) return 'replaced by another file';
  if (own.size < written) return `truncated to ${own.size} bytes (${written} had been staged)`;
  return null;
}

/**
 * Writes `lines` (every staged fact not yet in SQLite, as one append) to a fresh file, syncs it, takes
 * its flock, renames it over `file` and syncs the directory. Returns its fd and length; on failure
 * nothing at `file` changed and the error is thrown.
 */
export function rewriteStage(file: string, text: string): { fd: number; size: number } {
  const tmp = `${file}.new`;
  const fd = openSync(tmp, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_TRUNC, 0o600);
  const buf = Buffer.from(text);
  try {
    flockSync(fd, 'exnb');
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off, off);
    fdatasyncSync(fd);
    renameSync(tmp, file);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw e;
  }
  try {
    const dir = openSync(path.dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (e) {
    // The rename may not be durable: the facts are not acknowledged on this file. (It is at the path
    // now, with the facts; the caller keeps using the old fd until a later attempt succeeds.)
    closeSync(fd);
    throw e;
  }
  return { fd, size: buf.length };
}
