// The publisher's worker thread: copies the local journal's facts, in seq order and with their
// hashes, into `<file lockspace>/.journal/<host-id>/` segments (src/journal/segment.ts,
// docs/decisions/0016-published-history.md). Every read of the cluster filesystem and every write to
// it happens on this thread: when that filesystem hangs (a frozen FUSE client), this thread waits in
// its syscall and the daemon's event loop, which answers every request, never notices. It reads the
// journal through its own SQLite connection, from the last published seq: falling behind costs lag,
// never memory, and there is no queue to overflow.
import Database from 'better-sqlite3';
import { closeSync, constants, existsSync, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { lockspaceProblem, type LockspacePin } from '../engine/locker-hosts.js';
import { HOLD_RULES } from '../cli/audit-query.js';
import { HoldTracker } from '../journal/compact.js';
import { GENESIS_HASH, type ChainRow } from '../journal/schema.js';
import { collectGarbage } from './collect.js';
import { encodePruned, prunedFileName, readPruned } from '../journal/segment-pruned.js';
import { encodeHostChange, hostChangedFileName } from '../journal/host-changed.js';
import { encodeSuccessor, readSuccessor, successorFileName } from '../journal/segment-successor.js';
import {
  PUBLISHED_DIR,
  decodeSegment,
  encodeCarried,
  encodeFact,
  encodeHeader,
  encodeSeal,
  hostSegmentDir,
  listSegments,
  segmentFileName,
  segmentTempName,
  SegmentDecoder,
  type SegmentCarried,
  type SegmentDecoderState,
  type SegmentFact,
  type SegmentFile,
} from '../journal/segment.js';

export interface PublishWorkerData {
  journalFile: string;
  lockspace: string;
  pin: LockspacePin;
  host: string;
  journalId: string;
  segmentBytes: number;
  /** Least time between two writes while the backlog is small (pacing: fewer, larger writes). */
  intervalMs: number;
  /** Retention (config publish_retain_days, in ms): sealed segments whose last fact is older are pruned; 0 keeps all. */
  retainMs: number;
  /** How often, at most, to look for segments to prune. */
  pruneEveryMs: number;
}

/** Main thread -> worker. */
export type ToWorker = { type: 'head'; seq: number } | { type: 'segmentBytes'; bytes: number } | { type: 'retain'; ms: number } | { type: 'stop' };

/** Worker -> main thread. */
export type FromWorker =
  | { type: 'progress'; seq: number; segment: string; bytes: number; facts: number }
  | { type: 'idle'; seq: number }
  | { type: 'error'; message: string; code: string | null }
  | { type: 'notice'; message: string }
  | { type: 'pruned'; through: number; segments: number; carried: number }
  | { type: 'stopped'; seq: number };

/** Rows read from the journal per write. */
const BATCH_ROWS = 2_000;
/** After this many facts published since the last one, an idle moment collects this thread's heap. */
const COLLECT_AFTER_FACTS = 20_000;
/** After a failure, the first retry; doubled each time up to the most. */
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** While the journal's staged facts are on their way into SQLite: how soon to look again. */
const CATCH_UP_POLL_MS = 10;
/** The longest of those waits while SQLite stays behind the staging file. */
const CATCH_UP_POLL_MAX_MS = 250;
/** Idle: look at the journal this often even without a wake-up (facts appended by another process). */
const IDLE_POLL_MS = 1_000;
/** meta.published_through is written at most this often (and at stop). */
const META_EVERY_MS = 1_000;

/** A journal fact as SQLite returns it (the chain's columns) with its stored hash. */
type Row = ChainRow & { hash: Buffer | null };

/** The open segment this thread appends to. */
interface Current {
  name: string;
  fd: number;
  offset: number;
  count: number;
}

class PublishError extends Error {
  constructor(message: string, readonly code: string | null = null) {
    super(message);
  }
}

function errnoOf(e: unknown): string | null {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : null;
}

class Publisher {
  private readonly d: PublishWorkerData;
  private readonly dir: string;
  private readonly db: Database.Database;
  private readonly rows: Database.Statement<[number, number], Row>;
  private readonly hashAt: Database.Statement<[number], { hash: Buffer | null }>;
  private readonly minSeq: Database.Statement<[], { seq: number | null }>;
  private readonly carriedBefore: Database.Statement<[number], Row>;
  private readonly maxSeq: Database.Statement<[], { seq: number | null }>;
  private readonly meta: Database.Statement<[string], { value: string }>;
  private readonly setMeta: Database.Statement<[string, string]>;
  private segmentBytes: number;
  /** Resumed from the directory since the last failure. */
  private ready = false;
  private cur: Current | undefined;
  /**
   * The next segment opened starts after facts compacted before they were published: it gets a
   * `compacted` header and the journal's carried facts (the holds still in force at the cut), so the
   * published history knows every hold the local audit knows (docs/decisions/0016).
   */
  private base = false;
  /** Last published seq and its hash (what the next fact chains from). */
  private published = 0;
  /** `published` when this thread's heap was last collected (src/daemon/collect.ts); none yet. */
  private collectedAt: number | undefined;
  private publishedHash: Buffer = GENESIS_HASH;
  /** The main thread's newest seq (staged facts reach SQLite a few ms later). */
  private want = 0;
  /** Idle looks in a row that found SQLite behind what the main thread said it has. */
  private lagPolls = 0;
  private stopping = false;
  private wake: (() => void) | undefined;
  private lastWrite = 0;
  private metaWritten = -1;
  private metaAt = 0;
  private retainMs: number;
  private hostChangeSaid = false;
  private successorSaid = false;
  /** When pruning was last looked at, on the monotonic clock (undefined: not since the start or a retention change). */
  private prunedAt: number | undefined;
  /** The worker's start, on the monotonic clock. */
  private readonly startedAt = performance.now();

  constructor(d: PublishWorkerData) {
    this.d = d;
    this.segmentBytes = d.segmentBytes;
    this.retainMs = d.retainMs;
    this.dir = hostSegmentDir(d.lockspace, d.host);
    this.db = new Database(d.journalFile, { fileMustExist: true });
    this.db.pragma('busy_timeout = 5000');
    this.rows = this.db.prepare(`SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload, hash FROM facts WHERE seq > ? ORDER BY seq ASC LIMIT ?`);
    this.hashAt = this.db.prepare(`SELECT hash FROM facts WHERE seq = ?`);
    this.minSeq = this.db.prepare(`SELECT min(seq) AS seq FROM facts`);
    this.carriedBefore = this.db.prepare(`SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload, hash FROM carried WHERE seq < ? ORDER BY seq ASC`);
    this.maxSeq = this.db.prepare(`SELECT max(seq) AS seq FROM facts`);
    this.meta = this.db.prepare(`SELECT value FROM meta WHERE key = ?`);
    this.setMeta = this.db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
  }

  onMessage(m: ToWorker): void {
    if (m.type === 'head') this.want = Math.max(this.want, m.seq);
    else if (m.type === 'segmentBytes') this.segmentBytes = m.bytes;
    else if (m.type === 'retain') {
      this.retainMs = m.ms;
      this.prunedAt = undefined;
    }
    else if (m.type === 'stop') this.stopping = true;
    this.wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        r();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        r();
      };
    });
  }

  async run(): Promise<void> {
    let retry = RETRY_MIN_MS;
    while (!this.stopping) {
      try {
        if (!this.ready) this.resume();
        const wrote = this.step();
        retry = RETRY_MIN_MS;
        if (wrote !== 'none') this.lagPolls = 0;
        if (wrote === 'full') continue;
        if (wrote === 'some') {
          // Paced: with a small backlog, gather facts for a while rather than write (and sync) each few.
          const wait = this.lastWrite + this.d.intervalMs - Date.now();
          if (wait > 0) await this.sleepUnlessStopping(wait);
          continue;
        }
        // Idle: the open segment still at its path (a removed directory is found without new facts).
        this.checkDisplaced();
        this.writeMeta(false);
        this.maybePrune();
        // A catch-up (a history published at once, a prune) leaves its garbage in the old
        // generation, where an idle worker never collects it: collect once it is over.
        if (this.collectedAt === undefined || this.published - this.collectedAt >= COLLECT_AFTER_FACTS) {
          collectGarbage();
          this.collectedAt = this.published;
        }
        post({ type: 'idle', seq: this.published });
        // Facts the main thread has but SQLite not yet (staged): look again soon, backing off while
        // SQLite lags (another process holds its lock, a full disk: up to CATCH_UP_POLL_MAX_MS);
        // else wait for a wake-up.
        this.lagPolls = this.want > this.published ? this.lagPolls + 1 : 0;
        await this.sleep(this.lagPolls > 0 ? Math.min(CATCH_UP_POLL_MS << Math.min(this.lagPolls - 1, 10), CATCH_UP_POLL_MAX_MS) : IDLE_POLL_MS);
      } catch (e) {
        this.fail(e);
        await this.sleepUnlessStopping(retry);
        retry = Math.min(retry * 2, RETRY_MAX_MS);
      }
    }
    try {
      if (this.ready) {
        this.step();
        this.writeMeta(true);
      }
    } catch (e) {
      this.fail(e);
    }
    this.closeCurrent();
    this.db.close();
    post({ type: 'stopped', seq: this.published });
  }

  private async sleepUnlessStopping(ms: number): Promise<void> {
    // A stop ends the wait; a head message does not (pacing and back-off are the point of the wait).
    const until = Date.now() + ms;
    while (!this.stopping && Date.now() < until) await this.sleep(until - Date.now());
  }

  private fail(e: unknown): void {
    const code = e instanceof PublishError ? e.code : errnoOf(e);
    post({ type: 'error', message: (e as Error).message ?? String(e), code });
    // Start again from what the directory holds: a failed write may have left part of its bytes.
    this.closeCurrent();
    this.ready = false;
  }

  private closeCurrent(): void {
    if (this.cur !== undefined) {
      try {
        closeSync(this.cur.fd);
      } catch {
        // a descriptor on a dead mount: nothing more to do with it
      }
      this.cur = undefined;
    }
  }

  /**
   * The open segment must still be the file at its path: a host directory removed (or the segment
   * replaced) under the daemon would have it append into an unlinked file that no reader sees, with
   * status saying all is published (review26b F8). Said, then published again from what the directory
   * holds (the resume recreates the directory and starts at the oldest fact the journal has). One
   * fstat and one stat, before each write and once per idle poll.
   */
  private checkDisplaced(): void {
    const cur = this.cur;
    if (cur === undefined) return;
    const file = join(this.dir, cur.name);
    const open = fstatSync(cur.fd, { bigint: true });
    const now = statSync(file, { bigint: true, throwIfNoEntry: false });
    if (now !== undefined && now.dev === open.dev && now.ino === open.ino) return;
    // The successor statement lived in the same directory: said again where the history restarts.
    this.successorSaid = false;
    throw new PublishError(`${file} was ${now === undefined ? 'removed' : 'replaced by another file'} while this daemon published into it (its host directory removed or cleaned?); publishing again from what ${this.dir} holds`, 'VMLOCKD_ERR_PUBLISH_DISPLACED');
  }

  /** The published position from the directory: the newest segment of this journal, its torn tail cut off. */
  private resume(): void {
    const problem = lockspaceProblem(this.d.lockspace, this.d.pin);
    // Never create the history under a bare mount point: no other host would ever see it.
    if (problem !== undefined) throw new PublishError(`the lockspace ${this.d.lockspace} is not the one this daemon started with: ${problem}`, 'VMLOCKD_ERR_LOCKSPACE_AWAY');
    if (!existsSync(this.dir)) {
      mkdirSync(join(this.d.lockspace, PUBLISHED_DIR), { recursive: true, mode: 0o755 });
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    }
    // Every host can write the shared lockspace: a symbolic link planted at .journal or at this
    // host's directory would make this (root) daemon write segments wherever it points.
    for (const d of [join(this.d.lockspace, PUBLISHED_DIR), this.dir]) {
      const st = lstatSync(d);
      if (!st.isDirectory()) {
        throw new PublishError(`${d} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}: publication never writes through it; remove it (the daemon makes the directory itself)`, 'VMLOCKD_ERR_PUBLISH_PATH');
      }
    }
    const mine = listSegments(this.dir).filter((s) => s.journalId === this.d.journalId);
    this.cur = undefined;
    const newest = mine[mine.length - 1];
    if (newest === undefined) {
      // Nothing published yet: start at the first fact this journal still has.
      const first = this.minSeq.get()?.seq ?? null;
      this.published = first === null ? this.chainBaseSeq() : first - 1;
      this.publishedHash = this.hashBefore(this.published + 1);
      // Facts before the first one still here were compacted (publication was off, or this is the
      // upgrade that turned it on): the history starts with the holds they left in force.
      this.base = this.published > 0;
      this.stateSuccessor();
      this.ready = true;
      return;
    }
    const file = join(this.dir, newest.name);
    // Read to EOF: never trust a cached size on a cluster filesystem. Never through a link, never a
    // FIFO or device planted under a segment's name.
    const bytes = readSegmentFile(file);
    const seg = decodeSegment(file, bytes, { host: this.d.host, journal: this.d.journalId, first: newest.firstSeq });
    let keep = seg.state.offset;
    if (seg.problem !== undefined) {
      // Only the last line may be bad: a write cut short by a crash. Anything before it is corruption
      // this writer must not paper over by appending after it.
      const nl = bytes.indexOf(10, seg.problem.offset);
      if (nl !== -1 && nl !== bytes.length - 1) {
        throw new PublishError(`published segment is corrupt, publication stopped until it is moved aside: ${seg.problem.file}: line ${seg.problem.line}${seg.problem.seq !== undefined ? ` (seq ${seg.problem.seq})` : ''}: ${seg.problem.reason}`, 'VMLOCKD_ERR_SEGMENT_CORRUPT');
      }
      keep = seg.problem.offset;
    }
    if (seg.state.header === null || keep === 0) {
      // A header that never became whole (the rename makes that impossible, short of a damaged
      // filesystem): the segment holds nothing; write it again.
      rmSync(file, { force: true });
      this.ready = false;
      return this.resume();
    }
    const lastSeq = seg.state.lastSeq;
    const localLast = this.maxSeq.get()?.seq ?? 0;
    if (lastSeq > Math.max(localLast, this.chainBaseSeq())) {
      throw new PublishError(`${file} holds facts through seq ${lastSeq}, but journal ${this.d.journalId} ends at seq ${localLast}: the published history is ahead of this journal (a restored older copy?); publication stopped`, 'VMLOCKD_ERR_PUBLISH_DIVERGED');
    }
    if (lastSeq > 0) {
      const local = this.hashAt.get(lastSeq)?.hash ?? null;
      if (local !== null && local.toString('hex') !== seg.state.lastHash) {
        throw new PublishError(`${file}: seq ${lastSeq} differs from the local journal's fact ${lastSeq} (hash ${seg.state.lastHash.slice(0, 12)}... published, ${local.toString('hex').slice(0, 12)}... here); publication stopped`, 'VMLOCKD_ERR_PUBLISH_DIVERGED');
      }
    }
    this.published = lastSeq;
    this.publishedHash = Buffer.from(seg.state.lastHash, 'hex');
    if (seg.state.seal !== null) {
      // A seal without its successor (an older writer opened it with the next fact, or this one was
      // stopped between the two writes): created now, and only then the successor statement, which
      // covers this seal too: written before, it said so of a seal whose successor was not there (a
      // failed creation or a crash between the two left a false removal for every reader).
      this.open(lastSeq + 1);
      this.stateSuccessor();
      this.ready = true;
      return;
    }
    this.stateSuccessor();
    const fd = openSync(file, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      if (keep < bytes.length) {
        ftruncateSync(fd, keep);
        fdatasyncSync(fd);
        post({ type: 'notice', message: `resumed ${newest.name}: cut off ${bytes.length - keep} byte(s) of an unfinished last line (a write cut short), continuing after seq ${lastSeq}` });
      }
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    this.cur = { name: newest.name, fd, offset: keep, count: seg.state.count };
    this.ready = true;
  }

  private chainBaseSeq(): number {
    const raw = this.meta.get('chain_base_seq')?.value;
    const n = raw === undefined ? 0 : Number(raw);
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  }

  /** The hash fact `seq` chains from: fact seq-1's, the chain base's, or the genesis. */
  private hashBefore(seq: number): Buffer {
    if (seq <= 1) return GENESIS_HASH;
    const h = this.hashAt.get(seq - 1)?.hash;
    if (h != null) return h;
    if (this.chainBaseSeq() === seq - 1) {
      const hex = this.meta.get('chain_base_hash')?.value;
      if (hex !== undefined) return Buffer.from(hex, 'hex');
    }
    throw new PublishError(`cannot find the hash of seq ${seq - 1} to start a segment at seq ${seq}`, 'VMLOCKD_ERR_PUBLISH_DIVERGED');
  }

  /**
   * Publication stops at a change of host id in the journal: says where, once, in this host's own
   * directory (host-changed.ts), so readers know the history of the host id before the change ends
   * there unpublished, not with its holds still in force. A failure here only loses the statement.
   */
  private sayHostChanged(): void {
    if (this.hostChangeSaid) return;
    try {
      const c = this.db
        .prepare(`SELECT f.seq AS seq, f.at AS at, f.host AS host, p.host AS prev FROM facts f JOIN facts p ON p.seq = f.seq - 1 WHERE f.seq > ? AND f.host != p.host ORDER BY f.seq LIMIT 1`)
        .get(Math.max(this.published, 1)) as { seq: number; at: string; host: string; prev: string } | undefined;
      if (c === undefined) return;
      writeWhole(this.dir, hostChangedFileName(this.d.journalId), Buffer.from(encodeHostChange({ journal: this.d.journalId, from: c.prev, to: c.host, seq: c.seq, at: c.at })));
      this.hostChangeSaid = true;
    } catch (e) {
      post({ type: 'notice', message: `could not record the host id change in ${this.dir}: ${(e as Error).message}` });
    }
  }

  private foreignHost(r: { seq: number; host: string }): PublishError {
    return new PublishError(
      `journal ${this.d.journalId} holds facts journaled under host id ${JSON.stringify(r.host)} (seq ${r.seq} onwards), but this daemon runs as ${JSON.stringify(this.d.host)}: ` +
        `its facts are never published as another host's; publication stopped (start this state directory under its own host id, or move the state directory aside to begin a new journal, or set publish = 0)`,
      'VMLOCKD_ERR_PUBLISH_HOST',
    );
  }

  /** Writes one batch. 'none': nothing new in SQLite; 'some': a short batch; 'full': more are waiting. */
  private step(): 'none' | 'some' | 'full' {
    const rows = this.rows.all(this.published, BATCH_ROWS);
    if (rows.length === 0) return 'none';
    // A journal's facts are published under the host id that journaled them, never under another:
    // the same state directory started under a new host_id would otherwise publish the old host's
    // history a second time as this host's (a false overlap across hosts in audit --cluster).
    const foreign = rows.findIndex((r) => r.host !== this.d.host);
    if (foreign === 0) {
      this.sayHostChanged();
      throw this.foreignHost(rows[0]!);
    }
    if (foreign > 0) rows.length = foreign;
    const start = rows[0]!.seq;
    if (start !== this.published + 1) {
      // Facts after the last published one are gone from the journal: compacted while publication
      // was off. The history gets a hole, named (a gap between segments) rather than hidden.
      post({ type: 'notice', message: `facts seq ${this.published + 1} to ${start - 1} were compacted before they were published: the published history has a gap there (they are in the local archive)` });
      this.seal();
      this.published = start - 1;
      this.publishedHash = this.hashBefore(start);
      this.base = true;
    }
    this.checkDisplaced();
    if (this.cur === undefined) this.open(start);
    const cur = this.cur!;
    const parts: string[] = [];
    let bytes = 0;
    let prev = this.publishedHash;
    let last = this.published;
    let n = 0;
    for (const r of rows) {
      if (r.hash === null) throw new PublishError(`journal fact seq ${r.seq} has no hash; run vmlockd journal verify`, 'VMLOCKD_ERR_PUBLISH_DIVERGED');
      const line = encodeFact(r, r.hash);
      parts.push(line);
      bytes += Buffer.byteLength(line);
      prev = r.hash;
      last = r.seq;
      n++;
      if (cur.offset + bytes >= this.segmentBytes) break;
    }
    const buf = Buffer.from(parts.join(''), 'utf8');
    writeAll(cur.fd, buf, cur.offset);
    fdatasyncSync(cur.fd);
    cur.offset += buf.length;
    cur.count += n;
    this.published = last;
    this.publishedHash = prev;
    this.lastWrite = Date.now();
    post({ type: 'progress', seq: last, segment: cur.name, bytes: buf.length, facts: n });
    this.writeMeta(false);
    if (cur.offset >= this.segmentBytes) {
      this.seal();
      // The successor at once, not with the next fact: a sealed newest segment without it then means
      // it was removed (docs/decisions/0016 "Rotation"; the statement written at resume says so).
      this.open(this.published + 1);
      return 'full';
    }
    return n === rows.length && rows.length < BATCH_ROWS ? 'some' : 'full';
  }

  /**
   * Says once, in this host's directory, that every seal from the published position on is followed
   * by its successor's creation (segment-successor.ts). An earlier statement (a smaller `from`) stays.
   * Called at a resume once the newest segment is not a seal without its successor, so what it says
   * is already true of the seal at `from` (if any) when it appears.
   * A failure only loses the statement: verify then keeps calling a sealed newest segment a note.
   */
  private stateSuccessor(): void {
    if (this.successorSaid) return;
    try {
      if (readSuccessor(this.dir, this.d.journalId) === undefined) {
        writeWhole(this.dir, successorFileName(this.d.journalId), Buffer.from(encodeSuccessor({ journal: this.d.journalId, from: this.published, at: new Date().toISOString() })));
      }
      this.successorSaid = true;
    } catch (e) {
      post({ type: 'notice', message: `could not write the successor statement in ${this.dir}: ${(e as Error).message}` });
    }
  }

  /** Ends the current segment with its seal; the caller opens its successor. */
  private seal(): void {
    const cur = this.cur;
    if (cur === undefined) return;
    const line = Buffer.from(encodeSeal({ last: this.published, hash: this.publishedHash, count: cur.count }));
    writeAll(cur.fd, line, cur.offset);
    fdatasyncSync(cur.fd);
    cur.offset += line.length;
    this.closeCurrent();
  }

  /** A new segment at `first`: written whole as a temporary, synced, then renamed, so it appears with its header. */
  private open(first: number): void {
    const name = segmentFileName(this.d.journalId, first);
    const tmp = join(this.dir, segmentTempName(name));
    const file = join(this.dir, name);
    const lines = [encodeHeader({ host: this.d.host, journal: this.d.journalId, first, prev: this.publishedHash, created: new Date().toISOString(), compacted: this.base })];
    let count = 0;
    if (this.base) {
      for (const r of this.carriedBefore.all(first)) {
        if (r.hash === null) throw new PublishError(`journal carried fact seq ${r.seq} has no hash; run vmlockd journal verify`, 'VMLOCKD_ERR_PUBLISH_DIVERGED');
        lines.push(encodeCarried(r, r.hash));
        count++;
      }
    }
    // The header and the carried block appear together, whole, with the rename.
    const header = Buffer.from(lines.join(''), 'utf8');
    // A leftover (or planted) temporary goes first; O_EXCL|O_NOFOLLOW never writes through a link.
    rmSync(tmp, { force: true });
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    try {
      writeAll(fd, header, 0);
      fdatasyncSync(fd);
      renameSync(tmp, file);
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    syncDir(this.dir);
    if (this.base) post({ type: 'notice', message: `${name} starts the published history after facts compacted before publication: it carries the ${count} fact(s) still in force (held locks)` });
    this.base = false;
    this.cur = { name, fd, offset: header.length, count: 0 };
  }

  /** Retention, when due: a failure is said and tried again at the next due time; publication goes on. */
  private maybePrune(): void {
    if (this.retainMs <= 0) return;
    const now = performance.now();
    // Never in the first interval after the start: a host that boots with its clock ahead (a wrong RTC,
    // before NTP steps it) would find minutes-old segments past the retention and remove the whole
    // published history at once (review26b F3). The interval is on the monotonic clock, so a clock
    // step does not shorten it.
    if (now - this.startedAt < this.d.pruneEveryMs) return;
    if (this.prunedAt !== undefined && now - this.prunedAt < this.d.pruneEveryMs) return;
    this.prunedAt = now;
    try {
      this.prune(Date.now() - this.retainMs);
    } catch (e) {
      post({ type: 'notice', message: `retention: pruning old segments failed, tried again later: ${(e as Error).message}` });
    }
  }

  /**
   * Removes this journal's oldest sealed segments whose newest fact is older than `cutoff`, never the
   * newest segment (the one appended to, or the one resumed from). First writes the pruned-through
   * marker (segment-pruned.ts): the last removed seq, its chain hash (the first kept segment chains
   * from it: journal verify --cluster checks the kept history from there) and the holds still in force
   * at the cut, carried by compaction's rule (HoldTracker, fed with the previous marker's carried facts
   * and every removed fact), so a reader that starts at the first kept segment still sees a hold that
   * began before the cut. Refuses when the history does not start where a marker (or seq 1) says:
   * pruning on top of a missing head would hide it from verify.
   */
  private prune(cutoff: number): void {
    const mine = listSegments(this.dir).filter((s) => s.journalId === this.d.journalId);
    if (mine.length < 2) return;
    const before = readPruned(this.dir, this.d.host, this.d.journalId);
    if (typeof before === 'string') throw new PublishError(`not pruning: ${before} (move it aside to let retention go on)`);
    let tracker = new HoldTracker(HOLD_RULES);
    for (const c of before?.carried ?? []) tracker.see(fullRow(c));
    let expect = before === undefined ? 1 : before.marker.through + 1;
    let through: { seq: number; hash: string } | undefined;
    const remove: SegmentFile[] = [];
    /** Segments the marker already covers (a prune cut short after writing it): removed now. */
    const covered: SegmentFile[] = [];
    for (const s of mine.slice(0, -1)) {
      if (before !== undefined && s.firstSeq <= before.marker.through) {
        covered.push(s);
        continue;
      }
      const seg = this.readWhole(s);
      if (seg.header === null || seg.seal === null) break; // damaged or unsealed: kept, verify names it
      if (s.firstSeq !== expect) {
        if (seg.header.compacted !== true) {
          throw new PublishError(`not pruning: ${s.name} starts at seq ${s.firstSeq}, but the published history before it ends at seq ${expect - 1}: a gap or a missing head (journal verify --cluster names it), which pruning would hide`);
        }
        // Compacted before publication: the holds in force after the hole are the segment's carried lines.
        tracker = new HoldTracker(HOLD_RULES);
      }
      if (seg.lastAt === undefined || Date.parse(seg.lastAt) >= cutoff) break;
      for (const c of seg.carried) tracker.see(fullRow(c));
      for (const f of seg.facts) tracker.see(fullRow(f));
      remove.push(s);
      through = { seq: seg.seal.last, hash: seg.seal.hash };
      expect = seg.seal.last + 1;
    }
    for (const s of covered) rmSync(join(this.dir, s.name), { force: true });
    if (through === undefined) return;
    const carried = tracker.inForce();
    const name = prunedFileName(this.d.journalId);
    const text = encodePruned(
      { host: this.d.host, journal: this.d.journalId, through: through.seq, hash: through.hash, at: new Date().toISOString(), removed: (before?.marker.removed ?? 0) + remove.length },
      carried.map((r) => ({ row: r, hash: r.hash! })),
    );
    writeWhole(this.dir, name, Buffer.from(text, 'utf8'));
    for (const s of remove) rmSync(join(this.dir, s.name), { force: true });
    syncDir(this.dir);
    post({ type: 'pruned', through: through.seq, segments: remove.length, carried: carried.length });
    post({ type: 'notice', message: `retention: removed ${remove.length} published segment(s) through seq ${through.seq} (their facts older than the retention); ${name} records the cut and carries ${carried.length} fact(s) still in force` });
  }

  /** One segment decoded whole, streaming (a segment may be up to publish_segment_bytes). */
  private readWhole(s: SegmentFile): { header: SegmentDecoderState['header']; seal: SegmentDecoderState['seal']; facts: SegmentFact[]; carried: SegmentCarried[]; lastAt: string | undefined } {
    const file = join(this.dir, s.name);
    const d = new SegmentDecoder(file, { host: this.d.host, journal: this.d.journalId, first: s.firstSeq });
    const facts: SegmentFact[] = [];
    const carried: SegmentCarried[] = [];
    const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      if (!fstatSync(fd).isFile()) return { header: null, seal: null, facts, carried, lastAt: undefined };
      const buf = Buffer.allocUnsafe(1024 * 1024);
      for (let pos = 0; ; ) {
        const n = readSync(fd, buf, 0, buf.length, pos);
        if (n === 0) break;
        pos += n;
        for (const l of d.push(buf.subarray(0, n))) {
          if (l.t === 'fact') facts.push(l);
          else if (l.t === 'carried') carried.push(l);
        }
        if (d.problem !== undefined) return { header: null, seal: null, facts, carried, lastAt: undefined };
      }
    } finally {
      closeSync(fd);
    }
    const st = d.state;
    return { header: st.header, seal: d.pending > 0 ? null : st.seal, facts, carried, lastAt: facts[facts.length - 1]?.at ?? st.header?.created };
  }

  /** meta.published_through: how far `journal compact` may cut (it never cuts facts not yet published). */
  private writeMeta(force: boolean): void {
    if (this.published === this.metaWritten) return;
    const now = Date.now();
    if (!force && now - this.metaAt < META_EVERY_MS) return;
    try {
      this.setMeta.run('published_through', String(this.published));
      this.metaWritten = this.published;
      this.metaAt = now;
    } catch (e) {
      // SQLITE_BUSY (a compaction holds the write lock): the next batch writes it.
      post({ type: 'notice', message: `could not record published_through ${this.published} in the journal: ${(e as Error).message}` });
    }
  }
}

