// The parallel catch-up of the cluster read cache (decision 0030). ClusterCache.catchUp stays
// synchronous (its callers are), and each chain is a file of its own (<cache>/<host>/<journal>.db), so a
// chain with a lot to read (PARALLEL_BYTES of new segment bytes) is loaded on a loader thread
// (cluster-cache-worker.ts) while the main thread loads the small ones and hands each loader the next
// big chain as soon as it answers. (The main thread does not load big chains itself: busy with one for
// seconds, it left a loader that finished meanwhile idle until it was done; the 8 x 1M A/B, session
// 31: 1.04 CPU seconds per wall second with two threads on that run.) The main thread never runs its
// event loop inside catchUp: it waits for the loaders with Atomics.wait on a shared counter every
// loader bumps after posting, takes their answers with receiveMessageOnPort, and, since a thread that
// ended cannot say so there, checks at each timeout that each busy loader's kernel thread is still in
// /proc/self/task. VMLOCKD_CLUSTER_THREADS=1 is the serial catch-up exactly: no thread is started.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, type MessagePort, type Worker, type WorkerOptions } from 'node:worker_threads';
import type { SegmentFile } from '../journal/segment.js';
import { startThread } from '../journal/young-generation.js';

/** The slot of the counter every loader bumps (and notifies) after each post; loader i's own count is slot i + 1. */
export const LOADER_POSTED = 0;
const MAX_THREADS = 16;
/** A wait for the loaders looks this often whether a busy one's thread is gone. */
const WAIT_SLICE_MS = 200;
/** A loader that has not said which thread it is within this long after its start is taken as dead (its module failed to load). */
const START_MS = 60_000;

/** Loader threads of one catch-up: VMLOCKD_CLUSTER_THREADS, else the machine's parallelism (at most 16); 1: none, the serial catch-up. */
export function catchUpThreads(): number {
  const raw = process.env.VMLOCKD_CLUSTER_THREADS;
  const n = raw === undefined || raw.trim() === '' ? os.availableParallelism() : Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) return 1;
  // Under a limit on the address space (`ulimit -v`, systemd's LimitAS=) a thread's isolate reserves
  // its code range and heap there, and a reservation that does not fit aborts V8, the whole process,
  // uncatchable (review31b HIGH: 2 GB, the serial catch-up answered, threaded it died with SIGTRAP):
  // serial there.
  if (n > 1 && addressSpaceLimited()) return 1;
  return Math.min(n, MAX_THREADS);
}

/** Whether this process runs under a finite RLIMIT_AS (/proc/self/limits' "Max address space"). */
function addressSpaceLimited(): boolean {
  try {
    const line = /^Max address space\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line !== null && line[1] !== 'unlimited';
  } catch {
    return false;
  }
}

/** New segment bytes from which a chain goes to a loader thread (`fallback`: BULK_BYTES); VMLOCKD_TEST_CLUSTER_PARALLEL_BYTES in the tests. */
export function parallelBytes(fallback: number): number {
  const raw = process.env.VMLOCKD_TEST_CLUSTER_PARALLEL_BYTES;
  const n = raw === undefined || raw === '' ? NaN : Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : fallback;
}

export interface LoaderData {
  port: MessagePort;
  slots: SharedArrayBuffer;
  slot: number;
}

/** main -> loader: one chain's catch-up. */
export interface ToLoader {
  id: number;
  dir: string;
  lockspace: string;
  host: string;
  journal: string;
  segs: SegmentFile[];
  noLink: boolean;
}

/** An error a chain's catch-up ended in, as the serial path's catch sees it (ConcurrentCatchUp, an SQLite code). */
export interface LoaderError {
  message: string;
  code?: string;
  concurrent: boolean;
}

/** loader -> main. R: a chain's result (cluster-cache.ts's LoadResult: plain data; not imported here, which would make an import circle). */
export type FromLoader<R> = { tid: number } | { id: number; result: R; noLink: boolean } | { id: number; error: LoaderError; noLink: boolean };

export type LoaderDone<R> = { id: number; result: R } | { id: number; error: LoaderError } | { id: number; died: true };

interface Loader {
  worker: Worker;
  port: MessagePort;
  slot: number;
  started: number;
  tid?: number;
  dead: boolean;
  job?: { id: number; files: readonly string[]; size0: number; room: number };
}

