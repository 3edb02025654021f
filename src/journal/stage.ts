// Staged appends (the daemon, the journal's only writer): an append is acknowledged once its facts
// are in the staging file beside the database (one write(2)); a timer moves them into SQLite in
// batches. This module owns that file: writing it, moving its facts, recovering what a crashed
// process left in it. See docs/decisions/0006.
import type Database from 'better-sqlite3';
import { flockSync } from './flock.js';
import { closeSync, existsSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, writeSync, constants as fsConstants } from 'node:fs';
import { JournalError } from './errors.js';
import { failure, writeError, type WriteFailure } from './health.js';
import type { FactRow } from './query.js';
import { chainRows, preview, type ChainedRow } from './rows.js';
import { chainHash, type ChainBase } from './schema.js';
import { SqliteMover, type MoveFailure } from './mover.js';
import { keepIfRefused, type KeptStage } from './stage-keep.js';
import { rewriteStage, stageDisplaced, type StageCheck } from './stage-replace.js';
import { SqliteFiles } from './sqlite-displaced.js';

export interface StageOptions {
  /**
   * How long a staged fact may wait for its SQLite batch (default 20 ms). Each batch writes about one
   * page per index and distinct key to the WAL, so small batches cost more per fact (bench/README.md).
   */
  flushMs?: number;
  /** Most facts moved into SQLite per batch, so a burst does not block the event loop for long (default 500). */
  batchRows?: number;
  /** A batch that could not be written to SQLite (it stays staged and is retried). */
  onError?: (e: Error) => void;
  /** Writes succeed again after a failure (`health()` is clear once more). */
  onRecover?: (what: 'stage' | 'sqlite') => void;
  /**
   * fdatasync the staging file before `append` returns (one per append, so a group of commands
   * shares one): an acknowledged fact then survives the state directory's filesystem failing (an
   * ext4 error remounting it read-only, a power loss), not only the process. Default: on under
   * synchronous=FULL, else off. See docs/decisions/0002. (SQLite's WAL is synced before the staging
   * file is cut, in either mode: decision 0018.)
   */
  sync?: boolean;
  /**
   * Move staged facts into SQLite on a worker thread with its own connection (the daemon; decision
   * 0021): the batches' transactions and WAL checkpoints leave the event loop. Reads and closes
   * through this journal wait for the batch in flight first. Default off.
   */
  thread?: boolean;
  /** The staging file was removed or cut short under this process and written anew (or could not be): error level. */
  onDisplaced?: (msg: string) => void;
  /** The check before each append in one call without JS objects (the daemon: the native binding's stageCheck); default through fs. */
  stageCheck?: StageCheck;
}

/** What the staging file needs from the journal it stages for. */
export interface StageOwner {
  /** The journal's database file; the staging file sits beside it. */
  readonly file: string;
  readonly db: Database.Database;
  /** Inserts facts that already carry their seq and hash, in one transaction (refused on a reader). */
  insertStaged(rows: readonly ChainedRow[]): void;
  nonBlocking<T>(fn: () => T): T;
  /** Inside `nonBlocking`: nothing may wait for another process's write lock (the writer thread's batch neither). */
  noWait(): boolean;
  chainHead(): ChainBase;
}

/** The staging file: one JSON array per fact and line; see `stageLine`. */
export function stageFileOf(journalFile: string): string {
  return `${journalFile}-stage`;
}
/** Truncate the staging file once everything in it is in SQLite and it has grown past this. */
const STAGE_RESET_BYTES = 1 << 20;
/**
 * Sync mode: the staging file is this long from the start, zeros past its last line, and appends
 * overwrite the zeros in place. An fdatasync after an append that grew the file also writes the
 * inode (its size; on this project's ext4 a second synchronous write); after an overwrite in place
 * only the data goes (decision 0018). Recovery reads up to the first NUL.
 */
export const STAGE_PREALLOC_BYTES = STAGE_RESET_BYTES + (256 << 10);
const ZEROS = Buffer.alloc(64 << 10);
/** How often an idle daemon checks that journal.db and its WAL are still the files SQLite writes. */
const SQLITE_FILES_CHECK_MS = 1000;

