// Compaction: move an old prefix of the journal into an archive file, so the live journal stays
// small while history stays readable (`audit --archive`) and verifiable (the chain continues).
//
// Order, chosen so a crash at any point loses nothing and a rerun finishes the job:
//   1. copy the prefix into the archive, page by page, each page durable (synchronous=FULL) before
//      the next is read;
//   2. in ONE journal transaction: raise meta.archived_through (which the delete trigger reads), record
//      the chain base (seq and hash of the last moved fact) and replace the carried facts;
//   3. delete the moved facts in short transactions, so a running daemon's appends wait milliseconds.
// A crash after 1 leaves facts in both files (the rerun skips what the archive has, readers of both
// files give each seq once); after 2 the rerun, or the next writer's open, deletes the rest. The run
// is recorded first (meta.compaction_through, compaction_archive), so `journal verify` and the next
// `journal compact` know a compaction was interrupted and where, and the next run finishes it.
import type Database from 'better-sqlite3';
import { JournalError } from './errors.js';
import { CHAIN_COLUMNS, type ChainBase, type ChainRow } from './schema.js';

/**
 * What compaction reads and writes through: the live journal, and the archive it opens. Declared
 * here, not imported from journal.ts, so the Journal (which calls compact) and compaction do not
 * import each other.
 */
export interface CompactFile {
  /** The SQLite connection: compaction copies, records and deletes through it. */
  readonly db: Database.Database;
  readonly file: string;
  lastSeq(): number;
  archivedThrough(): number;
  firstSeq(): number;
  chainBase(): ChainBase;
  chainHead(): ChainBase;
  close(): void;
}

/** Which kinds open and close a hold of (resource, owner): facts in force are carried past a compaction. */
export interface HoldKinds {
  readonly open: readonly string[];
  readonly close: readonly string[];
  /**
   * The daemon's start and clean-stop kinds. A stop, or a start without a stop before it (a crash),
   * ends every hold unless the start's first fact for it continues it (`continues`: an adoption).
   */
  readonly started?: string;
  readonly stopped?: string;
  continues?(kind: string, payload: unknown): boolean;
}

export interface CompactOptions {
  /** Move every fact with seq <= throughSeq. */
  readonly throughSeq: number;
  /** The archive file; created (as an archive) when absent. */
  readonly archive: string;
  readonly holds: HoldKinds;
  /** Rows per copy page (default 10,000); deletes go in fifths of it, each its own short transaction. */
  readonly pageSize?: number;
}

export interface CompactReport {
  archive: string;
  /** Facts now in the archive that were in the journal before this run. */
  moved: number;
  /** Facts deleted from the journal by this run (a resumed run may delete facts an earlier run copied). */
  deleted: number;
  /** Facts kept as carried copies (their holds were still open at the cut). */
  carried: number;
  throughSeq: number;
  /** The first fact left in the journal (0 when none is). */
  firstLiveSeq: number;
}

type FullRow = ChainRow & { hash: Buffer | null };

/**
 * meta.published_through: the daemon's publisher has copied every fact through this seq into the
 * lockspace (src/daemon/publish-worker.ts). Absent while publication is off: nothing to wait for.
 */