/** A segment's fact line as the hold tracker takes journal rows. */
function fullRow(f: SegmentFact | SegmentCarried): ChainRow & { hash: Buffer | null } {
  return { seq: f.seq, at: f.at, host: f.host, kind: f.kind, resource: f.resource, disk: f.disk, owner: f.owner, owner_name: f.owner_name, payload: f.payload, hash: Buffer.from(f.hash, 'hex') };
}

/** A small file written whole: a temporary (created O_EXCL|O_NOFOLLOW), synced, renamed over `name`. */
function writeWhole(dir: string, name: string, bytes: Buffer): void {
  const tmp = join(dir, `.${name}.tmp`);
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    writeAll(fd, bytes, 0);
    fdatasyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, join(dir, name));
  syncDir(dir);
}

function readSegmentFile(file: string): Buffer {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new PublishError(`${file} is not a regular file: publication stopped until it is moved aside`, 'VMLOCKD_ERR_PUBLISH_PATH');
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeAll(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, position + done);
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory (EINVAL); the rename is as durable as they make it.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function post(m: FromWorker): void {
  parentPort?.postMessage(m);
}

if (parentPort !== null) {
  const p = new Publisher(workerData as PublishWorkerData);
  parentPort.on('message', (m: ToWorker) => p.onMessage(m));
  p.run().then(
    () => process.exit(0),
    (e: unknown) => {
      post({ type: 'error', message: `publisher stopped: ${(e as Error).stack ?? String(e)}`, code: null });
      process.exit(1);
    },
  );
}
