// The main thread's side of the staged journal's SQLite writer thread (mover-worker.ts, decision
// 0021). One batch of staged lines is in flight at a time; its answer arrives as a message (the
// event loop's ordinary path) or, when a read or a close needs SQLite complete now, is waited for
// synchronously (Atomics.wait on a shared counter, then receiveMessageOnPort). Until the thread has
// opened its connection, or after it failed or died, the stage moves facts on the main thread as
// before: the thread is a speed-up, never the only way facts reach SQLite.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort, type WorkerOptions } from 'node:worker_threads';
import { BUSY_TIMEOUT_MS } from './open.js';
import type { FromMover, MoverWorkerData, ToMover } from './mover-worker.js';
import { startThread } from './young-generation.js';
import { MOVER_DONE, MOVER_EXITED, MOVER_NO_WAIT, MOVER_SLOTS } from './mover-slots.js';

/** A batch's outcome: null, or what the thread reported (an SQLite error's code; a JournalError's code). */
export type MoveFailure = { message: string; code: string | null; journalCode: string | null };

/** How long a synchronous wait for the thread lasts before it is given up as lost (its write waits up to the busy timeout). */
const SETTLE_TIMEOUT_MS = BUSY_TIMEOUT_MS + 10_000;
/** A synchronous wait looks this often whether the thread died (its exit event cannot run meanwhile). */
const SETTLE_SLICE_MS = 50;

/** Built: mover-worker.js beside this file. From source (the tests): the .ts, through tsx's loader registered in the worker. */
function startWorker(options: WorkerOptions): Worker {
  const here = fileURLToPath(import.meta.url);
  const js = new URL('./mover-worker.js', import.meta.url);
  if (!here.endsWith('.ts') || existsSync(fileURLToPath(js))) return startThread(js, options);
  // A test runner that loaded tsx in-process (uvu -r tsx) gives the worker no loader: register one there.
  const tsx = createRequire(import.meta.url).resolve('tsx/package.json');
  const api = pathToFileURL(join(dirname(tsx), 'dist', 'esm', 'api', 'index.mjs')).href;
  const ts = new URL('./mover-worker.ts', import.meta.url).href;
  return startThread(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); })`, options);
}

export class SqliteMover {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly done: Int32Array;
  private nextId = 1;
  private ready = false;
  private dead = false;
  /** The batch the thread is moving: its request id and how many staged facts (the oldest pending) it holds. */
  inflight: { id: number; n: number } | null = null;

  constructor(
    file: string,
    synchronous: 'NORMAL' | 'FULL',
    /** Told when the batch in flight is answered: moved (null) or not (and why). */
    private readonly onResult: (n: number, failure: MoveFailure | null, checkpointed: boolean) => void,
  ) {
    const { port1, port2 } = new MessageChannel();
    const done = new SharedArrayBuffer(4 * MOVER_SLOTS);
    this.done = new Int32Array(done);
    this.port = port1;
    const data: MoverWorkerData = { file, synchronous, host: 'mover', port: port2, done };
    this.worker = startWorker({ workerData: data, transferList: [port2], name: 'vmlockd-journal-writer' });
    this.worker.unref();
    this.port.on('message', (m: FromMover) => this.handle(m));
    this.port.unref();
    const lost = (why: string) => {
      this.dead = true;
      this.fail(`the journal's SQLite writer thread ${why}`);
    };
    this.worker.on('error', (e) => lost(`failed: ${e.message}`));
    this.worker.on('exit', (code) => {
      if (!this.dead) lost(`exited (${code})`);
    });
  }

  /** Whether batches go to the thread (it is ready and alive). */
  usable(): boolean {
    return this.ready && !this.dead;
  }

  /**
   * Sends the oldest `n` pending facts (their staging lines, joined) to the thread. One batch at a
   * time. `checkpoint`: a PASSIVE checkpoint after it; the answer says whether it was complete.
   */
  send(lines: string, n: number, checkpoint = false): void {
    const id = this.nextId++;
    this.inflight = { id, n };
    this.worker.postMessage({ id, lines, checkpoint } satisfies ToMover);
  }

  /**
   * Blocks until the batch in flight (if any) is answered and its answer handled (onResult ran).
   * A thread that does not answer within the busy timeout and then some is given up as lost.
   * `noWait` (a nonBlocking caller: a read, the snapshot): the batch does not wait for another
   * process's write lock; if SQLite is locked, it fails at once as SQLITE_BUSY (and is retried).
   */
  settle(noWait = false): void {
    const want = this.inflight?.id;
    if (want === undefined) return;
    if (noWait && Atomics.load(this.done, MOVER_NO_WAIT) < want) {
      Atomics.store(this.done, MOVER_NO_WAIT, want);
      Atomics.notify(this.done, MOVER_NO_WAIT);
    }
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (this.inflight !== null && this.inflight.id === want) {
      const got = receiveMessageOnPort(this.port);
      if (got !== undefined) {
        this.handle(got.message as FromMover);
        continue;
      }
      const left = deadline - Date.now();
      // Its answer is posted before it could exit: none on the port and the flag set, it is gone.
      const exited = Atomics.load(this.done, MOVER_EXITED) === 1 && Atomics.load(this.done, MOVER_DONE) < want;
      if (left <= 0 || this.dead || exited) {
        this.dead = true;
        void this.worker.terminate();
        this.fail(exited ? `the journal's SQLite writer thread exited` : `the journal's SQLite writer thread did not answer within ${SETTLE_TIMEOUT_MS} ms`);
        return;
      }
      // The thread posts its answer, then bumps the counter: once it is >= want, the message is there.
      const seen = Atomics.load(this.done, MOVER_DONE);
      if (seen < want) Atomics.wait(this.done, MOVER_DONE, seen, Math.min(left, SETTLE_SLICE_MS));
    }
  }

  /** Waits for the batch in flight, then closes the thread's connection and stops it. */
  close(): void {
    this.settle();
    if (this.dead || !this.ready) {
      this.dead = true;
      void this.worker.terminate();
      return;
    }
    const id = this.nextId++;
    this.worker.postMessage({ id, close: true } satisfies ToMover);
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (Atomics.load(this.done, MOVER_DONE) < id && Atomics.load(this.done, MOVER_EXITED) === 0 && Date.now() < deadline) Atomics.wait(this.done, MOVER_DONE, Atomics.load(this.done, MOVER_DONE), 100);
    this.dead = true;
    this.port.close();
    void this.worker.terminate();
  }

  private handle(m: FromMover): void {
    if ('ready' in m) {
      if (m.ready) this.ready = true;
      else {
        this.dead = true;
        void this.worker.terminate();
      }
      return;
    }
    const f = this.inflight;
    if (f === null || f.id !== m.id) return; // the close's answer, or a batch already given up
    this.inflight = null;
    this.onResult(f.n, m.ok ? null : { message: m.message, code: m.code, journalCode: m.journalCode }, m.ok && m.checkpointed === true);
  }

  private fail(message: string): void {
    const f = this.inflight;
    if (f === null) return;
    this.inflight = null;
    this.onResult(f.n, { message, code: null, journalCode: null }, false);
  }
}