export function publishedThrough(db: Database.Database): number | undefined {
  const row = db.prepare(`SELECT value FROM meta WHERE key = 'published_through'`).get() as { value: string } | undefined;
  if (row === undefined) return undefined;
  const n = Number(row.value);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

const DEFAULT_PAGE = 10_000;

/** `openArchive` opens (or creates) the archive file as a writer of an archive, synchronous=FULL. */
export function compact(journal: CompactFile, opts: CompactOptions, openArchive: (file: string) => CompactFile): CompactReport {
  const { throughSeq, archive: archiveFile } = opts;
  const page = opts.pageSize ?? DEFAULT_PAGE;
  if (!Number.isSafeInteger(throughSeq) || throughSeq < 1) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `compact throughSeq must be an integer >= 1, got ${JSON.stringify(throughSeq)}`);
  }
  if (!Number.isSafeInteger(page) || page < 1) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `compact pageSize must be an integer >= 1, got ${JSON.stringify(page)}`);
  }
  const db = journal.db;
  const last = journal.lastSeq();
  if (throughSeq > last) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `compact through seq ${throughSeq} is beyond the last fact seq ${last} in ${journal.file}`);
  }
  requireSnapshot(journal, throughSeq);
  const archivedThrough = journal.archivedThrough();
  const published = publishedThrough(db);
  if (published !== undefined && throughSeq > Math.max(published, archivedThrough)) {
    // The publisher copies facts from this journal into the lockspace; a fact deleted here before
    // it was copied would leave a hole in the published history. The cut waits for publication.
    throw new JournalError(
      'VMLOCKD_ERR_BAD_INPUT',
      `compact through seq ${throughSeq} would remove facts not yet published into the lockspace (published through seq ${published}); cut at seq ${published} or earlier, or wait for publication (vmlockd status)`,
    );
  }
  if (throughSeq <= archivedThrough) {
    return { archive: archiveFile, moved: 0, deleted: deleteMoved(db, archivedThrough, Math.max(1, Math.floor(page / 5))), carried: countCarried(db), throughSeq: archivedThrough, firstLiveSeq: journal.firstSeq() };
  }

  const setMeta = db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
  const archive = openArchive(archiveFile);
  let moved = 0;
  let carried: FullRow[];
  try {
    const archiveHead = archive.chainHead();
    // The archive must end exactly where this journal's moved facts end (or later, after a crash
    // between copy and delete): anything else is another host's archive or a lost one.
    if (archiveHead.seq < archivedThrough) {
      throw new JournalError(
        'VMLOCKD_ERR_BAD_INPUT',
        `archive ${archiveFile} ends at seq ${archiveHead.seq}, but ${journal.file} has moved facts through seq ${archivedThrough}: wrong archive file`,
      );
    }
    if (archiveHead.seq > 0) {
      // Its last fact must be ours: the chain base once deleted here, or a fact still here after a
      // crash between copy and delete.
      const ours = archiveHead.seq === archivedThrough ? journal.chainBase().hash : rowHash(db, archiveHead.seq);
      if (ours === undefined || !ours.equals(archiveHead.hash)) {
        throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `archive ${archiveFile} does not continue ${journal.file}: their facts at seq ${archiveHead.seq} differ`);
      }
    }

    const tracker = new HoldTracker(opts.holds);
    for (const row of db.prepare(`SELECT ${CHAIN_COLUMNS}, hash FROM carried ORDER BY seq ASC`).iterate() as IterableIterator<FullRow>) tracker.see(row);

    const readPage = db.prepare<[number, number, number], FullRow>(
      `SELECT ${CHAIN_COLUMNS}, hash FROM facts WHERE seq > ? AND seq <= ? ORDER BY seq ASC LIMIT ?`,
    );
    const insert = archive.db.prepare(
      `INSERT INTO facts (${CHAIN_COLUMNS}, hash) VALUES (@seq, @at, @host, @kind, @resource, @disk, @owner, @owner_name, @payload, @hash)`,
    );
    const insertOwner = archive.db.prepare(`INSERT OR IGNORE INTO owners (name, uuid) VALUES (?, ?)`);
    const copy = archive.db.transaction((rows: FullRow[]) => {
      for (const r of rows) {
        insert.run(r);
        if (r.owner !== null && r.owner_name !== null) insertOwner.run(r.owner_name, r.owner);
      }
    });
    db.transaction(() => {
      setMeta.run('compaction_through', String(throughSeq));
      setMeta.run('compaction_archive', archiveFile);
    }).immediate();
    let after = archivedThrough;
    let copyPages = 0;
    for (;;) {
      const rows = readPage.all(after, throughSeq, page);
      if (rows.length === 0) break;
      for (const r of rows) tracker.see(r);
      const fresh = rows.filter((r) => r.seq > archiveHead.seq);
      if (fresh.length > 0) {
        copy.immediate(fresh);
        moved += fresh.length;
        testKill('copy', ++copyPages);
      }
      after = rows[rows.length - 1]!.seq;
    }
    if (after !== throughSeq) {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `compact read facts up to seq ${after}, expected ${throughSeq}: ${journal.file} has a hole`);
    }
    carried = tracker.inForce();
  } finally {
    archive.close();
  }

  const lastMovedHash = rowHash(db, throughSeq);
  const insertCarried = db.prepare(`INSERT INTO carried (${CHAIN_COLUMNS}, hash) VALUES (@seq, @at, @host, @kind, @resource, @disk, @owner, @owner_name, @payload, @hash)`);
  db.transaction(() => {
    // Re-checked under the write lock: the snapshot must still cover the cut when the cut takes effect.
    requireSnapshot(journal, throughSeq);
    // The generations the moved facts gave stay known (Journal.maxGeneration): before any delete.
    db.prepare(
      `INSERT INTO generation_floor (disk, gen)
         SELECT disk, max(CAST(json_extract(payload, '$.generation') AS INTEGER)) AS g FROM facts
          WHERE seq <= ? AND disk IS NOT NULL AND kind IN ('LockAcquired', 'Reacquired') AND json_extract(payload, '$.generation') IS NOT NULL
          GROUP BY disk
       ON CONFLICT(disk) DO UPDATE SET gen = max(gen, excluded.gen)`,
    ).run(throughSeq);
    setMeta.run('archived_through', String(throughSeq));
    setMeta.run('chain_base_seq', String(throughSeq));
    setMeta.run('chain_base_hash', (lastMovedHash ?? Buffer.alloc(32)).toString('hex'));
    db.prepare('DELETE FROM carried').run();
    for (const row of carried) insertCarried.run(row);
  }).immediate();
  testKill('meta', 1);

  const deleted = deleteMoved(db, throughSeq, Math.max(1, Math.floor(page / 5)));
  return { archive: archiveFile, moved, deleted, carried: carried.length, throughSeq, firstLiveSeq: journal.firstSeq() };
}

