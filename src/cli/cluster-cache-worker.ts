// A cluster read cache loader thread (the parallel catch-up, cluster-cache-threads.ts, decision 0030):
// runs one chain's catch-up at a time, exactly as the main thread would (ClusterCache.loadChain: the
// hint check, the build in a file of its own, the ChainLoader, the retry while another process's
// catch-up commits first), and posts back its LoadResult (plain data) or the error it ended in.
// Each post bumps its slot and the shared counter and notifies, for the main thread's Atomics.wait.
import * as fs from 'node:fs';
import { workerData } from 'node:worker_threads';
import { ClusterCache, ConcurrentCatchUp, loaderHooks, type LoadResult } from './cluster-cache.js';
import { LOADER_POSTED, type FromLoader, type LoaderData, type ToLoader } from './cluster-cache-threads.js';

const data = workerData as LoaderData;
const slots = new Int32Array(data.slots);

function post(m: FromLoader<LoadResult>): void {
  data.port.postMessage(m);
  Atomics.add(slots, data.slot, 1);
  Atomics.add(slots, LOADER_POSTED, 1);
  Atomics.notify(slots, LOADER_POSTED);
}

// Test only: this thread ends hard (posts nothing more) after the first batch of a chain of this host.
const die = process.env.VMLOCKD_TEST_CLUSTER_WORKER_DIE;
if (die !== undefined && die !== '') {
  loaderHooks.afterCommit = (host) => {
    if (host === die) process.exit(1);
  };
}

// The kernel's id of this thread: the main thread checks /proc/self/task/<tid> while it waits, since
// a thread that ended cannot say so (the main thread's event loop, and its 'exit' event, do not run).
const tid = Number(/\/task\/(\d+)$/.exec(fs.readlinkSync('/proc/thread-self'))?.[1] ?? 0);
post({ tid });

data.port.on('message', (job: ToLoader) => {
  const cache = ClusterCache.forLoader(job.dir, job.lockspace, job.noLink);
  try {
    const result = cache.loadChain(job.host, job.journal, job.segs);
    post({ id: job.id, result, noLink: cache.linkless });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    post({ id: job.id, error: { message: (e as Error).message ?? String(e), ...(typeof code === 'string' ? { code } : {}), concurrent: e instanceof ConcurrentCatchUp }, noLink: cache.linkless });
  }
});