/** Staged mode: the staging file, the facts written there but not yet to SQLite, the chain head. */
export class Stage {
  /** Where the next append goes: the end of the last staged line. */
  size: number;
  /** The file's length: past `size` it holds only NULs (sync mode preallocates; see STAGE_PREALLOC_BYTES). */
  allocated: number;
  pending: ChainedRow[] = [];
  /** With a writer thread: each pending fact's staging line, which is what the thread is sent. */
  private pendingLines: string[] = [];
  private readonly mover?: SqliteMover;
  /** journal.db and its WAL still the files SQLite writes (sqlite-displaced.ts, decision 0028). */
  private readonly sqliteFiles: SqliteFiles;
  /** The same check on a timer: an idle daemon moves nothing, yet its journal.db may be removed (review27 F3). */
  private readonly filesTimer: NodeJS.Timeout;
  /** A batch the thread did not move: it may still have committed it (lost thread), check SQLite's head before the next move. */
  private reconcile = false;
  /** The stage is due for its reset and waits for a complete checkpoint: the thread is asked for one alone. */
  private wantCheckpoint = false;
  head: ChainBase;
  timer?: { kind: 'timeout'; handle: NodeJS.Timeout } | { kind: 'immediate'; handle: NodeJS.Immediate };
  readonly flushMs: number;
  readonly batchRows: number;
  readonly onError: (e: Error) => void;
  readonly onRecover: (what: 'stage' | 'sqlite') => void;
  readonly onDisplaced: (msg: string) => void;
  readonly sync: boolean;
  /** A failed append's bytes could not be cut off again: no append until they are. */
  torn = false;
  stageFailure: WriteFailure | null = null;
  sqliteFailure: WriteFailure | null = null;
  /** The last move into SQLite failed: retry without blocking. */
  failing?: boolean;

  private readonly stageCheck: StageCheck | undefined;

  private constructor(
    private readonly owner: StageOwner,
    readonly file: string,
    public fd: number,
    o: StageOptions,
    kept?: KeptStage,
  ) {
    this.allocated = fstatSync(fd).size;
    this.size = kept?.size ?? this.allocated;
    this.head = kept !== undefined ? { seq: kept.rows[kept.rows.length - 1]!.seq, hash: kept.rows[kept.rows.length - 1]!.hash } : owner.chainHead();
    this.flushMs = o.flushMs ?? 20;
    this.batchRows = o.batchRows ?? 500;
    this.onError = o.onError ?? (() => {});
    this.onDisplaced = o.onDisplaced ?? ((m) => process.stderr.write(`${m}\n`));
    this.onRecover = o.onRecover ?? (() => {});
    this.stageCheck = o.stageCheck;
    this.sync = o.sync ?? owner.db.pragma('synchronous', { simple: true }) === 2;
    if (this.sync && this.size === 0) this.preallocate();
    if (o.thread === true) {
      this.mover = new SqliteMover(owner.file, owner.db.pragma('synchronous', { simple: true }) === 2 ? 'FULL' : 'NORMAL', (n, f, c) => this.moved(n, f, c));
    }
    this.sqliteFiles = new SqliteFiles(owner, this.onDisplaced);
    this.filesTimer = setInterval(() => this.checkFiles(), SQLITE_FILES_CHECK_MS);
    this.filesTimer.unref();
    if (kept !== undefined) {
      this.pending = [...kept.rows];
      if (this.mover !== undefined) this.pendingLines = kept.rows.map((r) => stageLine(r, 0));
      this.sqliteFailure = failure(null, kept.refused);
      this.failing = true;
      this.onError(kept.refused);
      this.schedule(false, Math.max(this.flushMs, 100));
    }
  }

  /**
   * Sync mode: zeros over [0, STAGE_PREALLOC_BYTES) (and over whatever was staged before), synced,
   * so later appends overwrite them in place. Only called when every staged line is in SQLite with
   * its WAL synced (or there were none). The zeros are on disk before any new line is written:
   * otherwise a power loss inside the next append's sync could leave an old line's tail after the
   * new lines, which recovery would take for damage. If they cannot be synced, the file is cut to
   * nothing instead and grows by appends (as without preallocation).
   */
  private preallocate(): void {
    const end = Math.max(this.size, STAGE_PREALLOC_BYTES);
    try {
      for (let off = 0; off < end; ) off += writeSync(this.fd, ZEROS, 0, Math.min(ZEROS.length, end - off), off);
      fdatasyncSync(this.fd);
      this.size = 0;
      this.allocated = end;
    } catch {
      this.size = 0;
      this.allocated = 0;
      try {
        ftruncateSync(this.fd, 0);
      } catch {
        this.torn = true; // the next append cuts the file first, or refuses
      }
    }
  }

