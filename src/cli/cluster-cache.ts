// The cluster audit's local read cache: every host's published history (`<lockspace>/.journal/<host>/`
// segments, see src/journal/segment.ts) copied into SQLite, one file per (host, journal id), each in
// the journal's own schema so the audit's queries and hold rules (audit-query.ts) run on it unchanged.
// Brought up to date before each answer: the host directories are listed again every time (cluster
// filesystems cache names), and each segment is read from the byte offset the cache stopped at up to
// the end of the file, never up to a stat()ed size (cluster filesystems cache attributes too).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { Journal, migrate } from '../journal/journal.js';
import { AUDIT_INDEXES, DISK_NAMES_PENDING, DISK_NAMES_TRIGGERS_SQL, GENESIS_HASH, fillDiskNames } from '../journal/schema.js';
import { RARE_KINDS, RARE_KINDS_INDEX } from '../journal/query.js';
import { prunedFileName, readPruned } from '../journal/segment-pruned.js';
import { ELIDED_VALUE, elideInPlace, elidePayload, hasElidedPayloads } from '../journal/payload-elide.js';
import {
  PUBLISHED_DIR,
  SegmentDecoder,
  listSegments,
  decodeSegment,
  parseSegmentFileName,
  initialDecoderState,
  type SegmentCarried,
  type SegmentHeader,
  type SegmentDecoderState,
  type SegmentFact,
  type SegmentFile,
  type SegmentProblem,
  segmentFileName,
} from '../journal/segment.js';
import { readSuccessor, sealedRecently, successorFileName } from '../journal/segment-successor.js';
import { PrefixHash, RACY_MS, WholeTracker, lineAfter, sameStamp, stampAt, stampOf, verifyWhole, type WholeRecord } from './cluster-cache-identity.js';
import { ChainBudget, freeSpace } from './cluster-cache-bounds.js';
import { checkpointLeftWal, leftWalProblem, loadRoom, roomProblem, type ChainSize } from './cluster-cache-room.js';
import type { CatchUpProblem, CatchUpReset, LoadResult } from './cluster-cache-result.js';
export type { CatchUpProblem, CatchUpReset, LoadResult } from './cluster-cache-result.js';
import { pinOf } from '../engine/locker-hosts.js';
import { LoaderPool, catchUpThreads, parallelBytes, type LoaderError } from './cluster-cache-threads.js';

/**
 * Facts per cache transaction: big enough that the commit is amortised, small enough that a batch's
 * facts (and a read chunk's lines) die young: at 20,000 facts and 4 MiB chunks they outlived V8's young
 * generation and the catch-up spent ~20% more CPU time (same-run A/B, bench/README.md).
 */
const BATCH_FACTS = 4000;
const READ_CHUNK = 1024 * 1024;
const ROWS_PER_INSERT = 50;
/**
 * A chain file's page size: 16 KiB instead of SQLite's 4 KiB. The bulk load and the index builds touch a
 * quarter of the pages (catch-up ~20% less CPU time, same-run A/B in bench/README.md) and the file is a
 * little smaller; the questions read index ranges, within the noise (`--at`, point lookups, maybe
 * +0.7 ms of CPU time at 8 x 100k). Only new files: an existing cache keeps its page size.
 */
const CACHE_PAGE_SIZE = 16384;
/**
 * A chain cache loading at least this many segment bytes, and at least BULK_SHARE of what it read
 * before (all of it for an empty one), drops its indexes and disk_names triggers for the load and
 * builds them once at the end: sorting once is cheaper than maintaining the covering indexes row by
 * row (~5 us per fact held to rebuild against ~35 us per new fact to maintain: the second half of a
 * 2 x 100k fixture read into a cache holding the first half went 20-21k -> 56-67k facts/s of CPU
 * time, bench/README.md). No other process ever sees the chain without its indexes: a new chain is
 * built in a file of its own and linked in whole (buildChain), and a bulk load into a chain the cache
 * holds is one write transaction, so readers (WAL) see the chain as it was until it commits whole.
 */
const BULK_BYTES = 16 * 1024 * 1024;
const BULK_SHARE = 0.25;
/**
 * New segment bytes from which a chain is loaded on a loader thread (decision 0030): BULK_BYTES, ~34k
 * facts of the bench fixture (~490 bytes each), ~0.4 s of CPU time at ~80k facts/s. A loader costs
 * its start once per catch-up (an isolate and the module graph: ~150-200 ms of CPU time, dist build,
 * session 31); the main thread loads the smaller chains meanwhile.
 */
const PARALLEL_BYTES = BULK_BYTES;
/** How long a chain's catch-up is tried again while another process's catch-up of it commits first. */
const CONCURRENT_MS = 60_000;
const STATE_KEY = 'cluster_state';
/**
 * Bytes before the stored offset whose hash is kept with the position: they end with the last line
 * read, whose seq and chain hash (a fact's or a seal's, or a header's prev) stand for every fact
 * before it, so equal bytes there mean the file still holds the history the cache read.
 */
const TAIL_WINDOW = 512;
const GENESIS_HEX = GENESIS_HASH.toString('hex');
/** Facts read before that no segment holds any more (VanishedRange), with the segment and when it was noticed. */
const VANISHED_TABLE = `CREATE TABLE IF NOT EXISTS vanished (
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, host TEXT NOT NULL, kind TEXT NOT NULL, resource TEXT, disk TEXT,
  owner TEXT, owner_name TEXT, payload TEXT, hash BLOB, segment TEXT NOT NULL, noticed TEXT NOT NULL)`;

/**
 * Every sealed segment the cache read to its seal (the chain's segments before the one it stands in):
 * its seq range, the bytes read (its whole size), its inode, the hash of its last bytes (tailOf), its
 * stamp (size, inode, mtime, ctime: cluster-cache-identity.ts) and the hash of all its bytes read
 * (`whole`). Each catch-up checks them against the listing and a stat, so a segment removed, emptied,
 * cut shorter, replaced or rewritten in place after it was read is noticed however far behind the
 * cache's position it lies. `stamp` and `whole` are NULL in rows an older version wrote (and in a row
 * whose bytes changed while they were read): such a segment is read again once, comparing its facts.
 */
const READ_SEGMENTS_TABLE = `CREATE TABLE IF NOT EXISTS read_segments (
  name TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL, end INTEGER NOT NULL, size INTEGER NOT NULL, ino INTEGER NOT NULL, tail TEXT NOT NULL,
  stamp TEXT, whole TEXT)`;

/** A read_segments table of an older version (without stamp and whole) gains them (NULL: checked by reading again). */
function upgradeReadSegments(db: Database.Database): void {
  const cols = db.prepare(`SELECT name FROM pragma_table_info('read_segments')`).pluck().all() as string[];
  if (cols.includes('whole')) return;
  try {
    db.transaction(() => {
      if (!cols.includes('stamp')) db.exec('ALTER TABLE read_segments ADD COLUMN stamp TEXT');
      db.exec('ALTER TABLE read_segments ADD COLUMN whole TEXT');
    }).immediate();
  } catch (e) {
    // Another catch-up upgraded it meanwhile.
    if (!/duplicate column/.test((e as Error).message)) throw e;
  }
}

/**
 * The cache's indexes, in place of the journal's AUDIT_INDEXES (same names, so the audit's queries
 * run unchanged). A daemon's journal keeps its indexes narrow because each one costs every append;
 * the cache is written in bulk and read by every cluster question, so its disk and VM indexes carry
 * every column a question reads (after (column, at, seq): the order the walks go) and answer without
 * a table lookup per fact: a VM's or a disk's facts lie all over a chain's table, and at 8 x 1M facts
 * the cache outgrows the page cache, so each lookup was a cold page (`--vm` at 8 x 1M: ~1.6x less
 * CPU time and ~2x less wall time covering, for ~20% more catch-up CPU time). Facts with no disk (no
 * VM) are left out: `disk = ?` implies that. RARE_KINDS_INDEX does the same for the few kinds the
 * conflict and restart questions ask for.
 */
const COVERED = ['seq', 'kind', 'host', 'resource', 'disk', 'owner', 'owner_name', 'payload'];
const covering = (column: string) => COVERED.filter((c) => c !== column && c !== 'seq').join(', ');
export const CACHE_INDEXES: ReadonlyArray<{ readonly name: string; readonly sql: string }> = [
  { name: 'facts_disk_at', sql: `CREATE INDEX facts_disk_at ON facts(disk, at, seq, ${covering('disk')}) WHERE disk IS NOT NULL` },
  { name: 'facts_owner_at', sql: `CREATE INDEX facts_owner_at ON facts(owner, at, seq, ${covering('owner')}) WHERE owner IS NOT NULL` },
  { name: 'facts_kind_at', sql: 'CREATE INDEX facts_kind_at ON facts(kind, at)' },
  { name: 'facts_at', sql: 'CREATE INDEX facts_at ON facts(at)' },
  { name: RARE_KINDS_INDEX, sql: `CREATE INDEX ${RARE_KINDS_INDEX} ON facts(kind, at, seq, ${covering('kind')}) WHERE ${RARE_KINDS.map((k) => `kind = '${k}'`).join(' OR ')}` },
];

/**
 * Names the index set and the payload form in each chain's hint: a cache built with other indexes, or
 * with whole payloads (an older vmlockd's), is opened once to rebuild them.
 */
const INDEX_TAG = createHash('sha256').update([...CACHE_INDEXES.map((ix) => ix.sql), ELIDED_VALUE].join('\n')).digest('hex').slice(0, 12);

/** Replaces any index of the chain file that is not the cache's own (a journal schema's, an older cache's). */
function ensureIndexes(db: Database.Database): void {
  const have = new Map((db.prepare(`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'facts'`).all() as Array<{ name: string; sql: string | null }>).map((r) => [r.name, r.sql]));
  const stale = CACHE_INDEXES.filter((ix) => have.get(ix.name) !== ix.sql);
  if (stale.length === 0) return;
  db.transaction(() => {
    for (const ix of stale) {
      db.exec(`DROP INDEX IF EXISTS ${ix.name}`);
      db.exec(ix.sql);
    }
  }).immediate();
}

/**
 * A bulk load lifts the disk_names triggers (schema version 4: two INSERT ... SELECT per inserted fact,
 * ~3-4 us per fact with a daemon's payloads, ~20% of a bulk load) and fills the table set-based after it
 * (ensureDiskNames: ~2.4 us per fact, the same rows; bench/README.md). It marks every fact pending in
 * the same transaction, so a reader in between (another audit on this cache, or one after a SIGKILL of
 * the load) scans the facts' payloads as for a file without the table: slower, never a wrong answer.
 */
function suspendDiskNames(db: Database.Database): void {
  db.transaction(() => {
    for (const t of DISK_NAMES_TRIGGERS_SQL) db.exec(`DROP TRIGGER IF EXISTS ${t.name}`);
    db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(DISK_NAMES_PENDING, String(Number.MAX_SAFE_INTEGER));
  }).immediate();
}

