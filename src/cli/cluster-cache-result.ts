// What one chain's catch-up ends in (ClusterCache, cluster-cache.ts), in a module of its own: the loader
// threads' messages carry it (cluster-cache-threads.ts), and neither module may import the other.
import type { SegmentProblem } from '../journal/segment.js';

/** Something the catch-up could not read: named by host, segment file and seq. */
export interface CatchUpProblem extends SegmentProblem {
  readonly host: string;
  readonly journal: string;
  readonly segment: string;
}

/**
 * A chain whose published history is no longer the one the cache read (a segment replaced under the
 * same name, a host's directory moved aside and published again, a journal restored from an older
 * copy): the cache dropped what it read from `seq` on and read what is published now.
 */
export interface CatchUpReset {
  readonly host: string;
  readonly journal: string;
  readonly segment: string;
  /** The first seq dropped (1: the whole chain was read again). */
  readonly seq: number;
  readonly reason: string;
}

export interface LoadResult {
  facts: number;
  problem?: CatchUpProblem;
  /** The chain's sealed newest segment lacks the successor its writer said it creates (successorMissing). */
  missing?: CatchUpProblem;
  /** The chain's sealed newest segment lacks its successor and no statement says it was removed: a note. */
  note?: string;
  pendingTail: boolean;
  resets: CatchUpReset[];
}