function requireSnapshot(journal: CompactFile, throughSeq: number): void {
  const snap = journal.db.prepare(`SELECT max(seq) AS seq FROM snapshots`).get() as { seq: number | null };
  if (snap.seq === null || snap.seq < throughSeq) {
    throw new JournalError(
      'VMLOCKD_ERR_BAD_INPUT',
      `compact through seq ${throughSeq} needs a snapshot at seq ${throughSeq} or later first ` +
        `(newest is ${snap.seq ?? 'none'}): start-up would otherwise need the moved facts`,
    );
  }
}

function rowHash(db: Database.Database, seq: number): Buffer | undefined {
  const row = db.prepare(`SELECT hash FROM facts WHERE seq = ?`).get(seq) as { hash: Buffer | null } | undefined;
  return row?.hash ?? undefined;
}

function countCarried(db: Database.Database): number {
  return (db.prepare(`SELECT count(*) AS n FROM carried`).get() as { n: number }).n;
}

/**
 * Deletes facts <= throughSeq (the trigger allows exactly those), a page per transaction: each holds
 * the write lock for tens of milliseconds, so a running daemon's appends wait that long at most.
 */
function deleteMoved(db: Database.Database, throughSeq: number, page: number): number {
  const del = db.prepare(`DELETE FROM facts WHERE seq IN (SELECT seq FROM facts WHERE seq <= ? ORDER BY seq LIMIT ?)`);
  let deleted = 0;
  for (let pages = 1; ; pages++) {
    const n = db.transaction(() => del.run(throughSeq, page).changes).immediate();
    deleted += n;
    if (n < page) break;
    testKill('delete', pages);
  }
  // Done: nothing of this run is left to finish.
  db.prepare(`DELETE FROM meta WHERE key IN ('compaction_through', 'compaction_archive') AND
              coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'compaction_through'), 0) <= ?`).run(throughSeq);
  return deleted;
}

/** Where an interrupted compaction stands: what the journal recorded before it copied, and what is left. */
export interface CompactionState {
  /** The run's cut and archive, when a run started and has not finished. */
  readonly through?: number;
  readonly archive?: string;
  /** Facts at or below archived_through still in the journal: the delete phase was cut short. */
  readonly undeleted: number;
}

export function compactionState(db: Database.Database): CompactionState {
  const meta = (k: string) => (db.prepare(`SELECT value FROM meta WHERE key = ?`).get(k) as { value: string } | undefined)?.value;
  const archived = Number(meta('archived_through') ?? 0);
  const undeleted = (db.prepare(`SELECT count(*) AS n FROM facts WHERE seq <= ?`).get(archived) as { n: number }).n;
  const through = meta('compaction_through');
  const archive = meta('compaction_archive');
  return { ...(through !== undefined ? { through: Number(through) } : {}), ...(archive !== undefined ? { archive } : {}), undeleted };
}

