// The SQLite event store. It stores generic rows and knows nothing of the engine's fact kinds:
// the engine appends, replays and asks audit questions through this class only. This file is the
// facade; the work is done in its rooms:
//   open.ts       opening the file (reader / writer, WAL, no network filesystem, live or archive)
//   rows.ts       checking a fact row and chaining it (seq and hash)
//   writer.ts     the write transactions (append, insert staged rows, snapshot)
//   stage.ts      staged appends: the staging file, moving its facts into SQLite, recovery
//   health.ts     write failures (ENOSPC, EROFS, EIO) as health() reports them
//   reads.ts      the SQL of replay and the small audit questions; query.ts the audit queries
//   integrity.ts  the hash chain walk and the integrity check
//   compact.ts    moving an old prefix into an archive; schema.ts the schema and its migrations
import type Database from 'better-sqlite3';
import { resolve } from 'node:path';
import { JournalError } from './errors.js';
import { compact, compactionState, finishDeletes, type CompactFile, type CompactionState, type CompactOptions, type CompactReport } from './compact.js';
import type { JournalHealth } from './health.js';
import { integrity, verifyChain, type ChainReport, type IntegrityReport } from './integrity.js';
import { BUSY_TIMEOUT_MS, checkReaderVersion, checkRole, openReader, openWriter } from './open.js';
import { FactQueries, isIsoMsUtc } from './query.js';
import type { FactQuery, FactRow, ScanOptions, StoredFact } from './query.js';
import { JournalReads } from './reads.js';
import { checkSeq, stored, type ChainedRow } from './rows.js';
import { GENESIS_HASH, migrate, type ChainBase } from './schema.js';
import { Stage, stagedTail, type StageOptions, type StageOwner } from './stage.js';
import { writeTransactions } from './writer.js';

export type { FactQuery, FactRow, ScanOptions, StoredFact } from './query.js';
export { JournalError } from './errors.js';
export type { JournalErrorCode } from './errors.js';
export { AUDIT_INDEXES, CHAIN_COLUMNS, GENESIS_HASH, MIGRATIONS, OWNERS_BACKFILL, SCHEMA_VERSION, chainHash, migrate } from './schema.js';
export type { ChainBase, ChainRow, Migration } from './schema.js';
export type { CompactionState, CompactOptions, CompactReport, HoldKinds } from './compact.js';
export { errnoOf } from './health.js';
export type { JournalHealth, WriteFailure } from './health.js';
export type { ChainReport, IntegrityReport } from './integrity.js';
export { networkFsName } from './open.js';
export { stageFileOf } from './stage.js';
export type { StageOptions } from './stage.js';

export interface JournalOptions {
  readonly?: boolean;
  /** Host id stamped on every fact this process appends. */
  host: string;
  /** NORMAL (default) survives a process crash; FULL also survives an OS crash, at ~10x the commit cost. */
  synchronous?: 'NORMAL' | 'FULL';
  /** Skip the refusal to create a journal on a network/cluster filesystem. For tests and odd setups only. */
  allowNetworkFs?: boolean;
  /** Open (or create) an archive written by `compact`, not a live journal. A writer of one kind refuses the other. */
  archive?: boolean;
  /** SQLite page cache in MiB (default SQLite's 2 MiB): bulk loaders and long scans want more. */
  cacheSizeMb?: number;
  /**
   * Staged appends (the daemon, the journal's only writer): `append` returns once its facts are
   * written to a staging file beside the database with one write(2) (as durable as a
   * synchronous=NORMAL commit: they survive a crash of this process), and a timer moves them into
   * SQLite in batches. Every read through this Journal moves pending facts in first; opening the
   * journal as a writer moves any a crashed process left behind. See docs/decisions/0006.
   */
  staged?: boolean | StageOptions;
}