/** Built: cluster-cache-worker.js beside this file. From source (tests, bench): the .ts, with tsx's loader registered in the thread (as mover.ts does). */
function startLoader(options: WorkerOptions): Worker {
  const here = fileURLToPath(import.meta.url);
  const js = new URL('./cluster-cache-worker.js', import.meta.url);
  if (!here.endsWith('.ts') || existsSync(fileURLToPath(js))) return startThread(js, options);
  const tsx = createRequire(import.meta.url).resolve('tsx/package.json');
  const api = pathToFileURL(join(dirname(tsx), 'dist', 'esm', 'api', 'index.mjs')).href;
  const ts = new URL('./cluster-cache-worker.ts', import.meta.url).href;
  return startThread(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); })`, options);
}

function sizeOf(files: readonly string[]): number {
  let n = 0;
  for (const f of files) {
    try {
      n += statSync(f).size;
    } catch {
      // not there (yet, or any more)
    }
  }
  return n;
}

/** One catch-up's loader threads: started as chains need them (at most `size`), terminated by close(). */
export class LoaderPool<R> {
  private readonly slots: Int32Array;
  private readonly loaders: Loader[] = [];
  /** A loader found the cache's filesystem without link(2) (ClusterCache.noLink). */
  noLink = false;

  constructor(private readonly size: number) {
    this.slots = new Int32Array(new SharedArrayBuffer(4 * (size + 1)));
  }

  /** Whether a job would go to a loader now (one idle, or room to start one). */
  hasFree(): boolean {
    return this.loaders.some((l) => !l.dead && l.job === undefined) || (!this.cannotStart && this.loaders.filter((l) => !l.dead).length < this.size);
  }

  /**
   * A thread could not be created (EAGAIN: a task limit, TasksMax or a container's pids.max, that the
   * serial catch-up fits in; review31b HIGH): no more are tried in this catch-up, and the chains no
   * loader takes are loaded on the main thread, as the serial path does (before, the question failed).
   */
  private cannotStart = false;

  /** Whether a loader was ever started in this catch-up. */
  started(): boolean {
    return this.loaders.length > 0;
  }

  busy(): number {
    return this.loaders.filter((l) => l.job !== undefined).length;
  }

  /**
   * Sends a chain to a free loader (hasFree() must be true); false when no thread could be started for
   * it (the caller loads it on the main thread). `files`: where the chain grows (its file, WAL and
   * build file), for reserved(); `room`: what its load may take at its peak (loadRoom,
   * cluster-cache-room.ts).
   */
  dispatch(job: ToLoader, files: readonly string[], room: number): boolean {
    let l = this.loaders.find((x) => !x.dead && x.job === undefined);
    if (l === undefined) {
      const slot = this.loaders.length + 1;
      try {
        if (slot > this.size) {
          // A dead loader's slot is taken again.
          const i = this.loaders.findIndex((x) => x.dead);
          l = this.start(i + 1);
          this.loaders[i] = l;
        } else {
          l = this.start(slot);
          this.loaders.push(l);
        }
      } catch {
        this.cannotStart = true;
        return false;
      }
    }
    l.job = { id: job.id, files, size0: sizeOf(files), room };
    l.port.postMessage({ ...job, noLink: job.noLink || this.noLink });
    return true;
  }

  private start(slot: number): Loader {
    const { port1, port2 } = new MessageChannel();
    const data: LoaderData = { port: port2, slots: this.slots.buffer as SharedArrayBuffer, slot };
    const worker = startLoader({ workerData: data, transferList: [port2], name: 'vmlockd-cluster-catch-up' });
    worker.unref();
    port1.unref();
    return { worker, port: port1, slot, started: performance.now(), dead: false };
  }

  /**
   * Room the chains loading on the loaders may still take on the cache's filesystem: what each
   * load may take (loadRoom, the model of cluster-cache-room.ts; before review28c F4, 3x its segment
   * bytes, short of a bulk load's WAL), less what its files grew since it started. The floor and each
   * new load's room are checked against free space less this, so loads in parallel stay where the
   * serial path would.
   */
  reserved(): number {
    let n = 0;
    for (const l of this.loaders) if (l.job !== undefined) n += Math.max(0, l.job.room - (sizeOf(l.job.files) - l.job.size0));
    return n;
  }

  /** The answers posted so far, without waiting. */
  private drain(out: LoaderDone<R>[]): void {
    for (const l of this.loaders) {
      if (l.dead) continue;
      for (let m = receiveMessageOnPort(l.port); m !== undefined; m = receiveMessageOnPort(l.port)) {
        const msg = m.message as FromLoader<R>;
        if ('tid' in msg) {
          l.tid = msg.tid;
          continue;
        }
        if (msg.noLink) this.noLink = true;
        l.job = undefined;
        out.push('result' in msg ? { id: msg.id, result: msg.result } : { id: msg.id, error: msg.error });
      }
    }
  }

  /**
   * The chains finished since the last call; with `wait`, waits until at least one is (or its
   * loader is found dead) while any is busy. A loader whose thread is gone is said `died` for its
   * chain and not used again.
   */
  collect(wait: boolean): LoaderDone<R>[] {
    const out: LoaderDone<R>[] = [];
    for (;;) {
      const seen = Atomics.load(this.slots, LOADER_POSTED);
      this.drain(out);
      if (out.length > 0 || !wait || this.busy() === 0) return out;
      if (Atomics.wait(this.slots, LOADER_POSTED, seen, WAIT_SLICE_MS) !== 'timed-out') continue;
      this.drain(out);
      for (const l of this.loaders) {
        if (l.job === undefined || l.dead) continue;
        const gone = l.tid !== undefined ? !existsSync(`/proc/self/task/${l.tid}`) : performance.now() - l.started > START_MS;
        if (!gone) continue;
        l.dead = true;
        out.push({ id: l.job.id, died: true });
        l.job = undefined;
        void l.worker.terminate().catch(() => undefined);
      }
    }
  }

  /** Every loader ended (threads terminated; unref'd, they never hold the process). */
  close(): void {
    for (const l of this.loaders) {
      l.port.close();
      void l.worker.terminate().catch(() => undefined);
    }
    this.loaders.length = 0;
  }
}