/**
 * The chain's disk_names complete and its triggers in place: after a bulk load, and on every catch-up
 * that opens the chain (a load killed with the triggers lifted; a cache an older vmlockd wrote, whose
 * migration to version 4 left its facts pending and has no writer thread to index them). One
 * transaction: every fact's rows (set-based, fillDiskNames), the triggers, the pending mark 0.
 */
function ensureDiskNames(db: Database.Database): void {
  const have = new Set(db.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger'`).pluck().all() as string[]);
  const pending = db.prepare(`SELECT value FROM meta WHERE key = ?`).pluck().get(DISK_NAMES_PENDING) as string | undefined;
  if (pending === '0' && DISK_NAMES_TRIGGERS_SQL.every((t) => have.has(t.name))) return;
  db.transaction(() => {
    fillDiskNames(db);
    for (const t of DISK_NAMES_TRIGGERS_SQL) db.exec(`DROP TRIGGER IF EXISTS ${t.name}; ${t.sql}`);
    db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(DISK_NAMES_PENDING, '0');
  }).immediate();
}

/** Where a chain's cache stands, stored in its meta table in the same transaction as the facts. */
interface ChainState {
  host: string;
  journal: string;
  /** The segment being read, and the decoder's position in it. */
  segment: string;
  decoder: SegmentDecoderState;
  firstAt?: string;
  last?: { seq: number; at: string; kind: string };
  facts: number;
  /** tailOf(segment, decoder.offset) when it was read (absent in caches written before it was kept). */
  tail?: string;
  /**
   * The hash of the segment's bytes from its start to decoder.offset and the stamp taken before they
   * were read (cluster-cache-identity.ts). Absent in caches written before it was kept: such a chain
   * is read again once from its first listed segment, comparing each fact it holds.
   */
  whole?: WholeRecord;
  /** The header of the segment the chain was first loaded from: a re-published history can link to it. */
  base?: { first: number; prev: string };
  /** Facts read before that no segment holds any more (the `vanished` table), as ranges. */
  vanished?: VanishedRange[];
}

/**
 * Facts the cache read from a host's segments before and that are no longer published: the chain's
 * segments now end before them (a segment cut shorter in place, the newest segment removed, a history
 * moved aside and published again not yet that far). They are no answer's facts any more; the cache
 * keeps them aside (its `vanished` table) to say so on every question until the same facts are
 * published again (or others under their seq numbers, a history published again differently).
 */
export interface VanishedRange {
  /** The segment the cache stood in when it read them (the last of them was read from it). */
  readonly segment: string;
  readonly from: number;
  readonly to: number;
  readonly fromAt: string;
  readonly toAt: string;
  /** When a catch-up found them gone. */
  readonly noticed: string;
}

/** One (host, journal id) chain as the cache holds it. */
export interface CachedChain {
  readonly host: string;
  readonly journal: string;
  readonly file: string;
  /** The time of its first fact (a host's journals are ordered by it); undefined while empty. */
  readonly firstAt?: string;
  readonly last?: { readonly seq: number; readonly at: string; readonly kind: string };
  readonly facts: number;
  /** Facts read before that are no longer published (see VanishedRange). */
  readonly vanished?: readonly VanishedRange[];
}

export interface CatchUpReport {
  readonly hosts: number;
  readonly chains: number;
  readonly newFacts: number;
  readonly ms: number;
  readonly problems: CatchUpProblem[];
  /** Chains read again from some seq on because what is published differs from what the cache read. */
  readonly resets: CatchUpReset[];
  /** Chains whose newest segment ends in an unfinished line (a live writer mid-line, or a crash tail). */
  readonly pendingTails: number;
  /**
   * Sealed newest segments whose successor is not there although the successor statement (read now,
   * or read before by this cache and removed since) says its writer creates it right after the seal:
   * removed. Also in `problems`.
   */
  readonly missingNewest: CatchUpProblem[];
  /**
   * Chains whose history does not start where it should (missingHead): their first listed segment
   * starts after seq 1, or after the pruned-through marker's seq, and nothing says why. Checked on
   * every catch-up from the listing, so a fresh cache and a warm one both name it.
   */
  readonly missingHeads: MissingHead[];
  /**
   * Chains whose sealed newest segment has no successor and no successor statement covering the
   * seal: a removed newest segment or a rotation waiting for the next fact (verify --cluster's note).
   */
  readonly notes: Array<{ readonly host: string; readonly journal: string; readonly text: string }>;
}

/** Seq `from` to `to` of a chain are in no segment and no pruned-through marker covers them. */
export interface MissingHead {
  readonly host: string;
  readonly journal: string;
  /** The first segment listed. */
  readonly segment: string;
  readonly from: number;
  readonly to: number;
  readonly reason: string;
}

/**
 * The cache directory for a lockspace: `root/<lockspace id>-<where>`, where `<where>` hashes the
 * lockspace's real path and the device and inode of its `.journal` directory. The id alone is not
 * enough: a copied lockspace (a DR copy, a restored snapshot) carries the original's id file, and must
 * not answer from the original's cache (facts no segment of the copy holds). A remount that changes
 * the device number costs one full read, never a wrong answer.
 */
export function cacheDirFor(root: string, lockspace: string): string {
  const id = pinOf(lockspace)?.id;
  let real = path.resolve(lockspace);
  try {
    real = fs.realpathSync(real);
  } catch {
    // not there (yet): the path as given
  }
  let where = real;
  try {
    const st = fs.statSync(path.join(real, PUBLISHED_DIR));
    where += `\u0000${st.dev}:${st.ino}`;
  } catch {
    // no published history yet: the path alone
  }
  const hash = createHash('sha256').update(where).digest('hex').slice(0, 16);
  return path.join(root, id !== undefined && /^[A-Za-z0-9-]{1,64}$/.test(id) ? `${id}-${hash}` : `path-${hash}`);
}

/**
 * The cache root: `--cache DIR`; else `<state dir>/cluster-cache` when the state directory exists and
 * is writable (beside the journal); else `$XDG_CACHE_HOME/vmlockd` or `~/.cache/vmlockd`.
 */
export function cacheRoot(opts: { cache?: string | undefined; stateDir?: string | undefined }): string {
  if (opts.cache !== undefined) return path.resolve(opts.cache);
  if (opts.stateDir !== undefined) {
    try {
      fs.accessSync(opts.stateDir, fs.constants.W_OK);
      return path.join(opts.stateDir, 'cluster-cache');
    } catch {
      // not ours to write (another user's daemon): the user's cache instead
    }
  }
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'vmlockd');
}

export class ClusterCache {
  /** link(2) failed as on a filesystem without hard links: new chains are loaded in place (buildChain). */
  private noLink = false;

  private constructor(
    readonly dir: string,
    readonly lockspace: string,
  ) {}

  static open(root: string, lockspace: string): ClusterCache {
    const dir = cacheDirFor(root, lockspace);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return new ClusterCache(dir, lockspace);
  }

