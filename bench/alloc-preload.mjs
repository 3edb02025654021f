// Loaded into a daemon by bench/protocol-alloc.ts (`node --import bench/alloc-preload.mjs dist/main.js serve ...`):
// the first SIGWINCH starts counting the JS heap allocated on the main thread, the second writes
// {allocated, gcs[, profile]} to ALLOC_OUT. allocated = heap used at the end - at the start + what
// every GC in between freed (v8.GCProfiler), so it counts objects that died young. ALLOC_SAMPLE=1 also
// keeps a HeapProfiler sampling profile that includes collected objects (where the bytes come from).
import { isMainThread } from 'node:worker_threads';
import { Session } from 'node:inspector';
import { renameSync, writeFileSync } from 'node:fs';
import v8 from 'node:v8';

if (isMainThread && process.env.ALLOC_OUT) {
  let gcp;
  let start = 0;
  let session;
  const sample = process.env.ALLOC_SAMPLE === '1';
  process.on('SIGWINCH', () => {
    if (!gcp) {
      if (sample) {
        session = new Session();
        session.connect();
        session.post('HeapProfiler.startSampling', { samplingInterval: Number(process.env.ALLOC_INTERVAL ?? 256), includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      }
      gcp = new v8.GCProfiler();
      gcp.start();
      start = v8.getHeapStatistics().used_heap_size;
      return;
    }
    const end = v8.getHeapStatistics().used_heap_size;
    const data = gcp.stop();
    gcp = undefined;
    let freed = 0;
    for (const s of data.statistics) freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
    const result = { allocated: end - start + freed, gcs: data.statistics.length };
    const write = (o) => {
      writeFileSync(process.env.ALLOC_OUT + '.tmp', JSON.stringify(o));
      renameSync(process.env.ALLOC_OUT + '.tmp', process.env.ALLOC_OUT);
    };
    if (!sample) return write(result);
    session.post('HeapProfiler.stopSampling', (err, r) => {
      write({ ...result, ...(err ? { error: String(err) } : { head: r.profile.head }) });
      session.disconnect();
    });
  });
}