  /**
   * Opens the staging file (staged mode) and moves into SQLite whatever a previous process left
   * there. Returns the stage in staged mode, undefined otherwise (the file was only recovered).
   */
  static recover(owner: StageOwner, staged: boolean | StageOptions | undefined): Stage | undefined {
    const file = stageFileOf(owner.file);
    const enable = staged !== undefined && staged !== false;
    if (!enable && !existsSync(file)) return undefined;
    // Not O_APPEND: appends are positional, over the zeros a synced stage preallocates.
    const fd = openSync(file, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600);
    // A staged writer holds an flock on its staging file while it is open: a second writer (a
    // `journal compact` beside the running daemon) must leave the daemon's staged facts to it.
    try {
      flockSync(fd, 'exnb');
    } catch (e) {
      closeSync(fd);
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' && (e as NodeJS.ErrnoException).code !== 'EWOULDBLOCK') throw e;
      if (!enable) return undefined;
      throw new JournalError('VMLOCKD_ERR_JOURNAL_FORKED', `journal ${owner.file} is already open for staged appends by another process`);
    }
    const o = typeof staged === 'object' ? staged : {};
    let kept: KeptStage | undefined;
    try {
      // Only the lines are decoded (they end where the preallocated zeros begin); the zeros are
      // checked as bytes (readStage).
      const { bytes, moreAfterZero } = readStage(fd);
      const nul = bytes.indexOf(0);
      const text = bytes.toString('utf8', 0, nul === -1 ? bytes.length : nul);
      const whole = { end: 0 };
      const left = parseStage(text, owner.chainHead(), file, whole);
      // A staged writer (the daemon) never waits here for another process's write lock, and starts
      // even when SQLite cannot take them (that lock, a full disk): the facts stay staged, durable in
      // this file, and move like any others once SQLite takes them (stage-keep.ts).
      if (left.length > 0 && enable) kept = keepIfRefused(owner, left, bytes, text, whole.end, fd, file);
      else if (left.length > 0) owner.insertStaged(left);
      // Every staged line, moved just now or by the process that staged it (killed before it synced
      // its WAL: a NORMAL commit is not synced), must be durable in SQLite before its staged copy,
      // maybe the only synced one, is cut (and zeroed and synced by preallocate). Decision 0018.
      if (kept === undefined && (text.length > 0 || moreAfterZero)) {
        // And, best effort, in journal.db itself (a WAL removed later would take them along: decision 0028).
        if (left.length > 0 && enable) new SqliteFiles(owner, () => {}).checkpoint();
        syncWal(owner.file);
      }
      if (kept === undefined) ftruncateSync(fd, 0);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    if (!enable) {
      closeSync(fd);
      return undefined;
    }
    return new Stage(owner, file, fd, o, kept);
  }

  /**
   * Checks and chains `rows` and writes them with one write(2); nothing changes if either fails.
   * `onSync` is told how long the fdatasync took (sync mode).
   */
  append(rows: readonly FactRow[], host: string, onSync?: (seconds: number) => void): ChainedRow[] {
    const heads: string[] = [];
    const chained = chainRows(rows, this.head, host, heads);
    const lines = chained.map((r, i) => stageLineFrom(heads[i]!, r, chained.length - 1 - i));
    // Written as text (encoded outside the JS heap); a Buffer only for the rest of a short write.
    const text = lines.length === 1 ? lines[0]! : lines.join('');
    const bytes = Buffer.byteLength(text);
    // Still the file at its path, holding what was staged (stage-replace.ts): else written anew first.
    this.checkDisplaced();
    let off = 0;
    try {
      // A failed append whose bytes are still there would sit before this one, with the same seqs.
      if (this.torn) {
        ftruncateSync(this.fd, this.size);
        this.allocated = this.size;
        this.torn = false;
      }
      off = writeSync(this.fd, text, this.size, 'utf8');
      if (off < bytes) {
        const buf = Buffer.from(text);
        while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off, this.size + off);
      }
      // Survival of a filesystem failure or an OS crash: the staged lines must reach the disk too.
      if (this.sync) {
        const t0 = onSync ? performance.now() : 0;
        fdatasyncSync(this.fd);
        onSync?.((performance.now() - t0) / 1000);
      }
    } catch (cause) {
      // A partial line would hide every later one from recovery, and whole lines of an append that
      // was refused would be taken for the next one's (same seqs): cut them off again.
      if (off > 0 || this.sync) {
        try {
          ftruncateSync(this.fd, this.size);
          this.allocated = this.size;
        } catch {
          // Read-only (EROFS) or failing: refuse every append until the cut succeeds.
          this.torn = true;
        }
      }
      const e = writeError(`cannot write to the journal's staging file ${this.file}`, cause);
      this.stageFailure = failure(this.stageFailure, e);
      throw e;
    }
    if (this.stageFailure !== null) {
      this.stageFailure = null;
      this.onRecover('stage');
    }
    this.size += bytes;
    if (this.size > this.allocated) this.allocated = this.size;
    const last = chained[chained.length - 1]!;
    this.head = { seq: last.seq, hash: last.hash };
    for (const r of chained) this.pending.push(r);
    if (this.mover !== undefined) for (const l of lines) this.pendingLines.push(l);
    this.schedule(this.pending.length > this.batchRows);
    return chained;
  }