/** Runs `fn`; an SQLite error (busy, full) is swallowed: the work is left to a later writer. */
function deferrable(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof JournalError || typeof (e as { code?: unknown }).code !== 'string' || !(e as { code: string }).code.startsWith('SQLITE_')) throw e;
  }
}

export class Journal implements CompactFile {
  readonly file: string;
  readonly host: string;
  readonly readonly: boolean;
  readonly schemaVersion: number;

  /** @internal compact.ts reads and writes through it. */
  readonly db: Database.Database;
  /** Inside nonBlocking (how deep). */
  private noWaitDepth = 0;
  private readonly queries: FactQueries;
  private readonly carriedQueries: FactQueries;
  private readonly reads: JournalReads;
  // Present only on a writer; their absence is what makes append/writeSnapshot refuse on a reader.
  private readonly appendTx?: (rows: readonly FactRow[]) => StoredFact[];
  private readonly insertStaged?: (rows: readonly ChainedRow[]) => void;
  /** Staged mode: the staging file, the facts written there but not yet to SQLite, the chain head. */
  private stage?: Stage;
  private readonly snapshotTx?: (seq: number, at: string, state: string) => void;
  /** Staged mode with sync: told how long each fdatasync of the staging file took (the daemon's metrics). */
  onStageSync?: (seconds: number) => void;

