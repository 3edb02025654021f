// The staged journal's SQLite writer thread (decision 0021): moves staged facts into SQLite through
// its own connection, so the transactions and WAL checkpoints of the move leave the event loop that
// answers requests. It receives the facts as their staging-file lines (already written and synced
// by the main thread: they are durable before they get here) and inserts them exactly as
// Stage.flush does on the main thread (writer.ts's insertStaged: the seqs must continue the chain,
// or VMLOCKD_ERR_JOURNAL_FORKED). The main thread owns the staging file and decides when to cut it.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { JournalError } from './errors.js';
import { MOVER_DONE, MOVER_EXITED, MOVER_NO_WAIT } from './mover-slots.js';
import { BUSY_TIMEOUT_MS, openWriter } from './open.js';
import { JournalReads } from './reads.js';
import type { ChainedRow } from './rows.js';
import { GENESIS_HASH, indexDiskNamesBatch, type ChainBase } from './schema.js';
import { checkpointComplete } from './sqlite-displaced.js';
import { writeTransactions } from './writer.js';

export interface MoverWorkerData {
  file: string;
  synchronous: 'NORMAL' | 'FULL';
  host: string;
  /** Results go here (the main thread can also read them synchronously: receiveMessageOnPort). */
  port: MessagePort;
  /**
   * Int32 slots (MOVER_DONE, MOVER_NO_WAIT, MOVER_EXITED): the id of the last request answered
   * (Atomics.notify'd after the answer is posted); the newest batch id the main thread will not
   * have wait for another process's write lock; 1 once this thread is exiting.
   */
  done: SharedArrayBuffer;
}
/**
 * SQLite's own busy wait per attempt: another process's write lock is waited for in slices this
 * long, up to the busy timeout in all, so the main thread can call the wait off (MOVER_NO_WAIT).
 */
const BUSY_SLICE_MS = 10;

/** main -> worker */
export type ToMover = { id: number; lines: string; checkpoint?: boolean } | { id: number; close: true };
/** worker -> main */
export type FromMover =
  | { ready: true }
  | { ready: false; message: string }
  | { id: number; ok: true; checkpointed?: boolean }
  | { id: number; ok: false; message: string; code: string | null; journalCode: string | null };

/** A staging-file line back into the row it was written from (its format: stage.ts, stageLine). */
function rowOfLine(line: string): ChainedRow {
  const a = JSON.parse(line) as [number, string, string, string, string | null, string | null, string | null, string | null, string, string, number];
  return { seq: a[0], at: a[1], host: a[2], kind: a[3], resource: a[4], disk: a[5], owner: a[6], ownerName: a[7], json: a[8], hash: Buffer.from(a[9], 'hex') };
}

/** The disk_names backfill waits this long after the thread is ready (the start's own moves first). */
const BACKFILL_DELAY_MS = 1_000;
/** Between two backfill batches: moves queued meanwhile run first, and the thread leaves CPU to others. */
const BACKFILL_PAUSE_MS = 25;
/** After another process's write lock refused a batch. */
const BACKFILL_BUSY_MS = 1_000;

/**
 * Indexes the facts journaled before schema version 4 into disk_names (schema.ts), one bounded batch
 * at a time between this thread's moves, off the start's path: a start re-takes its locks and answers
 * while it runs, and lookups scan what is not indexed yet. A failing batch (other than busy) stops the
 * backfill: lookups go on scanning those facts, as before the index existed.
 */
function backfillDiskNames(db: ReturnType<typeof openWriter>, closing: () => boolean): void {
  const step = () => {
    if (closing()) return;
    let wait = BACKFILL_PAUSE_MS;
    try {
      if (indexDiskNamesBatch(db) === 0) return;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY')) return;
      wait = BACKFILL_BUSY_MS;
    }
    setTimeout(step, wait).unref();
  };
  setTimeout(step, Number(process.env.VMLOCKD_TEST_DISK_NAMES_DELAY_MS ?? BACKFILL_DELAY_MS)).unref();
}

