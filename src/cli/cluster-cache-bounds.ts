// What the cluster read cache may write (review26b F5). Any host can write the shared lockspace, and
// every chain (host, journal id) the cache reads becomes its own SQLite file (db, shm, pos: ~330 KB
// even for a header-only segment of 184 bytes), by default in the state directory beside the daemon's
// journal. So, per catch-up:
//   - a chain with no cache file yet whose segments hold no fact (nor carried line) gets no file: it
//     has nothing to answer with (verify --cluster still reads and checks it);
//   - at most MAX_CHAINS_PER_HOST chains of one host directory and MAX_CHAINS_TOTAL in all are read
//     into the cache (those it holds already first, then by journal id; one it holds is never crowded
//     out by new chains of other hosts); the rest are not read, and
//     named in one problem per host (answers leave them out; verify --cluster reads them all);
//   - no chain is read into the cache while the cache's filesystem has less free space than
//     freeFloor() (the daemon's journal and staging file may live there): one problem says so.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SegmentFile } from '../journal/segment.js';

/** A host writes a new journal id when its state directory is begun again: a handful in a lifetime. */
export const MAX_CHAINS_PER_HOST = 64;
export const MAX_CHAINS_TOTAL = 1024;
/** A segment larger than this is assumed to hold a fact (a header is ~200 bytes, a seal ~120). */
const SCAN_BYTES = 64 * 1024;
const FLOOR_MAX = 512 * 1024 * 1024;

/** Free space the cache leaves on its filesystem: 10% of it, at most 512 MiB. */
export function freeFloor(totalBytes: number): number {
  return Math.min(FLOOR_MAX, Math.floor(totalBytes / 10));
}

/** Free bytes for an unprivileged writer and the floor, on the filesystem of `dir`; undefined when unknown. */
export function freeSpace(dir: string): { free: number; floor: number } | undefined {
  try {
    const s = fs.statfsSync(dir);
    return { free: s.bavail * s.bsize, floor: freeFloor(s.blocks * s.bsize) };
  } catch {
    return undefined;
  }
}

/**
 * True unless every segment of the chain is read whole and holds only its header (and a seal): a
 * segment that cannot be read, is large, or has a line that is not a seal counts as holding facts
 * (the loader then reads it and names what is wrong).
 */
export function chainMayHoldFacts(dir: string, segs: readonly SegmentFile[]): boolean {
  for (const s of segs) {
    let fd: number;
    try {
      fd = fs.openSync(path.join(dir, s.name), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
    } catch {
      return true;
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile() || st.size > SCAN_BYTES) return true;
      const buf = Buffer.alloc(st.size);
      let n = 0;
      while (n < buf.length) {
        const k = fs.readSync(fd, buf, n, buf.length - n, n);
        if (k === 0) break;
        n += k;
      }
      const lines = buf.toString('utf8', 0, n).split('\n');
      for (let i = 1; i < lines.length; i++) {
        const l = lines[i]!;
        if (l === '') continue;
        let o: unknown;
        try {
          o = JSON.parse(l);
        } catch {
          return true;
        }
        if (typeof o !== 'object' || o === null || (o as { t?: unknown }).t !== 'seal') return true;
      }
    } catch {
      return true;
    } finally {
      fs.closeSync(fd);
    }
  }
  return false;
}

export type ChainAdmission = 'read' | 'factless' | 'over';

/** One catch-up's count of the chains read into the cache, across hosts. */
export class ChainBudget {
  private total = 0;

  constructor(
    private readonly perHost = MAX_CHAINS_PER_HOST,
    private readonly all = MAX_CHAINS_TOTAL,
  ) {}

  /**
   * Which of one host's chains are read into the cache: `cached(journal)` says whether the cache
   * holds a file for it already. Returns the decision per journal and, when some are over a bound,
   * the text naming them.
   */
  plan(hostDir: string, byJournal: ReadonlyMap<string, readonly SegmentFile[]>, cached: (journal: string) => boolean): { admit: Map<string, ChainAdmission>; over?: string } {
    const admit = new Map<string, ChainAdmission>();
    const held: string[] = [];
    const fresh: string[] = [];
    for (const [journal, segs] of byJournal) {
      if (cached(journal)) held.push(journal);
      else if (chainMayHoldFacts(hostDir, segs)) fresh.push(journal);
      else admit.set(journal, 'factless');
    }
    const over: string[] = [];
    let mine = 0;
    const isHeld = new Set(held);
    for (const journal of [...held.sort(), ...fresh.sort()]) {
      // A chain the cache holds is not crowded out by new ones of hosts listed before it (the bound in
      // all counts it, and it was read under the bounds before).
      if (mine < this.perHost && (this.total < this.all || isHeld.has(journal))) {
        admit.set(journal, 'read');
        mine++;
        this.total++;
      } else {
        admit.set(journal, 'over');
        over.push(journal);
      }
    }
    if (over.length === 0) return { admit };
    const bound = mine >= this.perHost ? `${this.perHost} per host directory` : `${this.all} in all`;
    const names = over.slice(0, 5).join(', ') + (over.length > 5 ? `, ... (${over.length - 5} more)` : '');
    return {
      admit,
      over:
        `${over.length} journal(s) not read into the cluster cache, past its bound of ${bound} (each costs a cache file): ${names}; ` +
        `answers leave them out. So many journal ids in one lockspace are planted or runaway files; \`vmlockd journal verify --cluster\` reads them all`,
    };
  }
}