  /**
   * The staging file was removed, replaced or cut short while this process ran: every fact not yet
   * in SQLite goes to a fresh file renamed over its path before anything more is acknowledged; if that
   * fails, the append is refused (nothing acknowledged into a file recovery will not read).
   */
  private checkDisplaced(): void {
    let why: string | null = null;
    try {
      why = stageDisplaced(this.fd, this.file, this.size, this.stageCheck);
      if (why === null) return;
      const n = this.pending.length;
      const next = rewriteStage(this.file, this.pending.map((r, i) => stageLine(r, n - 1 - i)).join(''));
      try {
        closeSync(this.fd);
      } catch {
        // the old file's fd: nothing of it is needed any more
      }
      this.fd = next.fd;
      this.size = next.size;
      this.allocated = next.size;
      this.torn = false;
      this.onDisplaced(`journal: the staging file ${this.file} was ${why} while the daemon ran (do not remove or truncate it: it holds acknowledged facts); wrote it anew with the ${n} acknowledged fact(s) not yet in SQLite${n > 0 ? ` (seq ${this.pending[0]!.seq}-${this.pending[n - 1]!.seq})` : ''}`);
    } catch (cause) {
      const e = writeError(`the journal's staging file ${this.file} ${why === null ? 'cannot be checked' : `was ${why} and cannot be written anew with the ${this.pending.length} fact(s) not yet in SQLite`}`, cause);
      this.stageFailure = failure(this.stageFailure, e);
      this.onDisplaced(`journal: ${e.message}; commands are refused until it can`);
      throw e;
    }
  }

  /**
   * Moves staged facts into SQLite now (at most `limit`), in one transaction. On failure they stay
   * staged (and in the staging file) and the error is thrown.
   */
  flush(limit = Infinity): void {
    // The thread's batch first: these are the oldest pending facts, and SQLite must not get them twice.
    // A nonBlocking caller has it give up at once if another process holds the write lock.
    this.mover?.settle(this.owner.noWait());
    if (this.pending.length === 0) return;
    if (this.reconcile) this.dropStored();
    if (this.pending.length === 0) return;
    const n = Math.min(limit, this.pending.length);
    const batch = n === this.pending.length ? this.pending : this.pending.slice(0, n);
    try {
      this.owner.insertStaged(batch);
    } catch (cause) {
      // A fork or a closed journal is not a disk condition: pass it on as it is.
      if (cause instanceof JournalError) throw cause;
      const e = writeError(`cannot move staged facts into SQLite ${this.owner.file} (they stay durable in ${this.file})`, cause);
      this.sqliteFailure = failure(this.sqliteFailure, e);
      throw e;
    }
    this.dropMoved(n);
  }

