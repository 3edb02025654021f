// Room one chain's load may take on the cluster cache's filesystem (review28c F4). The free-space floor
// (cluster-cache-bounds.ts) is checked before a chain's load; it did not count what that load grows. A
// bulk load into a chain the cache holds (BULK_BYTES and BULK_SHARE, cluster-cache.ts) is one write
// transaction that drops and builds the indexes again: every index page is rewritten into the WAL,
// which is kept until the commit and checkpointed into the file after it. On a 100 MiB tmpfs cache
// (session 31: 8 MiB of segments read, then 28 MiB more) it left 0 bytes free and a 63 MiB WAL, and no
// problem was said. Measured (session 30-31): the WAL ~0.8-1.0x the chain file after the load; the
// peak (WAL + the file's growth) 3.8-5.7x the new segment bytes. The model that held, for G = new
// segment bytes x max(2.0, chain file bytes / segment bytes read so far) x 1.2:
//   - a chain the cache holds, bulk: its file size before + 2G (the WAL holds the rewritten file and
//     the new pages, then the checkpoint grows the file by G);
//   - a chain the cache holds, not bulk: G (bounded transactions, the WAL is checkpointed as it goes);
//   - a new chain: G (built in its own file with journal_mode=OFF, buildChain: no WAL); 2G when the
//     filesystem has no link(2) and it is loaded in place (one transaction, WAL then checkpoint).
import * as fs from 'node:fs';
import Database from 'better-sqlite3';
import type { SegmentFile } from '../journal/segment.js';
import type { CatchUpProblem } from './cluster-cache-result.js';
import { freeSpace } from './cluster-cache-bounds.js';

/** A chain file's WAL larger than this when its catch-up starts was left behind (checkpointLeftWal). */
export const LEFT_WAL_BYTES = 1024 * 1024;
/** The cache's bytes per segment byte when the chain's own ratio is smaller or unknown (a new chain). */
const MIN_FILE_PER_BYTE = 2.0;
/** A margin on the measured ratios (their spread above: 3.8-5.7x the new bytes at the peak). */
const MARGIN = 1.2;

export interface ChainSize {
  /** The chain file's size now; 0 when the cache does not hold it. */
  fileBytes: number;
  /** Segment bytes the cache read of the chain so far (its hint's position); 0 for a new chain. */
  readBytes: number;
  /** Segment bytes this load reads. */
  newBytes: number;
  /** The load drops and builds the indexes in one transaction (cluster-cache.ts bulkLoad's rule). */
  bulk: boolean;
  /** A new chain is loaded in place (no link(2) on the cache's filesystem). */
  inPlace: boolean;
}

/** Room this chain's load may take on the cache's filesystem at its peak (the model above). */
export function loadRoom(c: ChainSize): number {
  if (c.newBytes <= 0) return 0;
  const perByte = Math.max(MIN_FILE_PER_BYTE, c.readBytes > 0 ? c.fileBytes / c.readBytes : 0);
  const g = Math.ceil(c.newBytes * perByte * MARGIN);
  if (c.fileBytes === 0) return c.inPlace ? 2 * g : g;
  return c.bulk ? c.fileBytes + 2 * g : g;
}

const mib = (n: number): string => `${Math.ceil(n / (1024 * 1024))} MiB`;

/**
 * A problem when this chain's load (`need`, loadRoom) does not fit in the free space above the floor,
 * less what the loads in flight may still take (`reserved`, LoaderPool.reserved): the chain is not
 * read into the cache, answers stop at what it read before. Undefined when it fits or the free space
 * is unknown. `bulkHeld`: a bulk load into a chain the cache holds (its WAL is said). (Under the floor
 * itself: floorProblem, said once.)
 */
export function roomProblem(dir: string, host: string, journal: string, segs: readonly SegmentFile[], reserved: number, need: number, bulkHeld: boolean): CatchUpProblem | undefined {
  const room = freeSpace(dir);
  if (room === undefined || need === 0) return undefined;
  const left = room.free - reserved - room.floor;
  if (left >= need) return undefined;
  return {
    file: dir,
    offset: 0,
    line: 0,
    host,
    journal,
    segment: segs[0]?.name ?? '',
    reason:
      `journal ${journal} of host ${host} is not read into the cluster cache ${dir}: its load may take ${mib(need)} there${bulkHeld ? ' (a large catch-up into a cached chain rewrites its indexes in one transaction, ~the chain file again in the WAL)' : ''}, ` +
      `and ${mib(Math.max(0, left))} is free above its floor of ${mib(room.floor)} (${mib(room.free)} free${reserved > 0 ? `, ${mib(reserved)} of it kept for the chains loading in parallel` : ''}): ` +
      `answers stop at what the cache read of it before; free space there, or give --cache DIR on another filesystem`,
  };
}

/**
 * A WAL left behind beside a chain file (over LEFT_WAL_BYTES: a catch-up SIGKILLed in a bulk load, or
 * one whose commit filled the filesystem so its close could not checkpoint, review28c F4: 63 MiB on a
 * 100 MiB tmpfs) is checkpointed into the file and truncated before the chain's room is counted. A
 * question that finds nothing new never opens the chain for writing, and a read-only one cannot
 * checkpoint: before, such a WAL stayed until the chain's next publication. A checkpoint that fails
 * (SQLITE_FULL: the frames past the file's end do not fit) leaves the WAL as it was, valid: the text
 * of a problem. Another process's catch-up writing the chain now (its WAL is not left behind; its
 * commit checkpoints) is waited for not at all and not named.
 */
export function checkpointLeftWal(file: string): string | undefined {
  let wal: number;
  try {
    wal = fs.statSync(`${file}-wal`).size;
  } catch {
    return undefined;
  }
  if (wal <= LEFT_WAL_BYTES) return undefined;
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('busy_timeout = 0');
    db.pragma('wal_checkpoint(TRUNCATE)');
    return undefined;
  } catch (e) {
    if ((e as { code?: unknown }).code === 'SQLITE_BUSY') return undefined;
    return `the chain file's WAL (${mib(wal)}, left by a catch-up that did not end: a SIGKILL or a full filesystem) could not be checkpointed: ${(e as Error).message}`;
  } finally {
    try {
      db?.close();
    } catch {
      // its close checkpoints too: the failure is said above
    }
  }
}

/** The problem for a chain whose left WAL could not be checkpointed (checkpointLeftWal's text): the chain is not read now. */
export function leftWalProblem(dir: string, host: string, journal: string, segs: readonly SegmentFile[], why: string): CatchUpProblem {
  return {
    file: dir,
    offset: 0,
    line: 0,
    host,
    journal,
    segment: segs[0]?.name ?? '',
    reason: `journal ${journal} of host ${host} is not read into the cluster cache ${dir}: ${why}; answers stop at what the cache read of it before (and what that WAL holds); free space there, or give --cache DIR on another filesystem`,
  };
}
