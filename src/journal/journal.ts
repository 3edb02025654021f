// The SQLite event store. It stores generic rows and knows nothing of the engine's fact kinds:
// the engine appends, replays and asks audit questions through this class only.
import Database from 'better-sqlite3';
import fsExt from 'fs-ext';
import { closeSync, existsSync, fdatasyncSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, statfsSync, writeSync, constants as fsConstants } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { JournalError } from './errors.js';
import { FACT_COLUMNS, FactQueries, isIsoMsUtc, toStoredFact } from './query.js';
import type { DbFactRow, FactQuery, FactRow, ScanOptions, StoredFact } from './query.js';
import { APPEND_ONLY_TRIGGERS, CHAIN_COLUMNS, GENESIS_HASH, SCHEMA_VERSION, chainHash, migrate, readSchemaVersion, tooNew } from './schema.js';
import type { ChainRow } from './schema.js';
import { compact, compactionState, finishDeletes, type CompactionState, type CompactOptions, type CompactReport } from './compact.js';

export type { FactQuery, FactRow, ScanOptions, StoredFact } from './query.js';
export { JournalError } from './errors.js';
export type { JournalErrorCode } from './errors.js';
export { AUDIT_INDEXES, CHAIN_COLUMNS, GENESIS_HASH, MIGRATIONS, OWNERS_BACKFILL, SCHEMA_VERSION, chainHash, migrate } from './schema.js';
export type { ChainRow, Migration } from './schema.js';
export type { CompactionState, CompactOptions, CompactReport, HoldKinds } from './compact.js';

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

export interface StageOptions {
  /** How long a staged fact may wait for its SQLite batch (default 2 ms). */
  flushMs?: number;
  /** Most facts moved into SQLite per batch, so a burst does not block the event loop for long (default 500). */
  batchRows?: number;
  /** A batch that could not be written to SQLite (it stays staged and is retried). */
  onError?: (e: Error) => void;
  /** Writes succeed again after a failure (`health()` is clear once more). */
  onRecover?: (what: 'stage' | 'sqlite') => void;
  /**
   * fdatasync the staging file before `append` returns (one per append, so a group of commands
   * shares one), and the SQLite WAL before the staging file is ever cut back: an acknowledged fact
   * then survives the state directory's filesystem failing (an ext4 error remounting it read-only,
   * a power loss), not only the process. Default: on under synchronous=FULL, else off. See
   * docs/decisions/0002.
   */
  sync?: boolean;
}

/** A write the journal could not make: since when, why, and the errno (ENOSPC, EROFS, EIO...). */
export interface WriteFailure {
  readonly since: string;
  readonly message: string;
  readonly errno: string | null;
  readonly attempts: number;
}

/** What `health()` reports: staging writes (acknowledgements) and moves into SQLite, each failing or not. */
export interface JournalHealth {
  /** Appends are refused: nothing new can be made durable. */
  readonly stage: WriteFailure | null;
  /** Staged facts cannot move into SQLite; they stay durable in the staging file meanwhile. */
  readonly sqlite: WriteFailure | null;
  /** Facts acknowledged (staged) but not yet in SQLite. */
  readonly pending: number;
}

/** A fact with its seq and hash assigned: what is staged and what is inserted. */
interface ChainedRow {
  seq: number;
  at: string;
  /** The appending process's host id (a restart may run under another). */
  host: string;
  kind: string;
  resource: string | null;
  disk: string | null;
  owner: string | null;
  ownerName: string | null;
  json: string;
  hash: Buffer;
}

/** The staging file: one JSON array per fact and line; see `stageLine`. */
export function stageFileOf(journalFile: string): string {
  return `${journalFile}-stage`;
}
/** Truncate the staging file once everything in it is in SQLite and it has grown past this. */
const STAGE_RESET_BYTES = 1 << 20;

/** The result of walking the hash chain. */
export interface ChainReport {
  ok: boolean;
  /** Facts whose hash was recomputed. */
  checked: number;
  /** The seq and hash (hex) the walk started from: 0 and zeros, or the last fact moved to the archive. */
  base: { seq: number; hash: string };
  /** The last fact's seq and hash (hex): what an archive's successor must start from. */
  head: { seq: number; hash: string };
  firstBadSeq?: number;
  problems: string[];
}

/** Where the chain continues from, and how far compaction has moved facts out. */
export interface ChainBase {
  seq: number;
  hash: Buffer;
}

export interface IntegrityReport {
  ok: boolean;
  problems: string[];
  /** The lowest seq of a fact that failed a check, when one did. */
  firstBadSeq?: number;
}

const BUSY_TIMEOUT_MS = 5000;
const KEEP_SNAPSHOTS = 3;
const MAX_LISTED_PROBLEMS = 20;

/**
 * statfs f_type values of filesystems whose locking and mmap semantics break WAL (the -shm file is
 * shared memory between processes of ONE host) or whose fsync is not local. Placing the journal on
 * the shared lockspace would also tie every host's journal to the health of the cluster filesystem.
 */
const NETWORK_FS: ReadonlyMap<number, string> = new Map([
  [0x6969, 'nfs'],
  [0x517b, 'smb'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x65735546, 'fuse (e.g. glusterfs, sshfs)'],
  [0x00c36400, 'ceph'],
  [0x01021997, '9p'],
  [0x01161970, 'gfs2'],
  [0x7461636f, 'ocfs2'],
  [0x5346414f, 'afs'],
  [0x0bd00bd0, 'lustre'],
]);