  /**
   * The oldest `n` pending facts are in SQLite now: forget them, and cut the staging file when it may
   * be. `checkpointed`: the writer thread's checkpoint after this batch was complete.
   */
  private dropMoved(n: number, checkpointed = false): void {
    this.pending = n === this.pending.length ? [] : this.pending.slice(n);
    if (this.mover !== undefined) this.pendingLines = n === this.pendingLines.length ? [] : this.pendingLines.slice(n);
    if (this.sqliteFailure !== null) {
      this.sqliteFailure = null;
      this.onRecover('sqlite');
    }
    // journal.db or its WAL removed or replaced under us: logged, journal.db written anew (decision 0028).
    const files = this.sqliteFiles.check();
    if (this.pending.length === 0 && this.size >= STAGE_RESET_BYTES) {
      // Only once every fact is in journal.db itself, synced (decision 0028): a complete checkpoint
      // (the thread's after this batch, or one here when the moves run on this thread), or the copy
      // just written at its path. Else the next batch tries again; the staged lines stay.
      if (files === 'displaced') return;
      if (files === 'ok' && !checkpointed) {
        if (this.mover?.usable() === true) {
          // Asked of the thread on its own (off the event loop); soon after a burst, slowly while a
          // reader keeps it from completing (a checkpoint-only batch that came back incomplete).
          this.wantCheckpoint = true;
          if (this.timer === undefined) this.schedule(false, n === 0 ? 1000 : this.flushMs);
          return;
        }
        if (!this.sqliteFiles.checkpoint()) return;
      }
      this.wantCheckpoint = false;
      // The staged lines may be the only synced copy of the facts until SQLite's WAL is (written
      // back by the kernel even when not synced here): never cut them first (decision 0018).
      let synced = true;
      try {
        syncWal(this.owner.file);
      } catch {
        synced = false; // keep the staged copy; cut at a later move
      }
      if (synced && this.sync) {
        this.preallocate();
      } else if (synced) {
        ftruncateSync(this.fd, 0);
        this.size = 0;
        this.allocated = 0;
      }
    }
  }

  /**
   * journal.db or its WAL removed or replaced while nothing moves (an idle daemon): the same check as
   * after each move, so journal.db is written anew before a crash could leave the next start without
   * the facts only the removed file held (review27 F3; decision 0028). Two stat(2)s a second.
   */
  private checkFiles(): void {
    if (!this.owner.db.open) return;
    try {
      this.sqliteFiles.check();
    } catch (e) {
      this.onDisplaced(`journal: cannot check the journal's files at their paths: ${(e as Error).message}`);
    }
  }

  /** More staged facts than one batch moves: too many to move on the event loop at once (Journal.live). */
  backlogged(): boolean {
    return this.pending.length > this.batchRows;
  }

  /** A reader waits for the backlog: the next batch goes now (a failing move's retry too: a reader asking is worth a try, as its own move would be). */
  hurry(): void {
    if (!this.owner.db.open || this.timer?.kind === 'immediate') return;
    if (this.timer !== undefined) clearTimeout(this.timer.handle);
    this.timer = undefined;
    this.schedule(true);
  }

  /** Whether staged facts currently move into SQLite on the writer thread (it opened its connection and is alive). */
  get threaded(): boolean {
    return this.mover?.usable() ?? false;
  }