/**
 * Finishes the delete phase of a compaction that died in it (the facts are durable in the archive:
 * archived_through was raised only after the copy). Run by every writer's open of a live journal,
 * so the next daemon start repairs it. A copy phase cut short needs the archive and is finished by
 * the next `journal compact`; until then readers of both files give each seq once.
 */
export function finishDeletes(db: Database.Database): number {
  const archived = (db.prepare(`SELECT CAST(value AS INTEGER) AS v FROM meta WHERE key = 'archived_through'`).get() as { v: number } | undefined)?.v ?? 0;
  if (archived === 0 || db.prepare(`SELECT 1 FROM facts WHERE seq <= ? LIMIT 1`).get(archived) === undefined) return 0;
  return deleteMoved(db, archived, Math.floor(DEFAULT_PAGE / 5));
}

/**
 * Test-only (VMLOCKD_TEST_COMPACT_KILL=phase:n, phase copy|meta|delete): the process SIGKILLs itself
 * after the n-th page of that phase, so a test can leave a compaction cut short exactly there.
 */
function testKill(phase: 'copy' | 'meta' | 'delete', n: number): void {
  const want = process.env.VMLOCKD_TEST_COMPACT_KILL;
  if (want === undefined || want === '') return;
  const [p, k] = want.split(':');
  if (p === phase && Number(k ?? 1) === n) process.kill(process.pid, 'SIGKILL');
}

/**
 * Which facts are still in force after the moved range: per (resource, owner), the open facts since
 * its last close: a grant, then any adoptions that continued it through restarts (the first gives
 * `since`, the last the current mode and generation). A re-take after a restart starts over. Holds a
 * stop or crash interrupted stay until the next start says whether it adopted them. Also kept: the
 * newest DaemonStarted, the DaemonStopped after it, and the last moved fact, so audit can tell
 * without the archive whether a moment after the cut falls in a stop or a crash.
 */
export class HoldTracker {
  private readonly open: ReadonlySet<string>;
  private readonly close: ReadonlySet<string>;
  /** 0: held; 1: interrupted by a stop; 2: interrupted, and a start has begun (its facts decide). */
  private readonly held = new Map<string, { rows: FullRow[]; pending: 0 | 1 | 2 }>();
  private lastStart?: FullRow;
  private lastStop?: FullRow;
  private last?: FullRow;

  constructor(private readonly kinds: HoldKinds) {
    this.open = new Set(kinds.open);
    this.close = new Set(kinds.close);
  }

  see(row: FullRow): void {
    this.last = row;
    if (row.kind === this.kinds.stopped) {
      this.lastStop = row;
      for (const [key, h] of this.held) {
        if (h.pending === 2) this.held.delete(key);
        else h.pending = 1;
      }
      return;
    }
    if (row.kind === this.kinds.started) {
      this.lastStart = row;
      for (const [key, h] of this.held) {
        if (h.pending === 2) this.held.delete(key);
        else h.pending = 2;
      }
      return;
    }
    if (row.resource === null || row.owner === null) return;
    const key = `${row.resource}\u0000${row.owner}`;
    if (this.close.has(row.kind)) this.held.delete(key);
    else if (this.open.has(row.kind)) {
      const h = this.held.get(key);
      const continues = this.kinds.continues?.(row.kind, parsePayload(row.payload)) === true;
      // Without restart kinds (older callers) every open fact continues the hold, as before.
      if (h !== undefined && (continues || this.kinds.started === undefined)) {
        h.rows.push(row);
        h.pending = 0;
      } else this.held.set(key, { rows: [row], pending: 0 });
    }
  }

  inForce(): FullRow[] {
    const rows = [...this.held.values()].flatMap((h) => h.rows);
    if (this.kinds.started !== undefined) for (const r of [this.lastStart, this.lastStop, this.last]) if (r !== undefined) rows.push(r);
    const bySeq = new Map(rows.map((r) => [r.seq, r]));
    return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  }
}

function parsePayload(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