/** The name of the network filesystem with this statfs type, or undefined for a local one. */
export function networkFsName(statfsType: number | bigint): string | undefined {
  return NETWORK_FS.get(Number(BigInt.asUintN(32, BigInt(statfsType))));
}

export class Journal {
  readonly file: string;
  readonly host: string;
  readonly readonly: boolean;
  readonly schemaVersion: number;

  /** @internal compact.ts reads and writes through it. */
  readonly db: Database.Database;
  private readonly queries: FactQueries;
  private readonly carriedQueries: FactQueries;
  private readonly stmt: {
    lastSeq: Database.Statement<[], { seq: number }>;
    readAfter: Database.Statement<[number], DbFactRow>;
    latestSnapshot: Database.Statement<[], { seq: number; state: string }>;
    head: Database.Statement<[], { seq: number; hash: Buffer | null }>;
    meta: Database.Statement<[string], { value: string }>;
  };
  // Present only on a writer; their absence is what makes append/writeSnapshot refuse on a reader.
  private readonly appendTx?: (rows: readonly FactRow[]) => StoredFact[];
  private readonly insertStaged?: (rows: readonly ChainedRow[]) => void;
  /** Staged mode: the staging file, the facts written there but not yet to SQLite, the chain head. */
  private stage?: {
    readonly file: string;
    readonly fd: number;
    size: number;
    pending: ChainedRow[];
    head: ChainBase;
    timer?: { kind: 'timeout'; handle: NodeJS.Timeout } | { kind: 'immediate'; handle: NodeJS.Immediate };
    readonly flushMs: number;
    readonly batchRows: number;
    readonly onError: (e: Error) => void;
    readonly onRecover: (what: 'stage' | 'sqlite') => void;
    readonly sync: boolean;
    /** A failed append's bytes could not be cut off again: no append until they are. */
    torn: boolean;
    stageFailure: WriteFailure | null;
    sqliteFailure: WriteFailure | null;
    /** The last move into SQLite failed: retry without blocking. */
    failing?: boolean;
  };
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
      if (opts.readonly !== true) journal.recoverStage(opts.staged);
      // A compaction that died in its delete phase is finished by the next writer (compact.ts).
      if (opts.readonly !== true && opts.archive !== true) finishDeletes(db);
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
    this.stmt = {
      lastSeq: db.prepare(`SELECT coalesce(max(seq), 0) AS seq FROM facts`),
      readAfter: db.prepare(`SELECT ${FACT_COLUMNS} FROM facts WHERE seq > ? ORDER BY seq ASC`),
      latestSnapshot: db.prepare(`SELECT seq, state FROM snapshots ORDER BY seq DESC LIMIT 1`),
      head: db.prepare(`SELECT seq, hash FROM facts ORDER BY seq DESC LIMIT 1`),
      meta: db.prepare(`SELECT value FROM meta WHERE key = ?`),
    };
    if (readonly) return;

