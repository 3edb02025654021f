// Decision 0007: `serve` keeps V8's young generation at its initial size with
// `--semi-space-growth-factor=1`. V8 clamps that flag back to 2, for the whole process, each time it
// sets up a heap (Heap::ConfigureHeap: `if (v8_flags.semi_space_growth_factor < 2) ... = 2`), and
// every worker thread is a new isolate with a new heap: one `new Worker` and the main thread's young
// generation grows to 16 MiB semi-spaces again at its next burst (speed27: 200-219 MB resident at
// "listening on" on the 10,000-lock fixture instead of the decision's ~140).
//
// So a thread started through startThread puts the flag back as its first statement, before its
// own bootstrap imports anything, and the starting thread waits (Atomics.wait, bounded) until it has:
// nothing on the main thread allocates while the flag is 2. The wait is the new thread's isolate and
// Node bootstrap (27-136 ms measured in the daemon), once per thread start; a thread that fails before its first
// statement costs at most START_WAIT_MS. Without holdYoungGeneration (every command but `serve`, the
// tests) startThread is plain `new Worker`. It lives in src/journal/ because the journal's SQLite writer
// is one of those threads and the journal imports nothing of the project outside it.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import { Worker, type WorkerOptions } from 'node:worker_threads';

export const YOUNG_GENERATION_FLAG = '--semi-space-growth-factor=1';
/** The key in workerData of the flag the thread sets once the young generation's flag is back. */
const KEY = '__vmlockdYoungGeneration';
/** The longest a thread start waits for the new thread's first statement. */
const START_WAIT_MS = 1_000;

let held = false;

/** `serve`: keep the young generation at its initial size, now and after every thread startThread starts. */
export function holdYoungGeneration(): void {
  held = true;
  v8.setFlagsFromString(YOUNG_GENERATION_FLAG);
}

/** Whether holdYoungGeneration was called (the status's memory fields say so). */
export function youngGenerationHeld(): boolean {
  return held;
}

/**
 * `new Worker(file or eval code, options)`, and, when the young generation is held, the flag set
 * again as the thread's first statement, this thread waiting until it is.
 */
export function startThread(what: URL | string, options: WorkerOptions = {}): Worker {
  if (!held) return typeof what === 'string' ? new Worker(what, { ...options, eval: true }) : new Worker(what, options);
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const data = options.workerData;
  const attach = data === undefined || (data !== null && typeof data === 'object' && !Array.isArray(data));
  const workerData = attach ? { ...(data as object | undefined), [KEY]: cell } : data;
  const prelude =
    `require('node:v8').setFlagsFromString(${JSON.stringify(YOUNG_GENERATION_FLAG)});` +
    `{ const c = require('node:worker_threads').workerData?.[${JSON.stringify(KEY)}]; if (c) { Atomics.store(c, 0, 1); Atomics.notify(c, 0); } }\n`;
  const worker = new Worker(prelude + evalCode(what), { ...options, workerData, eval: true });
  if (attach) Atomics.wait(cell, 0, 0, START_WAIT_MS);
  // Also if the thread failed or took longer: at least this thread's next growth sees factor 1.
  v8.setFlagsFromString(YOUNG_GENERATION_FLAG);
  worker.once('online', () => v8.setFlagsFromString(YOUNG_GENERATION_FLAG));
  return worker;
}

/** A thread's file as eval code. A .ts file (from source under `node --import tsx`): an eval'd thread gets no loader from the parent's --import, so it registers tsx's, as the journal's and the parser's threads do under `uvu -r tsx`. */
function evalCode(what: URL | string): string {
  if (typeof what === 'string') return what;
  if (!what.pathname.endsWith('.ts')) return `import(${JSON.stringify(what.href)});`;
  const tsx = createRequire(import.meta.url).resolve('tsx/package.json');
  const api = pathToFileURL(join(dirname(tsx), 'dist', 'esm', 'api', 'index.mjs')).href;
  return `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(what.href)}); });`;
}