  /** The hosts that published anything: the directories under `<lockspace>/.journal/`, listed now. */
  publishedHosts(): string[] {
    try {
      return fs
        .readdirSync(path.join(this.lockspace, PUBLISHED_DIR), { withFileTypes: true })
        .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
        .map((e) => e.name)
        .sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  /**
   * Reads every host's new segment bytes into the cache. With VMLOCKD_CLUSTER_THREADS above 1 (by
   * default the machine's parallelism), the chains with PARALLEL_BYTES or more to read are loaded on
   * that many loader threads while this thread loads the others and hands the loaders the next chain
   * as each one finishes (cluster-cache-threads.ts, decision 0030); the report is assembled in the
   * listing's order either way, so it is the serial catch-up's.
   */
  catchUp(): CatchUpReport {
    const t0 = performance.now();
    const problems: CatchUpProblem[] = [];
    const resets: CatchUpReset[] = [];
    const missingNewest: CatchUpProblem[] = [];
    const missingHeads: MissingHead[] = [];
    const notes: CatchUpReport['notes'] = [];
    let newFacts = 0;
    let chains = 0;
    let pendingTails = 0;
    const hosts = this.publishedHosts();
    /** host/journal of every chain listed now, and the hosts whose directory could not be listed. */
    const listed = new Set<string>();
    const unreadable = new Set<string>();
    const budget = new ChainBudget();
    let roomSaid = false;
    const threads = catchUpThreads();
    const pool = threads > 1 ? new LoaderPool<LoadResult>(threads) : undefined;
    const threshold = parallelBytes(PARALLEL_BYTES);
    // The tests' threshold sends every chain to a loader, a lone one too.
    const loneOnMain = threshold === PARALLEL_BYTES;
    /** The report's parts in the listing's order: a chain's once it is loaded (here or on a loader). */
    const parts: Array<() => void> = [];
    /** Chains for the loaders, in the listing's order, not handed to one yet. */
    const queue: Array<{ host: string; journal: string; list: SegmentFile[]; bytes: number; slot: { out?: ChainOutcome } }> = [];
    /** Chains on a loader: their outcome, filled in as their loaders answer. */
    const onLoader = new Map<number, { out?: ChainOutcome }>();
    const take = (host: string, journal: string, hostDir: string, list: SegmentFile[], out: ChainOutcome): void => {
      if ('room' in out) {
        // Said once, at the first chain (in the listing's order) left unread for it.
        if (!roomSaid) problems.push(out.room);
        roomSaid = true;
        return;
      }
      if ('full' in out) {
        problems.push(out.full);
        return;
      }
      if ('died' in out) {
        // Its thread ended without an answer: its build file (if it was building the chain) is nobody's.
        removeBuild(buildFileName(this.chainFile(host, journal), process.pid));
        problems.push({ file: hostDir, offset: 0, line: 0, reason: `cannot read journal ${journal} (${list.map((s) => s.name).join(', ')}): the catch-up worker died; answers leave out what it did not commit, the next catch-up reads it again`, host, journal, segment: list[0]?.name ?? '' });
        return;
      }
      if ('e' in out) {
        const e = out.e;
        if (e instanceof ConcurrentCatchUp || (e as { code?: unknown }).code === 'SQLITE_BUSY') return;
        // One host's unreadable entry is that host's problem, named with its path; the others are read.
        problems.push({ file: hostDir, offset: 0, line: 0, reason: `cannot read journal ${journal} (${list.map((s) => s.name).join(', ')}): ${(e as Error).message}`, host, journal, segment: list[0]?.name ?? '' });
        return;
      }
      const r = out.r;
      newFacts += r.facts;
      if (r.problem !== undefined) problems.push(r.problem);
      if (r.missing !== undefined) {
        problems.push(r.missing);
        missingNewest.push(r.missing);
      }
      if (r.note !== undefined) notes.push({ host, journal, text: r.note });
      resets.push(...r.resets);
      if (r.pendingTail) pendingTails++;
    };
    /**
     * Whether a chain is loaded now: not under the floor, and its load's room (loadRoom: a bulk load
     * into a cached chain takes ~its file again in the WAL, review28c F4) fits above it, less what the
     * loads in flight may still take (`reserved`). Its room, for the loaders' reservation, or why not.
     */
    const admit = (host: string, journal: string, list: SegmentFile[], reserved: number): { room: number } | { out: ChainOutcome } => {
      const left = checkpointLeftWal(this.chainFile(host, journal));
      if (left !== undefined) return { out: { full: leftWalProblem(this.dir, host, journal, list, left) } };
      const floor = floorProblem(this.dir, host, journal, list, reserved);
      if (floor !== undefined) return { out: { room: floor } };
      const size = chainSize(this.chainFile(host, journal), path.join(this.lockspace, PUBLISHED_DIR, host), list, this.noLink);
      const room = loadRoom(size);
      const full = roomProblem(this.dir, host, journal, list, reserved, room, size.fileBytes > 0 && size.bulk);
      return full !== undefined ? { out: { full } } : { room };
    };
    /** The loaders' answers so far (`wait`: at least one, while any is busy), and the queued chains to the loaders free now. */
    const pump = (p: LoaderPool<LoadResult>, wait: boolean): void => {
      for (const d of p.collect(wait)) onLoader.get(d.id)!.out = 'died' in d ? { died: true } : 'result' in d ? { r: d.result } : { e: loaderError(d.error) };
      // No thread for one big chain alone: it would only add a thread's start (~150-200 ms of CPU time,
      // dist build) to a load that runs no faster there. Loaders start once two are waiting.
      if (loneOnMain && !p.started() && queue.length < 2) return;
      while (queue.length > 0 && p.hasFree()) {
        const j = queue.shift()!;
        // Checked as it starts: the loads in flight may still grow by what reserved() says.
        const a = admit(j.host, j.journal, j.list, p.reserved());
        if ('out' in a) {
          j.slot.out = a.out;
          continue;
        }
        const id = onLoader.size + 1;
        onLoader.set(id, j.slot);
        const file = this.chainFile(j.host, j.journal);
        if (!p.dispatch({ id, dir: this.dir, lockspace: this.lockspace, host: j.host, journal: j.journal, segs: j.list, noLink: this.noLink }, [file, `${file}-wal`, buildFileName(file, process.pid)], a.room)) {
          // No thread could be started for it: loaded here, as the serial path would (review31b HIGH, EAGAIN).
          onLoader.delete(id);
          here(j);
        }
      }
    };
    /** A queued chain loaded on the main thread after all (no loader free and none can be started). */
    const here = (j: (typeof queue)[number]): void => {
      const a = admit(j.host, j.journal, j.list, pool?.reserved() ?? 0);
      if ('out' in a) j.slot.out = a.out;
      else {
        try {
          j.slot.out = { r: this.loadChain(j.host, j.journal, j.list) };
        } catch (e) {
          j.slot.out = { e };
        }
      }
    };
    try {
      for (const host of hosts) {
        let segs: SegmentFile[];
        try {
          segs = listSegments(path.join(this.lockspace, PUBLISHED_DIR, host));
        } catch {
          unreadable.add(host);
          continue; // removed while listing
        }
        for (const s of segs) listed.add(`${host}/${s.journalId}`);
        const byJournal = new Map<string, SegmentFile[]>();
        for (const s of segs) {
          const list = byJournal.get(s.journalId);
          if (list === undefined) byJournal.set(s.journalId, [s]);
          else list.push(s);
        }
        // Bounded (cluster-cache-bounds.ts): no file for a chain without facts, so many chains per host and in all.
        const hostDir = path.join(this.lockspace, PUBLISHED_DIR, host);
        const plan = budget.plan(hostDir, byJournal, (j) => fs.existsSync(this.chainFile(host, j)));
        if (plan.over !== undefined) {
          const first = [...plan.admit].find(([, a]) => a === 'over')!;
          const over: CatchUpProblem = { file: hostDir, offset: 0, line: 0, reason: plan.over, host, journal: first[0], segment: byJournal.get(first[0])![0]!.name };
          parts.push(() => problems.push(over));
        }
        for (const [journal, list] of byJournal) {
          chains++;
          const head = missingHead(hostDir, host, journal, list);
          if (head !== undefined) missingHeads.push(head);
          if (plan.admit.get(journal) !== 'read') continue;
          if (pool !== undefined) {
            const bytes = newBytes(this.chainFile(host, journal), hostDir, list);
            if (bytes >= threshold && bytes > 0) {
              const slot: { out?: ChainOutcome } = {};
              queue.push({ host, journal, list, bytes, slot });
              parts.push(() => take(host, journal, hostDir, list, slot.out!));
              pump(pool, false);
              continue;
            }
          }
          let out: ChainOutcome;
          const a = admit(host, journal, list, pool?.reserved() ?? 0);
          if ('out' in a) out = a.out;
          else {
            try {
              out = { r: this.loadChain(host, journal, list) };
            } catch (e) {
              out = { e };
            }
          }
          parts.push(() => take(host, journal, hostDir, list, out));
          if (pool !== undefined) pump(pool, false);
        }
      }
      if (pool !== undefined) {
        const alone = loneOnMain && !pool.started() && queue.length === 1 ? queue.pop() : undefined;
        if (alone !== undefined) {
          const a = admit(alone.host, alone.journal, alone.list, 0);
          if ('out' in a) alone.slot.out = a.out;
          else {
            try {
              alone.slot.out = { r: this.loadChain(alone.host, alone.journal, alone.list) };
            } catch (e) {
              alone.slot.out = { e };
            }
          }
        }
        while (queue.length > 0 || pool.busy() > 0) {
          // No loader busy and none can be started: the rest here (else this would wait for ever).
          if (pool.busy() === 0 && !pool.hasFree()) here(queue.shift()!);
          else pump(pool, true);
        }
        if (pool.noLink) this.noLink = true;
      }
    } finally {
      pool?.close();
    }
    for (const p of parts) p();
    this.unlistChains(listed, unreadable);
    return { hosts: hosts.length, chains, newFacts, ms: performance.now() - t0, problems, resets, pendingTails, missingNewest, missingHeads, notes };
  }

  /** A cache object for a loader thread (cluster-cache-worker.ts): the main thread's cache directory, and what it knows of link(2). */
  static forLoader(dir: string, lockspace: string, noLink: boolean): ClusterCache {
    const c = new ClusterCache(dir, lockspace);
    c.noLink = noLink;
    return c;
  }

  /** Whether link(2) failed here as on a filesystem without hard links (a loader thread tells the main thread). */
  get linkless(): boolean {
    return this.noLink;
  }

  /**
   * One chain's catch-up, as catchUp runs it on this thread or a loader thread: tried again while
   * another process's catch-up of it commits first. Throws what it ended in (catchUp's `take`).
   */
  loadChain(host: string, journal: string, list: SegmentFile[]): LoadResult {
    // Another process's catch-up committed first (or holds the chain's write lock past the busy
    // timeout: a bulk load is one transaction): caught up again from what it committed, so this
    // answer reads all that was published when it was asked, not the other's part load (review28c
    // F6: before, it answered from it, silently). Past CONCURRENT_MS, as last committed.
    const until = performance.now() + CONCURRENT_MS;
    for (;;) {
      try {
        return this.catchUpChain(host, journal, list);
      } catch (e) {
        if (!(e instanceof ConcurrentCatchUp || (e as { code?: unknown }).code === 'SQLITE_BUSY') || performance.now() > until) throw e;
      }
    }
  }

  /**
   * Chains the cache holds that no listed segment belongs to now: the host's directory renamed, moved
   * aside or removed, or every segment of that journal removed. A reader without the cache finds none
   * of their facts (a renamed directory's segments name their own host: that directory's problem), so
   * they vanish (out of the answers, named on every question) until they are listed again.
   */
  private unlistChains(listed: ReadonlySet<string>, unreadable: ReadonlySet<string>): void {
    let hosts: string[];
    try {
      hosts = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const host of hosts) {
      if (unreadable.has(host)) continue; // not listed now is not gone
      let files: string[];
      try {
        files = fs.readdirSync(path.join(this.dir, host)).filter((f) => /^[0-9a-f]{16}\.db$/.test(f));
      } catch {
        continue;
      }
      for (const f of files) {
        const journal = f.slice(0, 16);
        if (listed.has(`${host}/${journal}`)) continue;
        const file = path.join(this.dir, host, f);
        if (unlistedHint(file)) continue;
        const db = new Database(file);
        try {
          db.pragma('journal_mode = WAL');
          db.pragma('synchronous = OFF');
          db.pragma('busy_timeout = 10000');
          migrate(db, file);
          if (!hasElidedPayloads(db)) elideInPlace(db, CACHE_INDEXES);
          new ChainLoader(db, this.lockspace, host, journal, []).unlist();
          fs.writeFileSync(hintFile(file), JSON.stringify({ unlisted: true }));
        } catch (e) {
          // As in a chain's catch-up: another process's write transaction past the busy timeout (a bulk
          // load is one, 902627b) or its catch-up first; the next question unlists it (review28c F3).
          if (!(e instanceof ConcurrentCatchUp) && (e as { code?: unknown }).code !== 'SQLITE_BUSY') throw e;
        } finally {
          db.close();
        }
      }
    }
  }

  private chainFile(host: string, journal: string): string {
    return path.join(this.dir, host, `${journal}.db`);
  }

  private catchUpChain(host: string, journal: string, segs: SegmentFile[]): LoadResult {
    const file = this.chainFile(host, journal);
    const dir = path.join(this.lockspace, PUBLISHED_DIR, host);
    const same = nothingNew(file, dir, segs);
    if (same !== undefined) return withMissing({ facts: 0, pendingTail: false, resets: [] }, successorMissing(file, dir, host, journal, segs, same));
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    removeDeadBuilds(file);
    if (!this.noLink && !fs.existsSync(file)) {
      const built = this.buildChain(file, dir, host, journal, segs);
      // undefined: another process linked its build of this chain first; catch up on that one. Or the
      // cache's filesystem has no link(2): the chain is loaded in place (a bulk load is one transaction).
      if (built !== undefined) return built;
    }
    const db = new Database(file);
    try {
      // Before the first table: a new file only (an existing one keeps its page size, SQLite ignores it).
      db.pragma(`page_size = ${CACHE_PAGE_SIZE}`);
      db.pragma('journal_mode = WAL');
      // A cache: it can always be read again from the segments, so a commit need not wait for the disk.
      db.pragma('synchronous = OFF');
      db.pragma('busy_timeout = 10000');
      migrate(db, file);
      // Payloads stored elided (payload-elide.ts): a fresh chain is only marked; one an older vmlockd
      // wrote with whole payloads is rewritten once, its covering indexes built again, in one transaction.
      if (!hasElidedPayloads(db)) elideInPlace(db, CACHE_INDEXES);
      const r = new ChainLoader(db, this.lockspace, host, journal, segs).run();
      return withMissing(r, successorMissing(file, dir, host, journal, segs, writeHint(file, db, dir, segs)));
    } finally {
      db.close();
    }
  }

  /**
   * A chain the cache does not hold yet, read into a file of its own (`<journal>.db.build-<host>-<pid>`)
   * and linked in as `<journal>.db` once complete, so no other process sees it part loaded (before,
   * a question from another process during a first load failed on the dropped indexes). Nobody else
   * reads or writes that file, so it is written without a journal (`journal_mode = OFF`) and with an
   * exclusive lock: a SIGKILL leaves only a file that removeDeadBuilds deletes, never a damaged chain,
   * and no page is written twice (WAL, then checkpoint: ~10-15% of the load's CPU time, bench/README.md).
   * It is switched to WAL before it is linked in, as every chain file is. Undefined when another
   * process linked its own build of the chain first (link(2) does not replace): this one is dropped.
   */
  private buildChain(file: string, dir: string, host: string, journal: string, segs: SegmentFile[]): LoadResult | undefined {
    const tmp = buildFileName(file, process.pid);
    removeBuild(tmp);
    let db: Database.Database | undefined = new Database(tmp);
    try {
      db.pragma(`page_size = ${CACHE_PAGE_SIZE}`);
      db.pragma('journal_mode = OFF');
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('synchronous = OFF');
      migrate(db, tmp);
      if (!hasElidedPayloads(db)) elideInPlace(db, CACHE_INDEXES);
      const r = new ChainLoader(db, this.lockspace, host, journal, segs, true).run();
      db.pragma('journal_mode = WAL');
      db.close();
      db = undefined;
      try {
        fs.linkSync(tmp, file);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return undefined;
        // A filesystem without hard links (vfat, CIFS without unix extensions, some FUSE ones; review28c
        // F1: before, every new chain failed there): loaded in place, as before 902627b, from now on.
        if (code !== undefined && NO_LINK.has(code)) {
          this.noLink = true;
          return undefined;
        }
        throw e;
      }
      // The build's name goes at once: a SIGKILL after the hint is written left it beside the chain,
      // and the next catch-up, finding nothing new, never looked for dead builds (a window the
      // parallel catch-up's kills, three builds at a time, can land in).
      removeBuild(tmp);
      const hint = openForHint(file, (d) => writeHint(file, d, dir, segs));
      return withMissing(r, successorMissing(file, dir, host, journal, segs, hint));
    } finally {
      db?.close();
      removeBuild(tmp);
    }
  }

  /**
   * Every chain the cache holds, a host's oldest journal first. `all`: also the chains that hold no
   * fact now because every fact read from them is no longer published (their `vanished`).
   */
  chains(all?: boolean): CachedChain[] {
    const out: CachedChain[] = [];
    let hosts: string[];
    try {
      hosts = fs.readdirSync(this.dir).sort();
    } catch {
      return [];
    }
    for (const host of hosts) {
      let files: string[];
      try {
        files = fs.readdirSync(path.join(this.dir, host)).filter((f) => /^[0-9a-f]{16}\.db$/.test(f));
      } catch {
        continue;
      }
      const mine: CachedChain[] = [];
      for (const f of files.sort()) {
        const file = path.join(this.dir, host, f);
        const st = readState(file);
        if (st === undefined || (st.facts === 0 && (all !== true || (st.vanished?.length ?? 0) === 0))) continue;
        mine.push({ host, journal: st.journal, file, ...(st.firstAt ? { firstAt: st.firstAt } : {}), ...(st.last ? { last: st.last } : {}), facts: st.facts, ...(st.vanished?.length ? { vanished: st.vanished } : {}) });
      }
      mine.sort((a, b) => ((a.firstAt ?? '') < (b.firstAt ?? '') ? -1 : (a.firstAt ?? '') > (b.firstAt ?? '') ? 1 : 0));
      out.push(...mine);
    }
    return out;
  }

  /** The chain's cache as a read-only journal: the audit's queries run on it as on a host's own. */
  openChain(c: CachedChain): Journal {
    return Journal.open(c.file, { host: 'audit', readonly: true });
  }
}

/**
 * A problem when the cache's filesystem has less free space than its floor (cluster-cache-bounds.ts):
 * the chain is not read into the cache (answers keep what it read before). `reserved`: what the
 * chains loading on loader threads may still take (LoaderPool.reserved), counted as taken.
 */
function floorProblem(dir: string, host: string, journal: string, segs: readonly SegmentFile[], reserved: number): CatchUpProblem | undefined {
  const room = freeSpace(dir);
  if (room === undefined || room.free - reserved >= room.floor) return undefined;
  const mib = (n: number): string => `${Math.floor(n / (1024 * 1024))} MiB`;
  return {
    file: dir,
    offset: 0,
    line: 0,
    host,
    journal,
    segment: segs[0]?.name ?? '',
    reason:
      `the cluster cache ${dir} has ${mib(room.free)} free on its filesystem${reserved > 0 ? ` (${mib(reserved)} of it kept for the chains loading in parallel)` : ''}, under its floor of ${mib(room.floor)} (10% of it, at most 512 MiB; the daemon's journal may live there): ` +
      `new history is not read into the cache, answers stop at what it read before; free space there, or give --cache DIR on another filesystem`,
  };
}

/**
 * A hint beside each chain file (`<journal>.db.pos`): the segment and offset its last catch-up
 * reached. Only to skip opening SQLite when nothing was published since (a `--follow` poll, a second
 * question): a stale or missing hint costs the full path, never a wrong answer, since the stored
 * state in the chain file itself is what a catch-up resumes from.
 */
function hintFile(file: string): string {
  return `${file}.pos`;
}

/** link(2)'s errors on a filesystem without hard links. */
const NO_LINK = new Set(['EPERM', 'EOPNOTSUPP', 'ENOTSUP', 'ENOSYS']);

/** The file a new chain is built in by process `pid` of this host (buildChain). */
function buildFileName(file: string, pid: number): string {
  return `${file}.build-${os.hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-${pid}`;
}

function removeBuild(tmp: string): void {
  for (const f of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`]) fs.rmSync(f, { force: true });
}

/**
 * Removes the builds of `file`'s chain left by processes of this host that are gone (a SIGKILLed
 * catch-up): each one is as large as the chain it was building. A build of another host (a cache
 * directory shared over a network filesystem) is left to that host.
 */
function removeDeadBuilds(file: string): void {
  const prefix = `${path.basename(file)}.build-${os.hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-`;
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(file));
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)$/.exec(n.slice(prefix.length))?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid) continue;
    const build = path.join(path.dirname(file), n);
    // Its pid alive may be another process's now (reused): left only while it could be a build. Its
    // pid gone from here may be a live build's in another pid namespace: left while it holds its lock.
    if (alive(pid) ? !abandoned(build) : lockHeld(build)) continue;
    removeBuild(build);
  }
}

/** A build untouched for this long and not locked is nobody's (its pid reused by another process). */
const ABANDONED_BUILD_MS = 10 * 60_000;

/**
 * Whether a build file of a pid alive now is no build in progress: not written for ABANDONED_BUILD_MS
 * and not locked. A live build holds its file's SQLite lock from its first write to its close
 * (locking_mode=EXCLUSIVE) and writes all along; the lock is probed without waiting (review28c F2).
 */
function abandoned(build: string): boolean {
  try {
    if (Date.now() - fs.statSync(build).mtimeMs < ABANDONED_BUILD_MS) return false;
  } catch {
    return false;
  }
  return !lockHeld(build);
}

/** Whether another connection holds `build`'s SQLite lock (a build in progress): probed without waiting. */
function lockHeld(build: string): boolean {
  let db: Database.Database;
  try {
    db = new Database(build, { fileMustExist: true, timeout: 0 });
  } catch {
    return false;
  }
  try {
    db.exec('BEGIN EXCLUSIVE');
    db.exec('ROLLBACK');
    return false;
  } catch (e) {
    const code = String((e as { code?: unknown }).code ?? '');
    // Busy or locked: another connection holds it. Anything else (not a database, damaged): nobody's build.
    return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
  } finally {
    db.close();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** fn on the chain file opened read-only (undefined when it cannot be opened). */
function openForHint<T>(file: string, fn: (db: Database.Database) => T): T | undefined {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch {
    return undefined;
  }
  try {
    db.pragma('busy_timeout = 10000');
    return fn(db);
  } finally {
    db.close();
  }
}

function writeHint(file: string, db: Database.Database, dir: string, segs: readonly SegmentFile[]): ChainHint | undefined {
  try {
    const row = db.prepare(`SELECT value FROM meta WHERE key = ?`).get(STATE_KEY) as { value: string } | undefined;
    if (row === undefined) return undefined;
    const st = JSON.parse(row.value) as ChainState;
    const hint: ChainHint = { segment: st.segment, offset: st.decoder.offset, sealed: st.decoder.seal !== null, ...(st.decoder.seal !== null ? { sealedLast: st.decoder.seal.last } : {}), tail: st.tail, ix: INDEX_TAG, older: olderDigest(dir, segs), ...(st.whole?.to === st.decoder.offset ? { stamp: st.whole.stamp } : {}) };
    try {
      fs.writeFileSync(hintFile(file), JSON.stringify(hint));
    } catch {
      // only a hint
    }
    return hint;
  } catch {
    return undefined;
  }
}

/** True when the hint says the chain was found unlisted and its facts moved aside (nothing to do until listed again). */
function unlistedHint(file: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(hintFile(file), 'utf8')) as { unlisted?: unknown }).unlisted === true;
  } catch {
    return false;
  }
}

interface ChainHint {
  segment?: unknown;
  offset?: unknown;
  sealed?: unknown;
  /** The seal's last seq when the segment the cache stands in is sealed. */
  sealedLast?: unknown;
  tail?: unknown;
  ix?: unknown;
  /** olderDigest() when it was written: a segment before the newest removed or changed since differs. */
  older?: unknown;
  /** The newest segment's stamp when the bytes up to `offset` were hashed (ChainState.whole). */
  stamp?: unknown;
}

/**
 * The name, size, inode, mtime and ctime of every listed segment before the newest, hashed: one stat
 * each. A segment behind the cache's position that was removed, cut shorter, replaced or written to
 * changes it, so the fast path gives way to the catch-up that checks each segment read
 * (read_segments). A ctime within RACY_MS of now (a write in the same tick would keep it) makes a
 * digest that matches nothing: the next question checks.
 */
function olderDigest(dir: string, segs: readonly SegmentFile[]): string {
  const h = createHash('sha256');
  const recent = BigInt(Date.now() - RACY_MS) * 1_000_000n;
  // path.join(dir, name) for a segment's name (one plain component), joined once: a `--follow` poll
  // stats every host's segments, and the join was a quarter of each stat's time.
  const prefix = path.join(dir, 'x').slice(0, -1);
  for (const s of segs.slice(0, -1)) {
    try {
      const st = fs.lstatSync(prefix + s.name, { bigint: true });
      if (st.ctimeNs >= recent) return `racy:${Math.random()}`;
      h.update(`${s.name}:${st.size}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}\n`);
    } catch {
      h.update(`${s.name}:gone\n`);
    }
  }
  return h.digest('hex').slice(0, 32);
}

/** Opens a segment for reading: never blocks (a FIFO named like a segment), never follows a link out of the lockspace. */
function openSegment(file: string): number {
  return fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
}

/**
 * The identity of what a segment holds before `offset`: a hash of its last TAIL_WINDOW bytes there
 * (they end with the last line read, and its seq and chain hash). Another file under the same name,
 * or the same file cut shorter or rewritten, gives another value.
 */
function tailOf(fd: number, offset: number): string {
  const start = Math.max(0, offset - TAIL_WINDOW);
  const buf = Buffer.alloc(offset - start);
  let n = 0;
  while (n < buf.length) {
    const k = fs.readSync(fd, buf, n, buf.length - n, start + n);
    if (k === 0) return `short:${start + n}`;
    n += k;
  }
  return createHash('sha256').update(buf).digest('hex').slice(0, 32);
}

/**
 * True when the hint says the chain's newest segment was read to its end, the bytes before that end
 * are still the ones read (the same history, not a replacement under the same name) and read(2)
 * finds nothing after them.
 */
function nothingNew(file: string, dir: string, segs: readonly SegmentFile[]): ChainHint | undefined {
  let hint: ChainHint;
  try {
    hint = JSON.parse(fs.readFileSync(hintFile(file), 'utf8')) as ChainHint;
  } catch {
    return undefined;
  }
  const newest = segs[segs.length - 1];
  if (newest === undefined || newest.name !== hint.segment || typeof hint.offset !== 'number' || typeof hint.tail !== 'string' || hint.ix !== INDEX_TAG) return undefined;
  if (hint.older !== olderDigest(dir, segs)) return undefined;
  let fd: number;
  try {
    fd = openSegment(path.join(dir, newest.name));
  } catch {
    return undefined;
  }
  try {
    if (!fs.fstatSync(fd).isFile() || tailOf(fd, hint.offset) !== hint.tail) return undefined;
    // Written to since its bytes were hashed (or no stamp kept): the full path checks them.
    if (typeof hint.stamp !== 'string' || !sameStamp(hint.stamp, stampOf(fd))) return undefined;
    return hint.sealed === true || fs.readSync(fd, Buffer.alloc(1), 0, 1, hint.offset) === 0 ? hint : undefined;
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function readState(file: string): ChainState | undefined {
  return openForHint(file, (db) => {
    try {
      const row = db.prepare(`SELECT value FROM meta WHERE key = ?`).get(STATE_KEY) as { value: string } | undefined;
      return row === undefined ? undefined : (JSON.parse(row.value) as ChainState);
    } catch {
      return undefined;
    }
  });
}

/**
 * What loading a chain came to: its result, the error it ended in, or its loader thread died without an
 * answer; `room`: under the floor (said once); `full`: this chain's load does not fit above it, or its
 * left WAL could not be checkpointed (said per chain, review28c F4).
 */
type ChainOutcome = { r: LoadResult } | { e: unknown } | { died: true } | { room: CatchUpProblem } | { full: CatchUpProblem };

/** A loader thread's error as the serial path's catch sees a thrown one (ConcurrentCatchUp, an SQLite code). */
function loaderError(e: LoaderError): unknown {
  if (e.concurrent) return new ConcurrentCatchUp();
  return Object.assign(new Error(e.message), e.code !== undefined ? { code: e.code } : {});
}

/**
 * The segment bytes a chain's catch-up would read, from where its hint says the cache stands (all of
 * them without a hint or a chain file). Only to choose the thread a chain is loaded on; one stat per
 * segment from there, as nothingNew's own check does.
 */
function newBytes(file: string, dir: string, segs: readonly SegmentFile[]): number {
  return chainBytes(file, dir, segs).fresh;
}

/**
 * The chain's segment bytes from its hint's position on (`fresh`) and before it (`read`), by stat: an
 * estimate (the loader's own rule reads the stored position, bulkLoad). No hint: all of it is fresh.
 */
function chainBytes(file: string, dir: string, segs: readonly SegmentFile[]): { fresh: number; read: number } {
  let from = 0;
  let offset = 0;
  try {
    const hint = JSON.parse(fs.readFileSync(hintFile(file), 'utf8')) as ChainHint;
    const at = segs.findIndex((s) => s.name === hint.segment);
    if (at !== -1 && typeof hint.offset === 'number' && fs.existsSync(file)) {
      from = at;
      offset = hint.offset;
    }
  } catch {
    // no hint: all of it
  }
  let fresh = -offset;
  let read = offset;
  for (let i = 0; i < segs.length; i++) {
    const n = sizeHint(path.join(dir, segs[i]!.name));
    if (i < from) read += n;
    else fresh += n;
  }
  return { fresh, read };
}

/** What loadRoom (cluster-cache-room.ts) needs of a chain about to be caught up; bulk by bulkLoad's rule on the hint's position. */
function chainSize(file: string, dir: string, segs: readonly SegmentFile[], noLink: boolean): ChainSize {
  const fileBytes = sizeHint(file);
  const { fresh, read } = chainBytes(file, dir, segs);
  return { fileBytes, readBytes: read, newBytes: fresh, bulk: fresh >= BULK_BYTES && (fileBytes === 0 || fresh >= read * BULK_SHARE), inPlace: noLink };
}

/** Test hooks a loader thread sets (cluster-cache-worker.ts): never set on the main thread. */
export const loaderHooks: { afterCommit?: (host: string) => void } = {};

/** Loads one chain's new facts. */
class ChainLoader {
  private readonly insertFact: Database.Statement;
  private readonly insertMany: Database.Statement;
  private readonly insertOwner: Database.Statement;
  private readonly getState: Database.Statement;
  private readonly putState: Database.Statement;
  private readonly hashAt: Database.Statement;
  private readonly owners = new Set<string>();
  private batch: SegmentFact[] = [];
  /** Carried lines of a compacted segment (holds in force at its start): the cache's `carried` table. */
  private carried: SegmentCarried[] = [];
  private readonly insertCarried: Database.Statement;
  private loaded = 0;
  /** What this loader last read or wrote as the stored position: another writer changes it. */
  private committed: string | undefined;
  /**
   * The last seq the cache holds. A fact read at or below it (a history read again after a rewind) is
   * compared with the cached one instead of inserted: equal hashes mean equal histories up to there.
   */
  private held = 0;
  /** The first seq of the cached facts to drop in the next commit (the history differs from there). */
  private cutFrom: number | undefined;
  private readonly resets: CatchUpReset[] = [];
  /** Reading again from a segment's start (the stored position no longer holds what was read). */
  private rereading = false;
  /** The segment the stored position named before reading again. */
  private stood = '';
  /** The highest seq in the `vanished` table (0: none): only facts up to it are looked up there. */
  private vanishedMax = 0;
  private readonly vanishedHash: Database.Statement;
  /** The whole-prefix hash of the segment being read (ChainState.whole). */
  private readonly wholes = new WholeTracker();
  /** The resumed segment's bytes up to the stored offset, hashed again and equal to its record (unchanged()). */
  private verified: PrefixHash | undefined;

  constructor(
    private readonly db: Database.Database,
    private readonly lockspace: string,
    private readonly host: string,
    private readonly journal: string,
    private readonly segs: SegmentFile[],
    /** The chain is being built in a file of its own (buildChain): no other process reads it meanwhile. */
    private readonly building = false,
  ) {
    const insert = `INSERT INTO facts (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash) VALUES `;
    this.insertFact = db.prepare(`${insert}(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    // Many rows per statement: the per-call cost of binding and stepping is most of a small insert's.
    this.insertMany = db.prepare(`${insert}${Array<string>(ROWS_PER_INSERT).fill('(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`);
    this.insertCarried = db.prepare(`INSERT OR REPLACE INTO carried (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.insertOwner = db.prepare(`INSERT OR IGNORE INTO owners (name, uuid) VALUES (?, ?)`);
    this.getState = db.prepare(`SELECT value FROM meta WHERE key = '${STATE_KEY}'`);
    this.putState = db.prepare(`INSERT INTO meta (key, value) VALUES ('${STATE_KEY}', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
    this.hashAt = db.prepare(`SELECT hash FROM facts WHERE seq = ?`).pluck();
    db.exec(VANISHED_TABLE);
    db.exec(READ_SEGMENTS_TABLE);
    upgradeReadSegments(db);
    this.vanishedHash = db.prepare(`SELECT hash FROM vanished WHERE seq = ?`).pluck();
    this.vanishedMax = (db.prepare('SELECT max(seq) FROM vanished').pluck().get() as number | null) ?? 0;
  }

  private state(): ChainState | undefined {
    const row = this.getState.get() as { value: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.value) as ChainState);
  }

  private cachedHash(seq: number): string | undefined {
    const h = this.hashAt.get(seq) as Buffer | null | undefined;
    return h === undefined || h === null ? undefined : h.toString('hex');
  }

  /**
   * True when `seg` still holds, before the stored offset, the bytes the cache read there: the hash of
   * their last TAIL_WINDOW bytes, and of all of them (whole) unless the stamp shows no write since.
   */
  private unchanged(dir: string, seg: SegmentFile, st: ChainState): boolean {
    this.verified = undefined;
    if (st.tail === undefined) return st.decoder.offset === 0;
    let fd: number;
    try {
      fd = openSegment(path.join(dir, seg.name));
    } catch {
      return true; // the read below names why it cannot be opened
    }
    try {
      if (!fs.fstatSync(fd).isFile()) return true;
      if (tailOf(fd, st.decoder.offset) !== st.tail) return false;
      return this.sameWhole(fd, st);
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * The resumed segment's bytes before the stored offset against their whole-prefix record: not
   * written to since (the stamp, and nothing after the offset), or hashed again and equal. No record
   * (a cache from before it was kept) is false: the chain is read again, comparing every fact.
   */
  private sameWhole(fd: number, st: ChainState): boolean {
    const w = st.whole;
    if (st.decoder.offset === 0) return true;
    if (w === undefined || w.to !== st.decoder.offset) return false;
    if (sameStamp(w.stamp, stampOf(fd)) && fs.readSync(fd, Buffer.alloc(1), 0, 1, w.to) === 0) return true;
    this.verified = verifyWhole(fd, w);
    return this.verified !== undefined;
  }

  /**
   * The first sealed segment read before (read_segments) that is no longer what was read: not listed
   * while an older one still is (the oldest ones gone are pruned, and so is one the pruned-through
   * marker covers), or another size or inode whose
   * bytes up to where the cache read them differ (removed, emptied, cut shorter, replaced). One stat
   * per segment; the bytes are read only when the stat differs (a copy put back is the same history).
   */
  private damaged(dir: string, stood?: string): { name: string; first: number } | undefined {
    const rows = this.db.prepare('SELECT name, first, last, end, size, ino, tail, stamp, whole FROM read_segments ORDER BY first').all() as Array<{ name: string; first: number; last: number; end: number; size: number; ino: number; tail: string; stamp: string | null; whole: string | null }>;
    if (rows.length === 0) return undefined;
    const listed = new Set(this.segs.map((s) => s.name));
    let pruned: number | undefined;
    for (const r of rows) {
      if (!listed.has(r.name)) {
        // The oldest segments gone (no segment of the chain listed before it): pruned, as a reader
        // without the cache sees it too (the chain starts at its first segment listed); its facts stay.
        if (!this.segs.some((s) => s.firstSeq < r.first)) {
          this.db.prepare('DELETE FROM read_segments WHERE name = ?').run(r.name);
          continue;
        }
        if (pruned === undefined) {
          const p = readPruned(dir, this.host, this.journal);
          pruned = p === undefined || typeof p === 'string' ? 0 : p.marker.through;
        }
        if (r.last <= pruned) {
          this.db.prepare('DELETE FROM read_segments WHERE name = ?').run(r.name);
          continue;
        }
        return r;
      }
      const file = path.join(dir, r.name);
      const stamp = stampAt(file);
      if (stamp === undefined) return r;
      if (r.whole !== null && sameStamp(r.stamp, stamp)) continue;
      // Written to, replaced, or recorded by an older version (no whole hash): the bytes decide.
      const now = this.sameRead(file, r);
      if (now === undefined) return r;
      this.db.prepare('UPDATE read_segments SET size = ?, ino = ?, stamp = ? WHERE name = ?').run(now.size, now.ino, now.stamp, r.name);
    }
    return this.unread(rows, stood);
  }

  /**
   * A listed segment the cache did not read, between the first segment it read and the one it stands
   * in (another file put in under another first seq): a reader without the cache walks into it (a gap
   * or an overlap there, where its chain stops), so the cache reads again from before it.
   */
  private unread(rows: ReadonlyArray<{ name: string; first: number }>, stood: string | undefined): { name: string; first: number } | undefined {
    const upTo = stood === undefined ? undefined : parseSegmentFileName(stood)?.firstSeq;
    if (rows.length === 0 || upTo === undefined) return undefined;
    const read = new Set(rows.map((r) => r.name));
    for (const s of this.segs) {
      if (s.firstSeq >= upTo) break;
      if (s.firstSeq > rows[0]!.first && !read.has(s.name)) return { name: s.name, first: s.firstSeq };
    }
    return undefined;
  }

  /**
   * A read segment whose stamp changed: still the bytes read (the whole hash equal) and no complete
   * line after them (a reader without the cache would decode it: a line after the seal, or facts the
   * next segment repeats)? Its new size, inode and stamp then; undefined when not (or no whole hash).
   */
  private sameRead(file: string, r: { end: number; whole: string | null }): { size: number; ino: number; stamp: string } | undefined {
    if (r.whole === null) return undefined;
    try {
      const fd = openSegment(file);
      try {
        const st = fs.fstatSync(fd);
        if (!st.isFile() || st.size < r.end) return undefined;
        const h = verifyWhole(fd, { to: r.end, hash: r.whole, stamp: '' });
        if (h === undefined || lineAfter(fd, r.end)) return undefined;
        return { size: st.size, ino: st.ino, stamp: h.stamp };
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      return undefined;
    }
  }

  /** A segment read to its end (sealed, or followed by the next one): checked on every later catch-up. */
  private readThrough(seg: SegmentFile, last: number, end: number, ino: number, size: number, tail: string | undefined, whole: WholeRecord | undefined): void {
    if (tail === undefined) return;
    const w = whole?.to === end ? whole : undefined;
    this.db
      .prepare('INSERT OR REPLACE INTO read_segments (name, first, last, end, size, ino, tail, stamp, whole) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(seg.name, seg.firstSeq, last, end, size, ino, tail, w?.stamp ?? null, w?.hash ?? null);
  }

  /**
   * The segment to read again from when the stored position is gone or no longer holds what was read:
   * the latest one, starting at or before the first seq the cache lacks, whose header continues the
   * cached chain (its prev is the cached hash of the fact before its first, or the chain's start).
   * Reading it from its start compares each fact the cache holds; undefined when none links.
   */
  private linked(dir: string, st: ChainState, upTo = Infinity): SegmentFile | undefined {
    for (let i = this.segs.length - 1; i >= 0; i--) {
      const s = this.segs[i]!;
      if (s.firstSeq > this.held + 1 || s.firstSeq > upTo) continue;
      const h = headerOf(path.join(dir, s.name));
      if (h === undefined || h.first !== s.firstSeq) continue;
      if (h.first === 1 && h.prev === GENESIS_HEX) return s;
      if (st.base !== undefined && st.base.first === h.first && st.base.prev === h.prev) return s;
      if (h.first > 1 && this.cachedHash(h.first - 1) === h.prev) return s;
    }
    return undefined;
  }

  /**
   * No listed segment belongs to this chain (ClusterCache.unlistChains): every fact it holds moves to
   * `vanished`, under the segment it was read from, and the position names no segment, in one
   * transaction. Listed again, the chain is read again from its first segment (linked()), and the
   * facts published again are answered again.
   */
  unlist(): void {
    const st = this.state();
    if (st === undefined || st.facts === 0) return;
    this.committed = `${st.segment}@${st.decoder.offset}`;
    this.stood = st.segment;
    const { tail: _tail, whole: _whole, ...rest } = st;
    this.vanish({ ...rest, segment: '', decoder: initialDecoderState() }, 1);
  }

  /** Drops every cached fact of the chain and its position: the chain is read again from its first segment. */
  private dropAll(): void {
    this.db.transaction(() => {
      const stored = this.state();
      if ((stored === undefined ? undefined : `${stored.segment}@${stored.decoder.offset}`) !== this.committed) throw new ConcurrentCatchUp();
      this.deleteFrom(0);
      this.db.exec(`DELETE FROM carried; DELETE FROM owners; DELETE FROM vanished; DELETE FROM meta WHERE key = '${STATE_KEY}'`);
    }).immediate();
    this.vanishedMax = 0;
    this.owners.clear();
    this.committed = undefined;
    this.held = 0;
  }

  /** Deletes the cached facts from `seq` on (the journal schema's append-only trigger lifted for it: this is a cache). */
  private deleteFrom(seq: number): void {
    const trig = this.db.prepare(`SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'facts_no_delete'`).pluck().get() as string | undefined;
    if (trig !== undefined) this.db.exec('DROP TRIGGER facts_no_delete');
    this.db.prepare('DELETE FROM facts WHERE seq >= ?').run(seq);
    this.db.prepare('DELETE FROM carried WHERE seq >= ?').run(seq);
    this.db.prepare('DELETE FROM read_segments WHERE last >= ?').run(seq);
    if (trig !== undefined) this.db.exec(trig);
  }

  run(): LoadResult {
    if (this.segs.length === 0) return { facts: 0, pendingTail: false, resets: [] };
    const dir = path.join(this.lockspace, PUBLISHED_DIR, this.host);
    let st = this.state();
    this.committed = st === undefined ? undefined : `${st.segment}@${st.decoder.offset}`;
    this.held = (this.db.prepare('SELECT max(seq) FROM facts').pluck().get() as number | null) ?? 0;
    let seg: SegmentFile | undefined;
    let resume: SegmentDecoderState | undefined;
    if (st !== undefined) {
      const at = this.segs.find((s) => s.name === st!.segment);
      // A segment read before, behind the position, removed or changed since: read again from before it.
      const damaged = this.damaged(dir, st.segment);
      // A position without its whole-prefix record (a cache from before it was kept): every segment
      // it read is checked once by reading the chain again from its first listed segment.
      const legacy = st.decoder.offset > 0 && st.whole === undefined;
      if (damaged === undefined && !legacy && at !== undefined && this.unchanged(dir, at, st)) {
        seg = at;
        resume = st.decoder;
      } else {
        // What the cache read is not what is published now (the segment replaced under its name, cut
        // shorter, or gone: a host's history moved aside and published again). Read again from the
        // latest segment that continues the cached chain, comparing each fact the cache holds; when
        // none does, the whole chain again. Never resumed at a stale offset in another file.
        seg = this.linked(dir, st, legacy ? this.segs[0]!.firstSeq : damaged?.first);
        if (seg === undefined) {
          const gone = damaged !== undefined ? `${damaged.name}, read before, is no longer published as it was read` : at === undefined ? `${st.segment} is no longer published` : `${st.segment} no longer holds the bytes read before offset ${st.decoder.offset}`;
          this.resets.push({ host: this.host, journal: this.journal, segment: st.segment, seq: 1, reason: `${gone}, and no segment published now continues the ${this.held} fact(s) cached: the chain is read again from ${this.segs[0]!.name}` });
          this.dropAll();
          st = undefined;
        } else {
          this.stood = st.segment;
          this.rereading = true;
          st = { ...st, segment: seg.name, decoder: initialDecoderState() };
          delete st.tail;
          delete st.whole;
        }
      }
    }
    seg ??= this.segs[0]!;
    // Read from the chain's first segment: the holds in force where the host's daemon pruned the
    // segments before it (retention: its pruned-through marker carries them) are its carried facts.
    if (st === undefined) this.carried.push(...prunedCarried(dir, this.host, this.journal, seg.firstSeq));
    const bulk = this.bulkLoad(dir, seg, st, resume);
    // A bulk load into a chain other processes read: one write transaction (each batch a savepoint in
    // it), so they see the chain as it was, indexes and all, until it commits whole (WAL readers).
    const whole = bulk && !this.building;
    if (bulk) {
      if (whole) this.db.exec('BEGIN IMMEDIATE');
      for (const ix of [...AUDIT_INDEXES, ...CACHE_INDEXES]) this.db.exec(`DROP INDEX IF EXISTS ${ix.name}`);
      suspendDiskNames(this.db);
    } else {
      ensureIndexes(this.db);
      ensureDiskNames(this.db);
    }
    let cur: ChainState = st ?? { host: this.host, journal: this.journal, segment: seg.name, decoder: undefined as unknown as SegmentDecoderState, facts: 0 };
    let decoder = new SegmentDecoder(path.join(dir, seg.name), { host: this.host, journal: this.journal, first: seg.firstSeq }, resume);
    let problem: CatchUpProblem | undefined;
    let pendingTail = false;
    try {
      for (;;) {
        const file = path.join(dir, seg.name);
        let fd: number;
        try {
          fd = openSegment(file);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') break; // gone since the listing; the next catch-up lists again
          problem = { file, offset: decoder.state.offset, line: decoder.state.lines + 1, reason: `cannot open: ${(e as Error).message}`, host: this.host, journal: this.journal, segment: seg.name };
          break;
        }
        let fst: fs.Stats;
        try {
          fst = fs.fstatSync(fd);
          if (!fst.isFile()) {
            problem = { file, offset: 0, line: 1, reason: 'not a regular file (a directory, FIFO, socket or device named like a segment)', host: this.host, journal: this.journal, segment: seg.name };
            break;
          }
          const resumed = decoder.state.offset > 0;
          this.wholes.open(fd, resumed ? cur.whole : undefined, resumed ? this.verified : undefined);
          this.verified = undefined;
          const buf = Buffer.allocUnsafe(READ_CHUNK);
          let pos = decoder.state.offset;
          // To the end of the file as read(2) sees it now, never to a cached st_size.
          for (;;) {
            const n = fs.readSync(fd, buf, 0, buf.length, pos);
            if (n === 0) break;
            pos += n;
            for (const line of decoder.push(buf.subarray(0, n))) {
              if (line.t === 'fact') {
                if (line.seq <= this.held) this.compare(line, seg.name);
                else this.batch.push(line);
              } else if (line.t === 'carried') this.carried.push(line);
            }
            if (this.batch.length >= BATCH_FACTS) cur = this.commit(cur, seg.name, decoder, fd);
            if (decoder.problem !== undefined) break;
          }
          cur = this.commit(cur, seg.name, decoder, fd);
        } finally {
          fs.closeSync(fd);
        }
        if (decoder.problem !== undefined) {
          problem = { ...decoder.problem, host: this.host, journal: this.journal, segment: seg.name };
          break;
        }
        const d = decoder.state;
        const next = this.segs.find((s) => s.firstSeq > seg!.firstSeq);
        if (next !== undefined && d.header !== null && (decoder.sealed || next.firstSeq === d.lastSeq + 1)) this.readThrough(seg, d.lastSeq, d.offset, fst.ino, fst.size, cur.tail, cur.whole);
        if (next === undefined) {
          pendingTail = decoder.pending > 0;
          // Read again to the end of what is published, and the cache held facts beyond it: they are
          // no longer published (the segment cut shorter, the newest segment removed). Never kept
          // as published truth; kept aside and named on every question (VanishedRange).
          if (this.rereading && this.held > d.lastSeq) cur = this.vanish(cur, d.lastSeq + 1);
          break;
        }
        if (!decoder.sealed) {
          // A segment the writer left without its seal, followed by another: read on only if the next
          // one continues the chain exactly (nothing missing); `journal verify --cluster` names it.
          const ends = d.header !== null ? d.lastSeq : seg.firstSeq - 1;
          if (next.firstSeq !== ends + 1) {
            problem = { file, offset: d.offset, line: d.lines + 1, seq: ends + 1, reason: `segment ends at seq ${ends} without its seal${d.header === null ? ' (no header line: empty)' : ''} and the next segment starts at seq ${next.firstSeq}`, host: this.host, journal: this.journal, segment: seg.name };
            break;
          }
        } else if (next.firstSeq !== d.seal!.last + 1 && !(next.firstSeq > d.seal!.last + 1 && compactedStart(path.join(dir, next.name)))) {
          // (A gap is the history's own statement when the next segment says it starts after facts
          // compacted before publication: see SegmentHeader.compacted.)
          problem = { file, offset: d.offset, line: d.lines, seq: d.seal!.last + 1, reason: `gap: seq ${d.seal!.last + 1} to ${next.firstSeq - 1} are in no segment`, host: this.host, journal: this.journal, segment: seg.name };
          break;
        }
        seg = next;
        decoder = new SegmentDecoder(path.join(dir, seg.name), { host: this.host, journal: this.journal, first: seg.firstSeq, prev: d.lastHash });
        cur = { ...cur, segment: seg.name };
      }
      // Read again and stopped short of facts the cache held (a segment behind the position removed,
      // emptied or cut shorter, a gap): the chain no longer reaches them, so they are no answer's
      // facts; kept aside and named on every question, as at the tail.
      // (A segment without a header line reached nothing of its own: the chain ends before its first.)
      const reached = decoder.state.header !== null ? decoder.state.lastSeq : seg.firstSeq - 1;
      if (problem !== undefined && this.rereading && this.held > reached) cur = this.vanish(cur, reached + 1);
    } finally {
      if (bulk) {
        try {
          for (const ix of CACHE_INDEXES) this.db.exec(ix.sql.replace('CREATE INDEX', 'CREATE INDEX IF NOT EXISTS'));
          ensureDiskNames(this.db);
        } catch (e) {
          if (whole && this.db.inTransaction) this.db.exec('ROLLBACK');
          throw e;
        }
        // Also after an error in the loop: the batches read until then are kept, as their commits were.
        if (whole) this.db.exec('COMMIT');
      }
    }
    return { facts: this.loaded, ...(problem ? { problem } : {}), pendingTail, resets: this.resets };
  }

  /**
   * Whether this catch-up loads enough to drop the indexes and triggers and build them after
   * (BULK_BYTES, BULK_SHARE): the segment bytes from the position on against the bytes read before
   * (the segments read through and the position). Not while reading again to compare (the facts are
   * mostly held already). Sizes from stat are only this estimate, never where a file ends.
   */
  private bulkLoad(dir: string, seg: SegmentFile, st: ChainState | undefined, resume: SegmentDecoderState | undefined): boolean {
    if (this.rereading) return false;
    let fresh = 0;
    for (const s of this.segs) if (s.firstSeq >= seg.firstSeq) fresh += sizeHint(path.join(dir, s.name));
    fresh -= resume?.offset ?? 0;
    if (fresh < BULK_BYTES) return false;
    if (st === undefined) return true;
    const read = ((this.db.prepare('SELECT sum("end") FROM read_segments').pluck().get() as number | null) ?? 0) + (resume?.offset ?? 0);
    return fresh >= read * BULK_SHARE;
  }

  /** Facts dropped: count and ends from what the file holds now. */
  private recount(next: ChainState): void {
    next.facts = this.db.prepare('SELECT count(*) FROM facts').pluck().get() as number;
    const first = this.db.prepare('SELECT at FROM facts ORDER BY seq LIMIT 1').pluck().get() as string | undefined;
    const last = this.db.prepare('SELECT seq, at, kind FROM facts ORDER BY seq DESC LIMIT 1').get() as { seq: number; at: string; kind: string } | undefined;
    if (first === undefined) delete next.firstAt;
    else next.firstAt = first;
    if (last === undefined) delete next.last;
    else next.last = last;
  }

  /** The `vanished` table as ranges of consecutive seq numbers read from one segment. */
  private vanishedRanges(): VanishedRange[] {
    const out: Array<{ segment: string; from: number; to: number; fromAt: string; toAt: string; noticed: string }> = [];
    for (const r of this.db.prepare('SELECT seq, at, segment, noticed FROM vanished ORDER BY seq').iterate() as IterableIterator<{ seq: number; at: string; segment: string; noticed: string }>) {
      const l = out[out.length - 1];
      if (l !== undefined && l.to + 1 === r.seq && l.segment === r.segment) {
        l.to = r.seq;
        l.toAt = r.at;
      } else out.push({ segment: r.segment, from: r.seq, to: r.seq, fromAt: r.at, toAt: r.at, noticed: r.noticed });
    }
    return out;
  }

  /**
   * The cached facts from `from` on are no longer published: moved into the `vanished` table with
   * the segment the cache stood in, in one transaction with the position.
   */
  private vanish(cur: ChainState, from: number): ChainState {
    const next: ChainState = { ...cur };
    const noticed = new Date().toISOString();
    this.db.transaction(() => {
      const stored = this.state();
      if ((stored === undefined ? undefined : `${stored.segment}@${stored.decoder.offset}`) !== this.committed) throw new ConcurrentCatchUp();
      this.db
        .prepare(`INSERT OR REPLACE INTO vanished (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash, segment, noticed) SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload, hash, ?, ? FROM facts WHERE seq >= ?`)
        .run(this.stood, noticed, from);
      // Each fact under the segment it was read from, where the cache recorded that segment.
      this.db
        .prepare(`UPDATE vanished SET segment = (SELECT r.name FROM read_segments r WHERE vanished.seq BETWEEN r.first AND r.last) WHERE noticed = ? AND seq >= ? AND EXISTS (SELECT 1 FROM read_segments r WHERE vanished.seq BETWEEN r.first AND r.last)`)
        .run(noticed, from);
      this.deleteFrom(from);
      this.recount(next);
      next.vanished = this.vanishedRanges();
      this.putState.run(JSON.stringify(next));
    }).immediate();
    this.vanishedMax = (this.db.prepare('SELECT max(seq) FROM vanished').pluck().get() as number | null) ?? 0;
    this.held = from - 1;
    return next;
  }

  /**
   * Facts published at seq numbers whose earlier facts had vanished: the same fact (equal hash) is
   * simply published again; another one is a history published again differently (a reset, said
   * once). Either way the seq is no longer counted as vanished. Inside commit()'s transaction.
   */
  private publishedAgain(facts: readonly SegmentFact[], segment: string, next: ChainState): void {
    let differs: number | undefined;
    for (const f of facts) {
      const h = this.vanishedHash.get(f.seq) as Buffer | null | undefined;
      if (h === undefined) continue;
      if ((h === null ? undefined : h.toString('hex')) !== f.hash) differs ??= f.seq;
    }
    const lo = facts[0]!.seq;
    const hi = facts[facts.length - 1]!.seq;
    this.db.prepare('DELETE FROM vanished WHERE seq >= ? AND seq <= ?').run(lo, hi);
    if (differs !== undefined) {
      this.resets.push({
        host: this.host,
        journal: this.journal,
        segment,
        seq: differs,
        reason: `seq ${differs} published now differs from the seq ${differs} read before and no longer published since (the history was published again differently): what is published now is the answer`,
      });
    }
    const left = this.vanishedRanges();
    if (left.length > 0) next.vanished = left;
    else delete next.vanished;
  }

  /** A fact the cache already holds a fact of that seq for: equal, or the histories part here. */
  private compare(f: SegmentFact, segment: string): void {
    if (this.cachedHash(f.seq) === f.hash) return;
    this.resets.push({
      host: this.host,
      journal: this.journal,
      segment,
      seq: f.seq,
      reason: `seq ${f.seq} published now differs from the seq ${f.seq} read before (the history was published again differently): the cache drops its seq ${f.seq} to ${this.held} and reads what is published now`,
    });
    this.cutFrom = f.seq;
    this.held = f.seq - 1;
    this.batch.push(f);
  }

  /** The batch and the position after it, in one transaction: a crash never loses or repeats a fact. */
  private commit(cur: ChainState, segment: string, decoder: SegmentDecoder, fd: number): ChainState {
    const facts = this.batch;
    this.batch = [];
    const carried = this.carried;
    this.carried = [];
    const cut = this.cutFrom;
    this.cutFrom = undefined;
    const back = this.vanishedMax > 0 ? facts.filter((f) => f.seq <= this.vanishedMax) : [];
    const dst = decoder.state;
    const next: ChainState = { ...cur, segment, decoder: dst, facts: cur.facts + facts.length, tail: tailOf(fd, dst.offset) };
    const whole = this.wholes.at(fd, dst.offset);
    if (whole !== undefined) next.whole = whole;
    else delete next.whole;
    if (next.base === undefined && dst.header !== null && cur.facts === 0 && this.held === 0) next.base = { first: dst.header.first, prev: dst.header.prev };
    if (facts.length > 0) {
      const lastFact = facts[facts.length - 1]!;
      next.firstAt ??= facts[0]!.at;
      next.last = { seq: lastFact.seq, at: lastFact.at, kind: lastFact.kind };
    }
    this.db.transaction(() => {
      // Another audit catching up the same cache at the same moment: the one that wrote first wins;
      // this one's facts would repeat seq numbers, so it stops here (its answer uses what is there).
      const stored = this.state();
      if ((stored === undefined ? undefined : `${stored.segment}@${stored.decoder.offset}`) !== this.committed) throw new ConcurrentCatchUp();
      if (cut !== undefined) this.deleteFrom(cut);
      const many = facts.length - (facts.length % ROWS_PER_INSERT);
      const args: unknown[] = new Array(ROWS_PER_INSERT * 10);
      for (let i = 0; i < many; i += ROWS_PER_INSERT) {
        for (let k = 0; k < ROWS_PER_INSERT; k++) {
          const f = facts[i + k]!;
          const o = k * 10;
          args[o] = f.seq;
          args[o + 1] = f.at;
          args[o + 2] = f.host;
          args[o + 3] = f.kind;
          args[o + 4] = f.resource;
          args[o + 5] = f.disk;
          args[o + 6] = f.owner;
          args[o + 7] = f.owner_name;
          args[o + 8] = elidePayload(f.payload, f.owner, f.owner_name);
          args[o + 9] = Buffer.from(f.hash, 'hex');
        }
        this.insertMany.run(args);
      }
      for (let i = many; i < facts.length; i++) {
        const f = facts[i]!;
        this.insertFact.run(f.seq, f.at, f.host, f.kind, f.resource, f.disk, f.owner, f.owner_name, elidePayload(f.payload, f.owner, f.owner_name), Buffer.from(f.hash, 'hex'));
      }
      if (back.length > 0) this.publishedAgain(back, segment, next);
      for (const c of carried) this.insertCarried.run(c.seq, c.at, c.host, c.kind, c.resource, c.disk, c.owner, c.owner_name, elidePayload(c.payload, c.owner, c.owner_name), Buffer.from(c.hash, 'hex'));
      for (const f of [...carried, ...facts]) {
        if (f.owner !== null && f.owner_name !== null) {
          const k = `${f.owner_name}\u0000${f.owner}`;
          if (!this.owners.has(k)) {
            this.owners.add(k);
            this.insertOwner.run(f.owner_name, f.owner);
          }
        }
      }
      if (cut !== undefined) this.recount(next);
      this.putState.run(JSON.stringify(next));
    }).immediate();
    this.committed = `${next.segment}@${next.decoder.offset}`;
    loaderHooks.afterCommit?.(this.host);
    if (back.length > 0) this.vanishedMax = (this.db.prepare('SELECT max(seq) FROM vanished').pluck().get() as number | null) ?? 0;
    this.loaded += facts.length;
    if (facts.length > 0) this.held = Math.max(this.held, facts[facts.length - 1]!.seq);
    return next;
  }
}

export class ConcurrentCatchUp extends Error {
  constructor() {
    super('another process is bringing this cluster cache up to date');
  }
}

function withMissing(r: LoadResult, missing: CatchUpProblem | { note: string } | undefined): LoadResult {
  if (missing === undefined) return r;
  return 'note' in missing ? { ...r, note: missing.note } : { ...r, missing };
}

/**
 * The successor statement (<journal>.successor, segment-successor.ts) as verify --cluster reads it,
 * with this cache's memory of it (`<journal>.db.successor`: the smallest `from` ever read): a
 * statement removed after the cache read it still covers the seals it covered (an older writer never
 * wrote one, so without the memory its removal would read as an older writer). When it covers the
 * seal of the segment the cache stands in, the newest listed, and the successor is not listed: the
 * segment after the seal was removed, with whatever facts it held.
 */
function successorMissing(file: string, dir: string, host: string, journal: string, segs: readonly SegmentFile[], hint: ChainHint | undefined): CatchUpProblem | { note: string } | undefined {
  const said = readSuccessor(dir, journal);
  const memo = `${file}.successor`;
  let seen: number | undefined;
  try {
    const o = JSON.parse(fs.readFileSync(memo, 'utf8')) as { from?: unknown };
    if (Number.isSafeInteger(o.from)) seen = o.from as number;
  } catch {
    // never read one
  }
  if (said !== undefined && (seen === undefined || said.from < seen)) {
    try {
      fs.mkdirSync(path.dirname(memo), { recursive: true, mode: 0o700 });
      fs.writeFileSync(memo, JSON.stringify({ from: said.from, at: said.at }));
    } catch {
      // the memory is best effort; the statement itself is read each time
    }
  }
  const from = Math.min(said?.from ?? Infinity, seen ?? Infinity);
  const newest = segs[segs.length - 1];
  if (hint === undefined || newest === undefined || hint.segment !== newest.name || typeof hint.sealedLast !== 'number') return undefined;
  const next = segmentFileName(journal, hint.sealedLast + 1);
  if (segs.some((s) => s.name === next)) return undefined;
  // Listed before the statement was read: a writer resuming onto an older writer's seal creates the
  // successor and then the statement, so look again now that the statement is read.
  if (fs.existsSync(path.join(dir, next))) return undefined;
  if (!Number.isFinite(from) || hint.sealedLast < from) {
    // No statement covers the seal: removal cannot be told from a rotation waiting for the host's
    // next fact (an older writer). Said as journal verify --cluster says it: a note (review 24c F2).
    return {
      note: `${newest.name} is sealed at seq ${hint.sealedLast} and no segment follows it (${next} missing): normal for a writer that opens it with the host's next fact (no ${successorFileName(journal)} covering that seal); if the host journaled facts after seq ${hint.sealedLast}, the segments holding them were removed and answers hold nothing of them`,
    };
  }
  // Sealed just now: its writer is creating the successor (or this mount does not list it yet).
  if (sealedRecently(path.join(dir, newest.name))) return undefined;
  const statement = said !== undefined ? `${successorFileName(journal)}: every seal from seq ${from} on` : `${successorFileName(journal)}, read before by this cache (every seal from seq ${from} on), is gone too`;
  return {
    file: path.join(dir, next),
    offset: 0,
    line: 0,
    seq: hint.sealedLast + 1,
    reason: `missing newest segment: ${newest.name} is sealed at seq ${hint.sealedLast} and ${next}, which its writer creates right after that seal (${statement}), is not there: removed, with whatever facts it held (unless the daemon died between the two writes and never restarted)`,
    host,
    journal,
    segment: next,
  };
}

/**
 * The chain's head, as `journal verify --cluster` checks it (cluster-verify.ts verifyChain): its
 * first listed segment must start at seq 1, or right after the pruned-through marker's seq (its
 * daemon's retention: the marker is written before the segments are removed), or say in its header
 * that it starts after facts compacted before publication. Anything else is a missing head: segments
 * removed by hand. A reader without the cache then answers as if those facts never happened (a hold
 * they began is unknown: "no overlaps", "unknown disk"), and a cache that read them before still
 * answers them: every question names it, from the listing, in both. No I/O for a chain from seq 1.
 */
function missingHead(dir: string, host: string, journal: string, segs: readonly SegmentFile[]): MissingHead | undefined {
  const first = segs[0];
  if (first === undefined || first.firstSeq <= 1) return undefined;
  const p = readPruned(dir, host, journal);
  const marker = p === undefined || typeof p === 'string' ? undefined : p.marker;
  const from = marker === undefined ? 1 : marker.through + 1;
  if (first.firstSeq <= from) return undefined;
  if (compactedStart(path.join(dir, first.name))) return undefined;
  const name = prunedFileName(journal);
  const why =
    typeof p === 'string'
      ? `its pruned-through marker cannot be read (${p})`
      : marker === undefined
        ? `no pruned-through marker (${name}) says the host's daemon removed them`
        : `the host's daemon pruned only through seq ${marker.through} (${name})`;
  return {
    host,
    journal,
    segment: first.name,
    from,
    to: first.firstSeq - 1,
    reason: `missing head: seq ${from} to ${first.firstSeq - 1} are in no segment and ${why}; the first segment present is ${first.name}`,
  };
}

/** A size to choose the load strategy by, never to decide where a file ends. */
function sizeHint(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** A segment's header (its first line), or undefined when it cannot be read or decoded. */
function headerOf(file: string): SegmentHeader | undefined {
  let fd: number | undefined;
  try {
    fd = openSegment(file);
    if (!fs.fstatSync(fd).isFile()) return undefined;
    const buf = Buffer.alloc(4096);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl === -1) return undefined;
    return decodeSegment(file, buf.subarray(0, nl + 1)).header ?? undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The pruned-through marker's carried facts before `first` (none without a readable marker: verify names a bad one). */
function prunedCarried(dir: string, host: string, journal: string, first: number): SegmentCarried[] {
  const p = readPruned(dir, host, journal);
  return p === undefined || typeof p === 'string' ? [] : p.carried.filter((c) => c.seq < first);
}

/** True when the segment's header (its first line) says it starts after facts compacted before publication. */
function compactedStart(file: string): boolean {
  let fd: number | undefined;
  try {
    // Never blocks on a FIFO named like a segment, never follows a link (review27 F6).
    fd = openSegment(file);
    if (!fs.fstatSync(fd).isFile()) return false;
    const buf = Buffer.alloc(4096);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl === -1) return false;
    return decodeSegment(file, buf.subarray(0, nl + 1)).header?.compacted === true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