    const insertOwner = db.prepare<[string, string]>(`INSERT OR IGNORE INTO owners (name, uuid) VALUES (?, ?)`);
    const insertFact = db.prepare<[number, string, string, string, string | null, string | null, string | null, string | null, string, Buffer]>(
      `INSERT INTO facts (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insertSnapshot = db.prepare<[number, string, string]>(`INSERT OR REPLACE INTO snapshots (seq, at, state) VALUES (?, ?, ?)`);
    const pruneSnapshots = db.prepare<[number]>(
      `DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)`,
    );

    // IMMEDIATE takes the write lock at BEGIN, so a second writer (a CLI compaction) waits on
    // busy_timeout instead of failing with SQLITE_BUSY halfway through a batch.
    const insertRows = (rows: readonly ChainedRow[]): void => {
      for (const r of rows) {
        insertFact.run(r.seq, r.at, r.host, r.kind, r.resource, r.disk, r.owner, r.ownerName, r.json, r.hash);
        // A lookup in a table of a few thousand rows; it writes only for a name or uuid not seen before.
        if (r.owner !== null && r.ownerName !== null) insertOwner.run(r.ownerName, r.owner);
      }
    };
    const appendTx = db.transaction((rows: readonly FactRow[]): StoredFact[] => {
      // Read inside the write transaction: another writer (a second daemon on a test file, a CLI)
      // may have appended since our last batch, and a cached head would fork the chain.
      const chained = chainRows(rows, this.chainHead(), host);
      insertRows(chained);
      return chained.map(stored);
    });
    this.appendTx = (rows) => appendTx.immediate(rows);
    // Staged facts already carry their seq and hash; they must continue the chain exactly.
    const insertStagedTx = db.transaction((rows: readonly ChainedRow[]): void => {
      const head = this.chainHead();
      const first = rows[0]!;
      if (first.seq !== head.seq + 1) {
        throw new JournalError(
          'VMLOCKD_ERR_JOURNAL_FORKED',
          `journal ${this.file}: staged fact seq ${first.seq} does not follow the last stored seq ${head.seq}; another process wrote to this journal`,
        );
      }
      insertRows(rows);
    });
    this.insertStaged = (rows) => insertStagedTx.immediate(rows);
    const snapshotTx = db.transaction((seq: number, at: string, state: string) => {
      insertSnapshot.run(seq, at, state);
      pruneSnapshots.run(KEEP_SNAPSHOTS);
    });
    this.snapshotTx = (seq, at, state) => snapshotTx.immediate(seq, at, state);
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
    const chained = chainRows(rows, st.head, this.host);
    const buf = Buffer.from(chained.map((r, i) => stageLine(r, chained.length - 1 - i)).join(''));
    let off = 0;
    try {
      // A failed append whose bytes are still there would sit before this one, with the same seqs.
      if (st.torn) {
        ftruncateSync(st.fd, st.size);
        st.torn = false;
      }
      while (off < buf.length) off += writeSync(st.fd, buf, off, buf.length - off);
      // Survival of a filesystem failure or an OS crash: the staged lines must reach the disk too.
      if (st.sync) {
        const t0 = this.onStageSync ? performance.now() : 0;
        fdatasyncSync(st.fd);
        this.onStageSync?.((performance.now() - t0) / 1000);
      }
    } catch (cause) {
      // A partial line would hide every later one from recovery, and whole lines of an append that
      // was refused would be taken for the next one's (same seqs): cut them off again.
      if (off > 0 || st.sync) {
        try {
          ftruncateSync(st.fd, st.size);
        } catch {
          // Read-only (EROFS) or failing: refuse every append until the cut succeeds.
          st.torn = true;
        }
      }
      const e = writeError(`cannot write to the journal's staging file ${st.file}`, cause);
      st.stageFailure = failure(st.stageFailure, e);
      throw e;
    }
    if (st.stageFailure !== null) {
      st.stageFailure = null;
      st.onRecover('stage');
    }
    st.size += buf.length;
    const last = chained[chained.length - 1]!;
    st.head = { seq: last.seq, hash: last.hash };
    for (const r of chained) st.pending.push(r);
    this.scheduleStageFlush(st.pending.length > st.batchRows);
    return chained.map(stored);
  }

  /**
   * Facts in the staging file beside this journal that its database does not have yet (a reader's
   * view: a daemon is about to move them, or one crashed before it could). Null when there are none.
   */
  stagedTail(): { count: number; firstSeq: number; lastSeq: number } | null {
    this.live();
    const file = stageFileOf(this.file);
    if (!existsSync(file)) return null;
    let rows: ChainedRow[];
    try {
      rows = parseStage(readFileSync(file, 'utf8'), this.chainHead(), file);
    } catch {
      // Moved and truncated while we read, or damaged: the writer's open reports damage.
      return null;
    }
    if (rows.length === 0) return null;
    return { count: rows.length, firstSeq: rows[0]!.seq, lastSeq: rows[rows.length - 1]!.seq };
  }

  /** Staged mode: facts acknowledged but not yet in SQLite. */
  get pendingCount(): number {
    return this.stage?.pending.length ?? 0;
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
    const st = this.stage;
    if (st === undefined || st.pending.length === 0) return;
    const n = Math.min(limit, st.pending.length);
    const batch = n === st.pending.length ? st.pending : st.pending.slice(0, n);
    try {
      this.writer(this.insertStaged)(batch);
    } catch (cause) {
      // A fork or a closed journal is not a disk condition: pass it on as it is.
      if (cause instanceof JournalError) throw cause;
      const e = writeError(`cannot move staged facts into SQLite ${this.file} (they stay durable in ${st.file})`, cause);
      st.sqliteFailure = failure(st.sqliteFailure, e);
      throw e;
    }
    st.pending = n === st.pending.length ? [] : st.pending.slice(n);
    if (st.sqliteFailure !== null) {
      st.sqliteFailure = null;
      st.onRecover('sqlite');
    }
    if (st.pending.length === 0 && st.size >= STAGE_RESET_BYTES) {
      // Synced mode: the staged lines are the only synced copy of the facts until SQLite's WAL is.
      let synced = true;
      if (st.sync) {
        try {
          syncWal(this.file);
        } catch {
          synced = false; // keep the staged copy; cut at a later move
        }
      }
      if (synced) {
        ftruncateSync(st.fd, 0);
        st.size = 0;
      }
    }
  }

  private scheduleStageFlush(soon: boolean): void {
    const st = this.stage!;
    if (st.timer !== undefined) {
      // A backlog (a burst, start-up's re-takes) does not wait for the timer; a failing SQLite
      // (a full disk) does: its retry timer is the only one.
      if (!soon || st.timer.kind === 'immediate' || st.sqliteFailure !== null) return;
      clearTimeout(st.timer.handle as NodeJS.Timeout);
    }
    const run = () => {
      st.timer = undefined;
      if (!this.db.open) return;
      try {
        // After a failure, retries do not wait out the busy timeout each time (a busy journal
        // would freeze the event loop); the facts are durable in the staging file meanwhile.
        if (st.failing) this.nonBlocking(() => this.flushStaged(st.batchRows));
        else this.flushStaged(st.batchRows);
        st.failing = false;
      } catch (e) {
        st.onError(e as Error);
        st.failing = true;
        // Retried until the disk has room again: soon, but not in a tight loop.
        const handle = setTimeout(run, Math.max(st.flushMs, st.sqliteFailure !== null ? 500 : 100));
        handle.unref();
        st.timer = { kind: 'timeout', handle };
        return;
      }
      // The rest of a backlog moves in further chunks, with I/O served between them.
      if (st.pending.length > 0) st.timer = { kind: 'immediate', handle: setImmediate(run) };
    };
    if (soon) {
      st.timer = { kind: 'immediate', handle: setImmediate(run) };
    } else {
      const handle = setTimeout(run, st.flushMs);
      // An idle process may exit with facts still staged: close() or the next open moves them.
      handle.unref();
      st.timer = { kind: 'timeout', handle };
    }
  }

  /** Open the staging file (staged mode) and move into SQLite whatever a previous process left there. */
  private recoverStage(staged: JournalOptions['staged']): void {
    const file = stageFileOf(this.file);
    const enable = staged !== undefined && staged !== false;
    if (!enable && !existsSync(file)) return;
    const fd = openSync(file, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o600);
    // A staged writer holds an flock on its staging file while it is open: a second writer (a
    // `journal compact` beside the running daemon) must leave the daemon's staged facts to it.
    try {
      fsExt.flockSync(fd, 'exnb');
    } catch (e) {
      closeSync(fd);
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' && (e as NodeJS.ErrnoException).code !== 'EWOULDBLOCK') throw e;
      if (!enable) return;
      throw new JournalError('VMLOCKD_ERR_JOURNAL_FORKED', `journal ${this.file} is already open for staged appends by another process`);
    }
    try {
      const left = parseStage(readFileSync(file, 'utf8'), this.chainHead(), file);
      if (left.length > 0) this.writer(this.insertStaged)(left);
      // What was moved must be on disk before its only synced copy is cut (a NORMAL commit is not).
      if (left.length > 0 && (typeof staged === 'object' ? staged.sync : undefined) !== false) syncWal(this.file);
      ftruncateSync(fd, 0);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    if (!enable) {
      closeSync(fd);
      return;
    }
    const o = typeof staged === 'object' ? staged : {};
    this.stage = {
      file,
      fd,
      size: fstatSync(fd).size,
      pending: [],
      head: this.chainHead(),
      flushMs: o.flushMs ?? 2,
      batchRows: o.batchRows ?? 500,
      onError: o.onError ?? (() => {}),
      onRecover: o.onRecover ?? (() => {}),
      stageFailure: null,
      sqliteFailure: null,
      torn: false,
      sync: o.sync ?? this.db.pragma('synchronous', { simple: true }) === 2,
    };
  }

  /** The newest fact's seq, here or (after a compaction that moved every fact) in the archive. */
  lastSeq(): number {
    this.live(true);
    const staged = this.stage?.pending.length ? this.stage.head.seq : 0;
    const here = this.stmt.lastSeq.get()!.seq;
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

  // A generator, so the statement (and the connection's read) starts at the first next(), not when
  // a caller merely creates the iterator.
  private *replay(seq: number): IterableIterator<StoredFact> {
    // A statement serves one iteration at a time; a nested replay gets its own.
    const stmt = this.stmt.readAfter.busy
      ? this.db.prepare<[number], DbFactRow>(`SELECT ${FACT_COLUMNS} FROM facts WHERE seq > ? ORDER BY seq ASC`)
      : this.stmt.readAfter;
    let last = seq;
    for (const row of stmt.iterate(seq)) {
      last = row.seq;
      yield toStoredFact(row);
    }
    // Facts SQLite could not take yet (a full disk): acknowledged, so part of the state.
    const pending = this.stage?.pending ?? [];
    for (const r of pending) if (r.seq > last) yield stored(r);
  }

  latestSnapshot(): { seq: number; state: unknown } | undefined {
    this.live(true);
    const row = this.stmt.latestSnapshot.get();
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
    this.maxGenStmt ??= this.db.prepare(
      `SELECT max(
         coalesce((SELECT max(CAST(json_extract(payload, '$.generation') AS INTEGER)) FROM facts WHERE disk = @disk AND kind IN ('LockAcquired', 'Reacquired')), 0),
         coalesce((SELECT gen FROM generation_floor WHERE disk = @disk), 0)) AS gen`,
    );
    const row = this.maxGenStmt.get({ disk }) as { gen: number | null } | undefined;
    return row?.gen ?? 0;
  }
  private maxGenStmt?: Database.Statement;

  /**
   * Every lockspace directory a grant in SQLite (live or carried past a compaction) named: with the
   * virtlockd server's registry, how a start knows the lockspaces libvirt created over the protocol.
   * Reads every grant: for the start after an unclean stop only.
   */
  grantLockspaces(): string[] {
    this.checkOpen();
    const rows = this.db
      .prepare(
        `SELECT DISTINCT json_extract(payload, '$.lockspace') AS ls FROM facts WHERE kind IN ('LockAcquired', 'Reacquired')
         UNION SELECT DISTINCT json_extract(payload, '$.lockspace') FROM carried WHERE kind IN ('LockAcquired', 'Reacquired')`,
      )
      .all() as Array<{ ls: unknown }>;
    return rows.map((r) => r.ls).filter((l): l is string => typeof l === 'string' && l !== '');
  }

  /**
   * Run `fn` with SQLite's busy timeout at 0: a write that finds another process holding the write
   * lock fails at once (SQLITE_BUSY) instead of blocking the event loop for the whole timeout.
   * For background writes that can be retried later (the snapshot, staged-fact retries).
   */
  nonBlocking<T>(fn: () => T): T {
    this.checkOpen();
    this.db.pragma('busy_timeout = 0');
    try {
      return fn();
    } finally {
      if (this.db.open) this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  /** In time order (at, then seq; seq order with afterSeq); every given filter must match. */
  query(q: FactQuery): StoredFact[] {
    this.live(true);
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
    return this.db.prepare(`SELECT 1 FROM facts WHERE disk = ? UNION ALL SELECT 1 FROM carried WHERE disk = ? LIMIT 1`).get(disk, disk) !== undefined;
  }

  /** True when a fact names this VM by uuid or name (live or carried). */
  knowsOwner(owner: string): boolean {
    this.live();
    return (
      this.db
        .prepare(`SELECT 1 FROM owners WHERE name = @o OR uuid = @o UNION ALL SELECT 1 FROM facts WHERE owner = @o UNION ALL SELECT 1 FROM carried WHERE owner = @o LIMIT 1`)
        .get({ o: owner }) !== undefined
    );
  }

  /** The uuids journaled with this VM name, so a name finds facts that carry only the uuid. */
  ownersNamed(name: string): string[] {
    this.live();
    return this.db.prepare(`SELECT uuid FROM owners WHERE name = ? ORDER BY uuid`).pluck().all(name) as string[];
  }

  /** The first fact still in this file (0 when empty): facts before it were compacted away. */
  firstSeq(): number {
    this.live();
    return (this.db.prepare(`SELECT coalesce(min(seq), 0) AS seq FROM facts`).get() as { seq: number }).seq;
  }

  /** Facts with seq <= this were moved to the archive (0: none). */
  archivedThrough(): number {
    this.live();
    return this.metaInt('archived_through');
  }

  /** The oldest `at` still in this file, or undefined when it holds no fact. */
  oldestAt(): string | undefined {
    this.live();
    const row = this.db.prepare(`SELECT at FROM facts INDEXED BY facts_at ORDER BY at ASC LIMIT 1`).get() as { at: string } | undefined;
    return row?.at;
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
    const row = this.db.prepare(`SELECT min(seq) AS seq FROM facts INDEXED BY facts_at WHERE at >= ?`).get(before) as { seq: number | null };
    return row.seq === null ? this.lastSeq() : row.seq - 1;
  }

  /**
   * Moves facts with seq <= throughSeq into an archive file (created if absent), keeps the ones still
   * in force as carried copies, and deletes the moved facts here. Refuses unless a snapshot at or past
   * throughSeq exists, so start-up never needs a moved fact. See compact.ts for the crash-safe order.
   */
  compact(opts: CompactOptions): CompactReport {
    this.live();
    this.writer(this.appendTx);
    return compact(this, opts);
  }

  /** Where an interrupted compaction stands (nothing pending: no `through`, undeleted 0). */
  compactionState(): CompactionState {
    this.live();
    return compactionState(this.db);
  }

  /** The seq and hash the next appended fact chains from. */
  chainHead(): ChainBase {
    const last = this.stmt.head.get();
    if (last !== undefined) return { seq: last.seq, hash: last.hash ?? GENESIS_HASH };
    return this.chainBase();
  }

  /** Where this file's chain starts: genesis, or the last fact moved out by compaction. */
  chainBase(): ChainBase {
    const seq = this.metaInt('chain_base_seq');
    const hex = this.stmt.meta.get('chain_base_hash')?.value;
    return { seq, hash: hex === undefined ? GENESIS_HASH : Buffer.from(hex, 'hex') };
  }

  /** @internal */
  metaInt(key: string): number {
    const raw = this.stmt.meta.get(key)?.value;
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
    const base = this.chainBase();
    const rows = this.db.prepare(`SELECT ${CHAIN_COLUMNS}, hash FROM facts ORDER BY seq ASC`).iterate() as IterableIterator<ChainRow & { hash: unknown }>;
    let prevSeq = base.seq;
    let prev = base.hash;
    let checked = 0;
    let bad = 0;
    let first: { seq: number; reason: string } | undefined;
    for (const row of rows) {
      // Already archived and still here: a compaction died in its delete phase. The archive's own
      // chain covers them; they are not tampering (compactionState() reports them).
      if (base.seq > 0 && row.seq <= base.seq) continue;
      checked++;
      let reason: string | undefined;
      if (row.seq !== prevSeq + 1) reason = `chain broken: seq ${row.seq} follows seq ${prevSeq}`;
      else if (!Buffer.isBuffer(row.hash)) reason = 'hash is missing';
      else if (typeof row.payload !== 'string' || !chainHash(prev, row).equals(row.hash)) {
        reason = 'hash does not match the fact: it, or the hash stored with it, was changed after it was written';
      }
      if (reason !== undefined) {
        bad++;
        first ??= { seq: row.seq, reason };
      }
      prevSeq = row.seq;
      // Carry on from the stored hash, so one edited fact is reported once, not as every fact after it.
      prev = Buffer.isBuffer(row.hash) ? row.hash : GENESIS_HASH;
    }
    const report: ChainReport = {
      ok: first === undefined,
      checked,
      base: { seq: base.seq, hash: base.hash.toString('hex') },
      head: { seq: prevSeq, hash: prev.toString('hex') },
      problems: [],
    };
    if (first !== undefined) {
      report.firstBadSeq = first.seq;
      report.problems.push(`hash chain: first bad seq ${first.seq}: ${first.reason}`);
      if (bad > 1) report.problems.push(`hash chain: ${bad} facts disagree in total`);
    }
    return report;
  }

  integrity(): IntegrityReport {
    this.live();
    const problems: string[] = [];

    const sqliteCheck = this.db.pragma('integrity_check') as { integrity_check: string }[];
    for (const { integrity_check: line } of sqliteCheck.slice(0, MAX_LISTED_PROBLEMS)) {
      if (line !== 'ok') problems.push(`sqlite integrity_check: ${line}`);
    }

    try {
      const found = readSchemaVersion(this.db, this.file);
      if (found !== SCHEMA_VERSION) problems.push(`schema version is ${found}, this vmlockd expects ${SCHEMA_VERSION}`);
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }

    const triggers = new Set(
      (this.db.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'facts'`).all() as { name: string }[]).map(
        (r) => r.name,
      ),
    );
    for (const name of APPEND_ONLY_TRIGGERS) {
      if (!triggers.has(name)) problems.push(`append-only trigger ${name} is missing: facts can be rewritten`);
    }

    const facts = this.checkFacts();
    problems.push(...facts.problems);

    const last = this.lastSeq();
    const snapshots = this.db.prepare(`SELECT seq, state FROM snapshots ORDER BY seq`).all() as { seq: number; state: unknown }[];
    for (const s of snapshots) {
      if (s.seq > last) problems.push(`snapshot seq ${s.seq} is beyond the last fact seq ${last}`);
      if (!parsesAsJson(s.state)) problems.push(`snapshot seq ${s.seq}: state is not valid JSON`);
    }

    const report: IntegrityReport = { ok: problems.length === 0, problems };
    if (facts.firstBadSeq !== undefined) report.firstBadSeq = facts.firstBadSeq;
    return report;
  }

  /** Closes the database; staged facts are moved into SQLite first (if that fails they stay staged for the next open, and the error is thrown after closing). */
  close(): void {
    const st = this.stage;
    let failed: unknown;
    if (st !== undefined && this.db.open) {
      if (st.timer?.kind === 'timeout') clearTimeout(st.timer.handle);
      if (st.timer?.kind === 'immediate') clearImmediate(st.timer.handle);
      st.timer = undefined;
      try {
        this.flushStaged();
      } catch (e) {
        failed = e;
      }
      closeSync(st.fd);
      this.stage = undefined;
    }
    if (this.db.open) this.db.close();
    if (failed !== undefined) throw failed;
  }

  /** One streaming pass over every fact: seq gaps, payload JSON, `at` shape, kind and host present. */
  private checkFacts(): { problems: string[]; firstBadSeq?: number } {
    const archived = this.metaInt('archived_through');
    const rows = this.db.prepare(`SELECT seq, at, host, kind, payload FROM facts ORDER BY seq ASC`).iterate() as IterableIterator<{
      seq: number;
      at: unknown;
      host: unknown;
      kind: unknown;
      payload: unknown;
    }>;
    let firstBad: { seq: number; reason: string } | undefined;
    let bad = 0;
    let prev: number | undefined;
    for (const row of rows) {
      const reasons: string[] = [];
      // Facts are never deleted, so a hole means rows were removed behind the triggers' back.
      if (prev !== undefined && row.seq !== prev + 1) reasons.push(`seq gap: follows seq ${prev}`);
      if (prev === undefined && row.seq < 1) reasons.push('seq is below 1');
      // Facts at or below archived_through still here: a compaction's delete phase was cut short.
      if (prev === undefined && archived > 0 && row.seq > archived + 1) reasons.push(`first fact after compaction should be seq ${archived + 1}`);
      if (!parsesAsJson(row.payload)) reasons.push(`payload is not valid JSON (${preview(row.payload)})`);
      if (!isIsoMsUtc(row.at)) reasons.push(`at is not an ISO-8601 UTC time with ms (${preview(row.at)})`);
      if (typeof row.kind !== 'string' || row.kind === '') reasons.push(`kind is empty (${preview(row.kind)})`);
      if (typeof row.host !== 'string' || row.host === '') reasons.push(`host is empty (${preview(row.host)})`);
      prev = row.seq;
      if (reasons.length === 0) continue;
      bad++;
      firstBad ??= { seq: row.seq, reason: reasons.join('; ') };
    }
    if (firstBad === undefined) return { problems: [] };
    const problems = [`first bad seq ${firstBad.seq}: ${firstBad.reason}`];
    if (bad > 1) problems.push(`${bad} facts fail checks in total`);
    return { problems, firstBadSeq: firstBad.seq };
  }

  // Every read goes through here: staged facts are moved into SQLite first, so a reader in this
  // process always sees what was acknowledged. `tolerant` (replay, lastSeq, audit queries): when
  // SQLite cannot take them (a full disk) the read goes on; replay and lastSeq add the staged facts
  // themselves, an audit query misses them until the disk has room again.
  private live(tolerant = false): void {
    this.checkOpen();
    if (this.stage === undefined || this.stage.pending.length === 0) return;
    if (!tolerant) return this.flushStaged();
    try {
      this.flushStaged();
    } catch (e) {
      if (!(e instanceof JournalError) || e.code !== 'VMLOCKD_ERR_JOURNAL_WRITE') throw e;
      this.stage.onError(e);
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

/**
 * fdatasync SQLite's WAL (a synchronous=NORMAL commit is written there but not synced; a checkpoint
 * syncs the WAL before and the database after it, so the WAL is the only unsynced part).
 */
function syncWal(journalFile: string): void {
  let fd: number;
  try {
    fd = openSync(`${journalFile}-wal`, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The errno a failed write stands for: Node's code, or SQLite's translated (SQLITE_FULL is ENOSPC). */
export function errnoOf(cause: unknown): string | null {
  const code = (cause as { code?: unknown })?.code;
  if (typeof code !== 'string') return null;
  if (code.startsWith('SQLITE_FULL')) return 'ENOSPC';
  if (code.startsWith('SQLITE_READONLY')) return 'EROFS';
  if (code.startsWith('SQLITE_IOERR')) return 'EIO';
  return code;
}

function writeError(what: string, cause: unknown): JournalError {
  const errno = errnoOf(cause);
  const why = cause instanceof Error ? cause.message : String(cause);
  const named = errno !== null && !why.includes(errno) ? `${errno}: ${why}` : why;
  const e = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', `${what}: ${named}`, { cause });
  (e as { errno?: string | null }).errno = errno;
  return e;
}

function failure(prev: WriteFailure | null, e: JournalError): WriteFailure {
  const errno = (e as { errno?: string | null }).errno ?? null;
  return { since: prev?.since ?? new Date().toISOString(), message: e.message, errno, attempts: (prev?.attempts ?? 0) + 1 };
}

function openReader(file: string): Database.Database {
  // Checked first so the message names the file; fileMustExist still guards the race after it.
  if (!existsSync(file)) {
    throw new JournalError('VMLOCKD_ERR_JOURNAL_MISSING', `journal ${file} does not exist (read-only open never creates it)`);
  }
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (cause) {
    throw new JournalError('VMLOCKD_ERR_JOURNAL_MISSING', `cannot open journal ${file} read-only: ${String(cause)}`, { cause });
  }
  // journal_mode and synchronous are the writer's business; a reader only waits out a checkpoint.
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  return db;
}

function checkReaderVersion(db: Database.Database, file: string): number {
  let found: number;
  try {
    found = readSchemaVersion(db, file);
  } catch (err) {
    if (err instanceof JournalError) throw err;
    throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `cannot read journal ${file}: ${String(err)}`, { cause: err });
  }
  if (found === 0) throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `${file} is an empty database, not a vmlockd journal`);
  if (found > SCHEMA_VERSION) throw tooNew(file, found, SCHEMA_VERSION);
  if (found < SCHEMA_VERSION) {
    throw new JournalError(
      'VMLOCKD_ERR_JOURNAL_TOO_OLD',
      `${file} has journal schema version ${found}, older than ${SCHEMA_VERSION}; open it read-write once (start the daemon) to migrate it`,
    );
  }
  return found;
}

function openWriter(file: string, synchronous: 'NORMAL' | 'FULL', allowNetworkFs: boolean): Database.Database {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true });
  if (!allowNetworkFs) {
    const fs = networkFsName(statfsSync(dir).type);
    if (fs !== undefined) {
      throw new JournalError(
        'VMLOCKD_ERR_JOURNAL_NETWORK_FS',
        `journal ${file} would live on a ${fs} filesystem; put it on local disk (WAL needs local shared memory and local fsync)`,
      );
    }
  }
  const db = new Database(file);
  try {
    // busy_timeout first: switching to WAL needs a lock another opener may briefly hold.
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') {
      throw new JournalError('VMLOCKD_ERR_JOURNAL_NO_WAL', `journal ${file} refused WAL mode (journal_mode is ${String(mode)})`);
    }
    db.pragma(`synchronous = ${synchronous}`);
    db.pragma('foreign_keys = ON');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * A writer opens a live journal or an archive, never the other: a daemon pointed at an archive
 * would append live facts after history, and compaction into a live journal would mix two hosts' runs.
 */
function checkRole(db: Database.Database, file: string, archive: boolean): void {
  const role = (db.prepare(`SELECT value FROM meta WHERE key = 'role'`).get() as { value: string } | undefined)?.value;
  if (role === 'archive' && !archive) {
    throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `${file} is a vmlockd journal archive (written by journal compact), not a live journal`);
  }
  if (role !== 'archive' && archive) {
    const hasFacts = db.prepare(`SELECT 1 FROM facts LIMIT 1`).get() !== undefined;
    if (hasFacts) throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `${file} is a live vmlockd journal, not an archive`);
    db.prepare(`INSERT INTO meta (key, value) VALUES ('role', 'archive') ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run();
  }
}

function checkRow(row: FactRow, i: number) {
  const where = `fact row ${i}`;
  if (row === null || typeof row !== 'object') {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `${where} must be an object, got ${preview(row)}`);
  }
  if (typeof row.kind !== 'string' || row.kind === '') {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `${where}: kind must be a non-empty string, got ${preview(row.kind)}`);
  }
  // Range queries compare `at` as text, which equals time order only for this one exact shape.
  if (!isIsoMsUtc(row.at)) {
    throw new JournalError(
      'VMLOCKD_ERR_BAD_INPUT',
      `${where} (${row.kind}): at must be ISO-8601 UTC with ms like 2026-11-25T10:00:00.000Z, got ${preview(row.at)}`,
    );
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(row.payload);
  } catch (cause) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `${where} (${row.kind}): payload is not JSON-serialisable: ${String(cause)}`, {
      cause,
    });
  }
  if (json === undefined) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `${where} (${row.kind}): payload is not JSON-serialisable, got ${typeof row.payload}`);
  }
  return {
    json,
    kind: row.kind,
    at: row.at,
    resource: optionalText(row.resource, where, 'resource'),
    disk: optionalText(row.disk, where, 'disk'),
    owner: optionalText(row.owner, where, 'owner'),
    ownerName: optionalText(row.ownerName, where, 'ownerName'),
  };
}