function main(): void {
  const d = workerData as MoverWorkerData;
  const done = new Int32Array(d.done);
  // Dying (an uncaught error, process.exit): a main thread blocked in settle() cannot run the
  // Worker's exit event, so it is told here (decision 0021).
  process.on('exit', () => {
    Atomics.store(done, MOVER_EXITED, 1);
    Atomics.notify(done, MOVER_DONE);
  });
  const answer = (m: FromMover & { id: number }) => {
    d.port.postMessage(m);
    Atomics.store(done, MOVER_DONE, m.id);
    Atomics.notify(done, MOVER_DONE);
  };
  /**
   * Inserts a batch, waiting for another process's write lock in slices: a read or snapshot on the
   * main thread that must not wait (nonBlocking) sets MOVER_NO_WAIT, and the batch then fails as
   * SQLITE_BUSY at once instead of after the busy timeout.
   */
  const insertPatiently = (id: number, rows: readonly ChainedRow[]) => {
    const t0 = Date.now();
    for (;;) {
      try {
        insert(rows);
        return;
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY')) throw e;
        // Test-only (VMLOCKD_TEST_MOVER_DIE_ON_BUSY=ms): the thread dies after waiting that long for
        // the lock, so a main thread blocked in settle() must notice without its exit event.
        const die = Number(process.env.VMLOCKD_TEST_MOVER_DIE_ON_BUSY ?? '');
        if (die > 0 && Date.now() - t0 >= die) process.exit(70);
        const noWait = Atomics.load(done, MOVER_NO_WAIT);
        if (noWait >= id || Date.now() - t0 >= BUSY_TIMEOUT_MS) throw e;
        Atomics.wait(done, MOVER_NO_WAIT, noWait, BUSY_SLICE_MS);
      }
    }
  };
  let db: ReturnType<typeof openWriter>;
  let insert: (rows: readonly ChainedRow[]) => void;
  let checkpoint: () => boolean;
  try {
    db = openWriter(d.file, d.synchronous, true);
    db.pragma(`busy_timeout = ${BUSY_SLICE_MS}`);
    const reads = new JournalReads(db);
    const chainHead = (): ChainBase => {
      const last = reads.head();
      if (last !== undefined) return { seq: last.seq, hash: last.hash ?? GENESIS_HASH };
      const n = Number(reads.meta('chain_base_seq') ?? 0);
      const hex = reads.meta('chain_base_hash');
      return { seq: Number.isSafeInteger(n) && n >= 0 ? n : 0, hash: hex === undefined ? GENESIS_HASH : Buffer.from(hex, 'hex') };
    };
    insert = writeTransactions(db, d.file, d.host, chainHead).insertStaged;
    checkpoint = () => {
      try {
        return checkpointComplete(db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>);
      } catch {
        return false; // another connection's checkpoint: the stage is reset after a later batch
      }
    };
  } catch (e) {
    d.port.postMessage({ ready: false, message: (e as Error).message } satisfies FromMover);
    return;
  }
  d.port.postMessage({ ready: true } satisfies FromMover);
  let closing = false;
  backfillDiskNames(db, () => closing);
  parentPort!.on('message', (m: ToMover) => {
    if ('close' in m) {
      closing = true;
      try {
        db.close();
      } catch {
        // closing is best effort: the main thread has already moved everything itself
      }
      answer({ id: m.id, ok: true });
      parentPort!.close();
      return;
    }
    try {
      const rows: ChainedRow[] = [];
      let at = 0;
      while (at < m.lines.length) {
        const nl = m.lines.indexOf('\n', at);
        const end = nl === -1 ? m.lines.length : nl;
        rows.push(rowOfLine(m.lines.slice(at, end)));
        at = end + 1;
      }
      // No lines: only the checkpoint (the stage is due for its reset and the last batch had none).
      if (rows.length > 0) insertPatiently(m.id, rows);
      // The main thread resets the staging file after this batch: only once every WAL frame is in
      // journal.db itself (synced), so a removed WAL never held the only copy (decision 0028).
      answer({ id: m.id, ok: true, ...(m.checkpoint === true ? { checkpointed: checkpoint() } : {}) });
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      answer({
        id: m.id,
        ok: false,
        message: (e as Error).message ?? String(e),
        code: typeof code === 'string' && !(e instanceof JournalError) ? code : null,
        journalCode: e instanceof JournalError ? e.code : null,
      });
    }
  });
}

main();