  /** Pending facts SQLite already holds (a batch the lost thread committed after all) are dropped. */
  private dropStored(): void {
    this.reconcile = false;
    const head = this.owner.chainHead().seq;
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.seq <= head) n++;
    if (n > 0) this.dropMoved(n);
  }

  /** The thread's answer for its batch of the oldest `n` pending facts. */
  private moved(n: number, f: MoveFailure | null, checkpointed = false): void {
    if (f === null) {
      this.failing = false;
      this.dropMoved(n, checkpointed);
      if (this.pending.length > 0) this.schedule(this.pending.length >= this.batchRows);
      return;
    }
    this.reconcile = true;
    let e: Error;
    if (f.journalCode !== null) e = new JournalError(f.journalCode as JournalError['code'], f.message);
    else {
      const cause = Object.assign(new Error(f.message), f.code !== null ? { code: f.code } : {});
      e = writeError(`cannot move staged facts into SQLite ${this.owner.file} (they stay durable in ${this.file})`, cause);
      this.sqliteFailure = failure(this.sqliteFailure, e as JournalError);
    }
    this.failing = true;
    this.onError(e);
    if (!this.owner.db.open) return;
    // Retried until the disk has room again: soon, but not in a tight loop.
    if (this.timer?.kind === 'timeout') clearTimeout(this.timer.handle);
    if (this.timer?.kind === 'immediate') clearImmediate(this.timer.handle);
    this.timer = undefined;
    this.schedule(false, Math.max(this.flushMs, this.sqliteFailure !== null ? 500 : 100));
  }

  /** Stops the timer, moves what is staged into SQLite and closes the file; returns the move's error, if any. */
  close(): unknown {
    let failed: unknown;
    clearInterval(this.filesTimer);
    if (this.timer?.kind === 'timeout') clearTimeout(this.timer.handle);
    if (this.timer?.kind === 'immediate') clearImmediate(this.timer.handle);
    this.timer = undefined;
    try {
      this.flush();
    } catch (e) {
      failed = e;
    }
    this.mover?.close();
    closeSync(this.fd);
    return failed;
  }

  private schedule(soon: boolean, delayMs = this.flushMs): void {
    if (this.timer !== undefined) {
      // A backlog (a burst, start-up's re-takes) does not wait for the timer; a failing SQLite
      // (a full disk) does: its retry timer is the only one.
      if (!soon || this.timer.kind === 'immediate' || this.sqliteFailure !== null) return;
      clearTimeout(this.timer.handle as NodeJS.Timeout);
    }
    const run = () => {
      this.timer = undefined;
      if (!this.owner.db.open) return;
      const mover = this.mover;
      if (mover?.usable()) {
        // One batch at a time; its answer schedules the next (moved).
        if (mover.inflight !== null) return;
        if (this.pending.length === 0) {
          if (this.wantCheckpoint) mover.send('', 0, true);
          this.wantCheckpoint = false;
          return;
        }
        if (this.reconcile) this.dropStored();
        const n = Math.min(this.batchRows, this.pending.length);
        // The batch that empties a stage due for its reset asks for a checkpoint (decision 0028).
        if (n > 0) mover.send(this.pendingLines.slice(0, n).join(''), n, n === this.pending.length && this.size >= STAGE_RESET_BYTES);
        return;
      }
      try {
        // Never waits out the busy timeout (another process holding the write lock would freeze
        // the event loop: review 24b); the facts are durable in the staging file meanwhile, and
        // the move is retried soon.
        this.owner.nonBlocking(() => this.flush(this.batchRows));
        this.failing = false;
      } catch (e) {
        this.onError(e as Error);
        this.failing = true;
        // Retried until the disk has room again: soon, but not in a tight loop.
        const handle = setTimeout(run, Math.max(this.flushMs, this.sqliteFailure !== null ? 500 : 100));
        handle.unref();
        this.timer = { kind: 'timeout', handle };
        return;
      }
      // The rest of a backlog moves in further chunks, with I/O served between them.
      if (this.pending.length > 0) this.timer = { kind: 'immediate', handle: setImmediate(run) };
    };
    if (soon) {
      this.timer = { kind: 'immediate', handle: setImmediate(run) };
    } else {
      const handle = setTimeout(run, delayMs);
      // An idle process may exit with facts still staged: close() or the next open moves them.
      handle.unref();
      this.timer = { kind: 'timeout', handle };
    }
  }
}

/** Read size of readStage: the stage's own preallocation is ~10 MiB of zeros. */
const READ_CHUNK = 1 << 20;
const ZERO_CHUNK = Buffer.alloc(READ_CHUNK);

/**
 * The staging file's bytes up to and including its first zero byte (all of them when it has none),
 * and whether any byte after that zero is not zero. What recovery needs of a preallocated stage
 * (lines, then zeros) without decoding and scanning the zeros as text: reading the whole file as a
 * string and testing it with a regular expression cost every daemon start 60-100 ms on a loaded
 * 2-core machine (bench/README.md, speed27). The zeros are compared a chunk at a time (memcmp).
 */