  static open(file: string, opts: JournalOptions): Journal {
    if (typeof file !== 'string' || file === '') {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `journal file must be a non-empty path, got ${JSON.stringify(file)}`);
    }
    if (typeof opts?.host !== 'string' || opts.host === '') {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `journal host must be a non-empty string, got ${JSON.stringify(opts?.host)}`);
    }
    const synchronous = opts.synchronous ?? 'NORMAL';
    if (synchronous !== 'NORMAL' && synchronous !== 'FULL') {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `journal synchronous must be "NORMAL" or "FULL", got ${JSON.stringify(synchronous)}`);
    }
    const cache = opts.cacheSizeMb;
    if (cache !== undefined && (typeof cache !== 'number' || !Number.isInteger(cache) || cache < 1)) {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `journal cacheSizeMb must be a positive integer, got ${JSON.stringify(cache)}`);
    }
    const path = resolve(file);
    const db = opts.readonly === true ? openReader(path) : openWriter(path, synchronous, opts.allowNetworkFs === true);
    try {
      if (cache !== undefined) db.pragma(`cache_size = -${cache * 1024}`);
      const version = opts.readonly === true ? checkReaderVersion(db, path) : migrate(db, path);
      if (opts.readonly !== true) checkRole(db, path, opts.archive === true);
      const journal = new Journal(db, path, opts.host, opts.readonly === true, version);
      // Any writer moves what a crashed daemon left staged, so the facts are where readers look.
      if (opts.readonly !== true) journal.stage = Stage.recover(journal.stageOwner(), opts.staged);
      // A compaction that died in its delete phase is finished by the next writer (compact.ts); a
      // staged writer (the daemon's start) leaves it to a later one rather than wait for another
      // process's write lock or fail on a full disk: the moved facts are in both files meanwhile.
      if (opts.readonly !== true && opts.archive !== true) {
        if (journal.stage === undefined) finishDeletes(db);
        else deferrable(() => journal.nonBlocking(() => finishDeletes(db)));
      }
      return journal;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private constructor(db: Database.Database, file: string, host: string, readonly: boolean, schemaVersion: number) {
    this.db = db;
    this.file = file;
    this.host = host;
    this.readonly = readonly;
    this.schemaVersion = schemaVersion;
    this.queries = new FactQueries(db);
    this.carriedQueries = new FactQueries(db, 'carried');
    this.reads = new JournalReads(db);
    if (readonly) return;
    const tx = writeTransactions(db, file, host, () => this.chainHead());
    this.appendTx = tx.append;
    this.insertStaged = tx.insertStaged;
    this.snapshotTx = tx.snapshot;
  }

  /**
   * Appends all rows, all or none: durable when this returns. Unstaged: ONE SQLite transaction.
   * Staged: ONE write(2) to the staging file (recovery keeps or drops the rows of one call together);
   * they reach SQLite a few milliseconds later, or at the next read through this object.
   */
  append(rows: readonly FactRow[]): StoredFact[] {
    this.checkOpen();
    if (!Array.isArray(rows)) {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `append expects an array of fact rows, got ${typeof rows}`);
    }
    if (rows.length === 0) return [];
    const append = this.writer(this.appendTx);
    const st = this.stage;
    if (st === undefined) return append(rows);
    // Staged: checked and chained here, written with one write(2); nothing changes if either fails.
    return st.append(rows, this.host, this.onStageSync).map(stored);
  }

  /**
   * Facts in the staging file beside this journal that its database does not have yet (a reader's
   * view: a daemon is about to move them, or one crashed before it could). Null when there are none.
   */
  stagedTail(): { count: number; firstSeq: number; lastSeq: number } | null {
    this.live();
    return stagedTail(this.file, () => this.chainHead());
  }

  /** Staged mode: facts acknowledged but not yet in SQLite. */
  get pendingCount(): number {
    return this.stage?.pending.length ?? 0;
  }

  /** Staged mode with `thread`: whether facts currently move into SQLite on the writer thread (decision 0021). */
  get movesOnThread(): boolean {
    return this.stage?.threaded ?? false;
  }

  /** Staged mode: whether appends and moves into SQLite currently fail (a full or read-only disk). */
  health(): JournalHealth {
    const st = this.stage;
    return { stage: st?.stageFailure ?? null, sqlite: st?.sqliteFailure ?? null, pending: st?.pending.length ?? 0 };
  }

  /**
   * Staged mode: move staged facts into SQLite now (at most `limit`), in one transaction. On failure
   * they stay staged (and in the staging file) and the error is thrown.
   */
  flushStaged(limit = Infinity): void {
    this.stage?.flush(limit);
  }

  /** The newest fact's seq, here or (after a compaction that moved every fact) in the archive. */
  lastSeq(): number {
    this.live(true);
    const staged = this.stage?.pending.length ? this.stage.head.seq : 0;
    const here = this.reads.lastSeq();
    return Math.max(staged, here > 0 ? here : this.metaInt('archived_through'));
  }

  /**
   * Facts with seq > `seq`, ascending, read lazily for replay. The connection cannot write while
   * the iterator is open: finish (or `return()`) it before appending.
   */
  readAfter(seq: number): IterableIterator<StoredFact> {
    this.live(true);
    checkSeq('readAfter seq', seq);
    return this.replay(seq);
  }

  private *replay(seq: number): IterableIterator<StoredFact> {
    let last = seq;
    for (const fact of this.reads.after(seq)) {
      last = fact.seq;
      yield fact;
    }
    // Facts SQLite could not take yet (a full disk): acknowledged, so part of the state.
    const pending = this.stage?.pending ?? [];
    for (const r of pending) if (r.seq > last) yield stored(r);
  }

  /**
   * The newest fact (of `kind`), staged facts included: what a start reads (its last start, its last
   * fact) while SQLite cannot take the staged facts (another process holds its write lock, a full
   * disk). Never waits for another process's write lock.
   */
  newest(kind?: string): StoredFact | undefined {
    return this.nonBlocking(() => {
      this.live(true);
      const pending = this.stage?.pending ?? [];
      for (let i = pending.length - 1; i >= 0; i--) if (kind === undefined || pending[i]!.kind === kind) return stored(pending[i]!);
      return this.queries.run({ ...(kind !== undefined ? { kinds: [kind] } : {}), limit: 1, newest: true })[0];
    });
  }

  latestSnapshot(): { seq: number; state: unknown } | undefined {
    this.live(true);
    const row = this.reads.latestSnapshot();
    if (row === undefined) return undefined;
    return { seq: row.seq, state: JSON.parse(row.state) as unknown };
  }

  /** Records the state folded up to and including `seq`; keeps only the newest few snapshots. */
  writeSnapshot(seq: number, state: unknown): void {
    this.live();
    // A snapshot past what SQLite holds would let a replay skip facts: everything staged goes first.
    this.flushStaged();
    const write = this.writer(this.snapshotTx);
    checkSeq('writeSnapshot seq', seq);
    const last = this.lastSeq();
    // A snapshot claiming facts the journal does not have would make a replay skip them.
    if (seq > last) {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `writeSnapshot seq ${seq} is beyond the last fact seq ${last} in ${this.file}`);
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(state);
    } catch (cause) {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `snapshot state at seq ${seq} is not JSON-serialisable: ${String(cause)}`, { cause });
    }
    if (json === undefined) {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `snapshot state at seq ${seq} is not JSON-serialisable, got ${typeof state}`);
    }
    write(seq, new Date().toISOString(), json);
  }

  /**
   * The highest fencing generation any fact in SQLite gave `disk` (0 if none), so a lock file that
   * was deleted or damaged never restarts the count. Facts a compaction moved to the archive count
   * through the generation floor it left behind (schema 3). Does not move staged facts: the caller
   * keeps the generations it handed out itself.
   */
  maxGeneration(disk: string): number {
    this.checkOpen();
    return this.reads.maxGeneration(disk);
  }

  /**
   * Every lockspace directory a grant in SQLite (live or carried past a compaction) named: with the
   * virtlockd server's registry, how a start knows the lockspaces libvirt created over the protocol.
   * Reads every grant: for the start after an unclean stop only.
   */
  grantLockspaces(): string[] {
    this.checkOpen();
    return this.reads.grantLockspaces();
  }

  /**
   * Run `fn` with SQLite's busy timeout at 0: a write that finds another process holding the write
   * lock fails at once (SQLITE_BUSY) instead of blocking the event loop for the whole timeout.
   * For background writes that can be retried later (the snapshot, staged-fact retries).
   */
  nonBlocking<T>(fn: () => T): T {
    this.checkOpen();
    if (this.noWaitDepth > 0) return fn();
    this.db.pragma('busy_timeout = 0');
    this.noWaitDepth++;
    try {
      return fn();
    } finally {
      this.noWaitDepth--;
      if (this.db.open) this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  /**
   * In time order (at, then seq; seq order with afterSeq); every given filter must match. Inside
   * `nonBlocking`, facts still staged because another process holds SQLite's write lock make it
   * throw VMLOCKD_ERR_JOURNAL_BUSY (try again) rather than answer without them or wait.
   */
  query(q: FactQuery): StoredFact[] {
    this.live(true, true);
    return this.queries.run(q ?? {});
  }

  /** SQLite's plan for `query(q)`: which index answers it (diagnostics, tests). */
  queryPlan(q: FactQuery): string {
    this.live();
    return this.queries.plan(q ?? {});
  }

  /**
   * Matching facts one at a time, oldest first or (`descending`) newest first, so a projection that
   * has its answer stops reading. Like readAfter, finish the iterator before appending.
   */
  iterate(q: FactQuery, opts: ScanOptions = {}): IterableIterator<StoredFact> {
    this.live();
    return this.queries.iterate(q ?? {}, opts);
  }

  /** SQLite's plan for `iterate(q, opts)`. */
  iteratePlan(q: FactQuery, opts: ScanOptions = {}): string {
    this.live();
    return this.queries.plan(q ?? {}, opts);
  }

  /**
   * Facts moved to the archive that were still in force when they were moved (see `compact`):
   * copies kept so questions about the present need not open the archive.
   */
  carried(q: FactQuery = {}): StoredFact[] {
    this.live();
    return this.carriedQueries.run(q);
  }

  /** True when a fact names this disk (live or carried): tells an unknown disk from a quiet one. */
  knowsDisk(disk: string): boolean {
    this.live();
    return this.reads.knowsDisk(disk);
  }

  /** The disks journaled with one of these identities (an alias's held names); see JournalReads. */
  disksWithInode(inodes: readonly string[], scan = true): string[] {
    this.live();
    return this.reads.disksWithInode(inodes, scan);
  }

  /** The journaled lock files named by one of these SHA-256 hashes (virtlockd-protocol leases); see JournalReads. */
  leaseDisks(hashes: readonly string[], scan = true): string[] {
    this.live();
    return this.reads.leaseDisks(hashes, scan);
  }

  /** The lockspaces this journal's daemon starts named; see JournalReads. */
  startLockspaces(): string[] {
    this.live();
    return this.reads.startLockspaces();
  }

  /** The lock files the facts naming this disk used; see JournalReads. */
  diskResources(disk: string): string[] {
    this.live();
    return this.reads.diskResources(disk);
  }

  /** True when a fact names this VM by uuid or name (live or carried). */
  knowsOwner(owner: string): boolean {
    this.live();
    return this.reads.knowsOwner(owner);
  }

  /** The uuids journaled with this VM name, so a name finds facts that carry only the uuid. */
  ownersNamed(name: string): string[] {
    this.live();
    return this.reads.ownersNamed(name);
  }

  /** The first fact still in this file (0 when empty): facts before it were compacted away. */
  firstSeq(): number {
    this.live();
    return this.reads.firstSeq();
  }

  /** Facts with seq <= this were moved to the archive (0: none). */
  archivedThrough(): number {
    this.live();
    return this.metaInt('archived_through');
  }

  /** The oldest `at` still in this file, or undefined when it holds no fact. */
  oldestAt(): string | undefined {
    this.live();
    return this.reads.oldestAt();
  }

  /**
   * The seq through which `compact` moves facts for a cut at `before`: the longest prefix of the
   * journal whose facts are all older than `before`. A prefix, never a sieve, so the live journal
   * stays one unbroken run of seqs and its chain still verifies.
   */
  compactionCut(before: string): number {
    this.live();
    if (!isIsoMsUtc(before)) {
      throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `compaction cut must be ISO-8601 UTC with ms, got ${JSON.stringify(before)}`);
    }
    const seq = this.reads.firstSeqFrom(before);
    return seq === null ? this.lastSeq() : seq - 1;
  }

  /**
   * Moves facts with seq <= throughSeq into an archive file (created if absent), keeps the ones still
   * in force as carried copies, and deletes the moved facts here. Refuses unless a snapshot at or past
   * throughSeq exists, so start-up never needs a moved fact. See compact.ts for the crash-safe order.
   */
  compact(opts: CompactOptions): CompactReport {
    this.live();
    this.writer(this.appendTx);
    return compact(this, opts, (archive) => Journal.open(archive, { host: this.host, archive: true, synchronous: 'FULL' }));
  }

  /** Where an interrupted compaction stands (nothing pending: no `through`, undeleted 0). */
  compactionState(): CompactionState {
    this.live();
    return compactionState(this.db);
  }

  /** The seq and hash the next appended fact chains from. */
  chainHead(): ChainBase {
    const last = this.reads.head();
    if (last !== undefined) return { seq: last.seq, hash: last.hash ?? GENESIS_HASH };
    return this.chainBase();
  }

  /** Where this file's chain starts: genesis, or the last fact moved out by compaction. */
  chainBase(): ChainBase {
    const seq = this.metaInt('chain_base_seq');
    const hex = this.reads.meta('chain_base_hash');
    return { seq, hash: hex === undefined ? GENESIS_HASH : Buffer.from(hex, 'hex') };
  }

  /** @internal */
  metaInt(key: string): number {
    const raw = this.reads.meta(key);
    const n = raw === undefined ? 0 : Number(raw);
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  }

  /**
   * Recomputes every fact's hash from the chain base and compares it with the stored one. A fact
   * rewritten behind the triggers' back shows as the first bad seq; a stored hash rewritten to match
   * shows at the fact after it. Reports the first break and how many facts disagree.
   */
  verifyChain(): ChainReport {
    this.live();
    return verifyChain(this.db, this.chainBase());
  }

  integrity(): IntegrityReport {
    this.live();
    return integrity(this.db, this.file, () => this.lastSeq(), this.metaInt('archived_through'));
  }

  /** Closes the database; staged facts are moved into SQLite first (if that fails they stay staged for the next open, and the error is thrown after closing). */
  close(): void {
    const st = this.stage;
    let failed: unknown;
    if (st !== undefined && this.db.open) {
      failed = st.close();
      this.stage = undefined;
    }
    if (this.db.open) this.db.close();
    if (failed !== undefined) throw failed;
  }

  /** What the staging file needs from this journal (stage.ts). */
  private stageOwner(): StageOwner {
    return {
      file: this.file,
      db: this.db,
      insertStaged: (rows) => this.writer(this.insertStaged)(rows),
      nonBlocking: (fn) => this.nonBlocking(fn),
      noWait: () => this.noWaitDepth > 0,
      chainHead: () => this.chainHead(),
    };
  }

  // Every read goes through here: staged facts are moved into SQLite first, so a reader in this
  // process always sees what was acknowledged. `tolerant` (replay, lastSeq, audit queries): when
  // SQLite cannot take them (a full disk) the read goes on; replay and lastSeq add the staged facts
  // themselves, an audit query misses them until the disk has room again.
  // `misses` (a query: it reads SQLite only): inside nonBlocking, SQLite locked by another process
  // (SQLITE_BUSY) is VMLOCKD_ERR_JOURNAL_BUSY, so the caller retries instead of missing the facts.
  // Inside nonBlocking, a backlog (more than one batch: after a long lock held elsewhere, a full
  // disk) is never moved on the event loop (review24d: 30,000 facts froze it 519 ms): the writer
  // thread or the timer moves it in batches, a read that adds staged facts itself goes on without
  // them in SQLite, and one that needs SQLite complete is told VMLOCKD_ERR_JOURNAL_BUSY (try again).
  private live(tolerant = false, misses = false): void {
    this.checkOpen();
    if (this.stage === undefined || this.stage.pending.length === 0) return;
    if (this.noWaitDepth > 0 && this.stage.backlogged()) {
      this.stage.hurry();
      if (tolerant && !misses) return;
      throw new JournalError('VMLOCKD_ERR_JOURNAL_BUSY', `journal ${this.file} is busy: ${this.stage.pending.length} acknowledged facts are still moving into it (they are durable in its staging file; a batch at a time, off the event loop); try again`);
    }
    if (!tolerant) return this.flushStaged();
    try {
      this.flushStaged();
    } catch (e) {
      if (!(e instanceof JournalError) || e.code !== 'VMLOCKD_ERR_JOURNAL_WRITE') throw e;
      this.stage.onError(e);
      const errno = (e as { errno?: string | null }).errno;
      if (misses && this.noWaitDepth > 0 && typeof errno === 'string' && errno.startsWith('SQLITE_BUSY')) {
        throw new JournalError('VMLOCKD_ERR_JOURNAL_BUSY', `journal ${this.file} is busy: another process holds its write lock, so ${this.stage.pending.length} acknowledged facts cannot move into it yet (they are durable in its staging file); try again`, { cause: e });
      }
    }
  }

  private checkOpen(): void {
    if (!this.db.open) throw new JournalError('VMLOCKD_ERR_JOURNAL_CLOSED', `journal ${this.file} is closed`);
  }

  private writer<F>(fn: F | undefined): F {
    if (fn === undefined) {
      throw new JournalError('VMLOCKD_ERR_JOURNAL_READONLY', `journal ${this.file} was opened read-only; it cannot be written`);
    }
    return fn;
  }
}