function optionalText(value: unknown, where: string, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `${where}: ${field} must be a string or null, got ${preview(value)}`);
  }
  return value;
}

function checkSeq(name: string, seq: unknown): void {
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `${name} must be an integer >= 0, got ${preview(seq)}`);
  }
}

function parsesAsJson(text: unknown): boolean {
  if (typeof text !== 'string') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function preview(value: unknown): string {
  let s: string;
  try {
    s = typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
  } catch {
    s = String(value);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Check rows and give each its seq and hash, continuing the chain from `head`. Throws before anything is written. */
function chainRows(rows: readonly FactRow[], head: ChainBase, host: string): ChainedRow[] {
  let { seq, hash } = head;
  return rows.map((row, i) => {
    const { json, kind, at, resource, disk, owner, ownerName } = checkRow(row, i);
    // Explicit seq: after a compaction that moved every fact, max(rowid) + 1 would restart at 1.
    seq += 1;
    hash = chainHash(hash, { seq, at, host, kind, resource, disk, owner, owner_name: ownerName, payload: json });
    return { seq, at, host, kind, resource, disk, owner, ownerName, json, hash };
  });
}

/**
 * The caller folds what is returned; handing back the parsed JSON (not the caller's object) makes
 * live state equal the state a replay will build from the same rows.
 */
function stored(r: ChainedRow): StoredFact {
  return { seq: r.seq, host: r.host, kind: r.kind, at: r.at, resource: r.resource, disk: r.disk, owner: r.owner, ownerName: r.ownerName, payload: JSON.parse(r.json) as unknown };
}

/**
 * One staged fact: a JSON array on one line; its hash is checked again on recovery. The last element
 * counts the lines still to come in the same append, so recovery keeps an append whole or not at all.
 */
function stageLine(r: ChainedRow, more: number): string {
  return `${JSON.stringify([r.seq, r.at, r.host, r.kind, r.resource, r.disk, r.owner, r.ownerName, r.json, r.hash.toString('hex'), more])}\n`;
}

/**
 * The staged facts after `head`, each re-chained and checked against its stored hash, whole appends
 * only. An append cut short at the end of the file (a last line torn, or its last lines missing) is
 * a write that never returned (the process died inside it), so it was never acknowledged: it is
 * dropped. Anything wrong before that is damage.
 */
function parseStage(text: string, head: ChainBase, file: string): ChainedRow[] {
  const lines = text.split('\n');
  const out: ChainedRow[] = [];
  let group: ChainedRow[] = [];
  let { seq, hash } = head;
  const bad = (i: number, why: string) => new JournalError('VMLOCKD_ERR_JOURNAL_CORRUPT', `staging file ${file}, line ${i + 1}: ${why}`);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    // A complete file ends with a newline, so only the piece after the last one can be torn.
    const last = i === lines.length - 1;
    const parsed = parseStageLine(line);
    if (parsed === null) {
      if (last) break;
      throw bad(i, `not a staged fact (${preview(line)})`);
    }
    const { row: r, more } = parsed;
    if (r.seq > seq) {
      if (r.seq !== seq + 1) throw bad(i, `seq ${r.seq} does not follow seq ${seq}`);
      const h = chainHash(hash, { seq: r.seq, at: r.at, host: r.host, kind: r.kind, resource: r.resource, disk: r.disk, owner: r.owner, owner_name: r.ownerName, payload: r.json });
      if (!h.equals(r.hash)) {
        if (last) break;
        throw bad(i, `seq ${r.seq}: its hash does not match it`);
      }
      group.push(r);
      seq = r.seq;
      hash = r.hash;
    }
    if (more === 0) {
      for (const g of group) out.push(g);
      group = [];
    }
  }
  return out;
}

function parseStageLine(line: string): { row: ChainedRow; more: number } | null {
  let a: unknown;
  try {
    a = JSON.parse(line);
  } catch {
    return null;
  }
  if (!Array.isArray(a) || a.length !== 11) return null;
  const [seq, at, host, kind, resource, disk, owner, ownerName, json, hex, more] = a as unknown[];
  if (typeof more !== 'number' || !Number.isSafeInteger(more) || more < 0) return null;
  const text = (v: unknown) => typeof v === 'string';
  const textOrNull = (v: unknown) => v === null || typeof v === 'string';
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || !text(at) || !text(host) || !text(kind) || !text(json) || !text(hex)) return null;
  if (!textOrNull(resource) || !textOrNull(disk) || !textOrNull(owner) || !textOrNull(ownerName)) return null;
  if (!/^[0-9a-f]{64}$/.test(hex as string)) return null;
  const row: ChainedRow = {
    seq,
    at: at as string,
    host: host as string,
    kind: kind as string,
    resource: resource as string | null,
    disk: disk as string | null,
    owner: owner as string | null,
    ownerName: ownerName as string | null,
    json: json as string,
    hash: Buffer.from(hex as string, 'hex'),
  };
  return { row, more };
}