export function readStage(fd: number): { bytes: Buffer; moreAfterZero: boolean } {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(READ_CHUNK);
  let pos = 0;
  let zeroSeen = false;
  for (;;) {
    const n = readSync(fd, buf, 0, READ_CHUNK, pos);
    if (n === 0) return { bytes: Buffer.concat(chunks), moreAfterZero: false };
    pos += n;
    let from = 0;
    if (!zeroSeen) {
      const z = buf.indexOf(0);
      if (z === -1 || z >= n) {
        chunks.push(Buffer.from(buf.subarray(0, n)));
        continue;
      }
      chunks.push(Buffer.from(buf.subarray(0, z + 1)));
      zeroSeen = true;
      from = z + 1;
    }
    if (!buf.subarray(from, n).equals(ZERO_CHUNK.subarray(0, n - from))) return { bytes: Buffer.concat(chunks), moreAfterZero: true };
  }
}

/**
 * Facts in the staging file beside `journalFile` that its database does not have yet (a reader's
 * view: a daemon is about to move them, or one crashed before it could). Null when there are none.
 */
export function stagedTail(journalFile: string, head: () => ChainBase): { count: number; firstSeq: number; lastSeq: number } | null {
  const file = stageFileOf(journalFile);
  if (!existsSync(file)) return null;
  let rows: ChainedRow[];
  try {
    rows = parseStage(readFileSync(file, 'utf8'), head(), file);
  } catch {
    // Moved and truncated while we read, or damaged: the writer's open reports damage.
    return null;
  }
  if (rows.length === 0) return null;
  return { count: rows.length, firstSeq: rows[0]!.seq, lastSeq: rows[rows.length - 1]!.seq };
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

/**
 * One staged fact: a JSON array on one line; its hash is checked again on recovery. The last element
 * counts the lines still to come in the same append, so recovery keeps an append whole or not at all.
 */
export function stageLine(r: ChainedRow, more: number): string {
  return `${JSON.stringify([r.seq, r.at, r.host, r.kind, r.resource, r.disk, r.owner, r.ownerName, r.json, r.hash.toString('hex'), more])}\n`;
}

/**
 * `stageLine(r, more)`, the same text, from the row's `chainHead` (the JSON array of its first eight
 * columns, made once for its hash): that array without its `]`, then the payload text, hash and count.
 */
export function stageLineFrom(head: string, r: ChainedRow, more: number): string {
  return `${head.slice(0, -1)},${JSON.stringify(r.json)},"${r.hash.toString('hex')}",${more}]\n`;
}

/**
 * The staged facts after `head`, each re-chained and checked against its stored hash, whole appends
 * only. An append cut short at the end of the file (a last line torn, or its last lines missing) is
 * a write that never returned (the process died inside it), so it was never acknowledged: it is
 * dropped. Anything wrong before that is damage.
 */
export function parseStage(text: string, head: ChainBase, file: string, whole?: { end: number }): ChainedRow[] {
  // A synced stage is preallocated: its lines end where the zeros begin.
  const nul = text.indexOf('\0');
  const lines = (nul === -1 ? text : text.slice(0, nul)).split('\n');
  const out: ChainedRow[] = [];
  // Where the line being read starts (in UTF-16 units of `text`).
  let at = 0;
  let group: ChainedRow[] = [];
  let { seq, hash } = head;
  const bad = (i: number, why: string) => new JournalError('VMLOCKD_ERR_JOURNAL_CORRUPT', `staging file ${file}, line ${i + 1}: ${why}`);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const start = at;
    at += line.length + 1;
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
      if (r.seq !== seq + 1) {
        // Its first new fact past the database's head: the facts between are in neither file.
        const gap = out.length === 0 && group.length === 0 && r.seq > seq + 1;
        throw bad(i, `seq ${r.seq} does not follow seq ${seq}${gap ? `: acknowledged facts seq ${seq + 1}-${r.seq - 1} are in neither the database nor its staging file (journal.db or journal.db-wal removed, replaced or restored from an older copy while a daemon ran?; docs/operations.md, "Files of the journal"); start from a journal.db that holds them, or move the staging file aside to start without them and the locks they record` : ''}`);
      }
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
      // Past this line's newline (a last line without one: its end).
      if (whole !== undefined) whole.end = start + line.length + (last ? 0 : 1);
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
