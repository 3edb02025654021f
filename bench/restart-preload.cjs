// Preloaded (`node --require`) into a `vmlockd serve` by bench/restart.ts: at "listening on" it
// writes one line `restart-report {JSON}` to stderr: the process's time (performance.now(), from the
// process's start) and CPU (every thread) then, its resident memory, and the start's phase marks
// (src/daemon/start-marks.ts, VMLOCKD_START_MARKS=1; a build without them reports none).
// RESTART_LATER_MS (default 5000) after it, a second line `restart-later {JSON}`: resident memory and
// the main thread's young generation (`new_space`), once the start's burst has settled.
// RESTART_PROF=FILE: a CPU profile from here to "listening on" (not the stop after it), for
// bench/prof-summary.ts; RESTART_PROF_US: its sampling interval (default 250 us).
'use strict';
const fs = require('node:fs');
const preloadAt = performance.now();
const preloadCpu = process.cpuUsage();
let session;
if (process.env.RESTART_PROF) {
  const inspector = require('node:inspector');
  session = new inspector.Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.RESTART_PROF_US || 250) });
  session.post('Profiler.start');
}
const write = process.stdout.write;
let done = false;
process.stdout.write = function (chunk, ...rest) {
  if (!done && String(chunk).includes('listening on')) {
    done = true;
    const at = performance.now();
    const cpu = process.cpuUsage();
    const rss = process.memoryUsage.rss();
    const marks = performance
      .getEntriesByType('mark')
      .filter((m) => m.name.startsWith('vmlockd:'))
      .map((m) => ({ name: m.name.slice(8), at: m.startTime, cpu: (m.detail.user + m.detail.system) / 1000 }));
    if (session) {
      session.post('Profiler.stop', (err, r) => {
        if (!err) fs.writeFileSync(process.env.RESTART_PROF, JSON.stringify(r.profile));
      });
    }
    const report = { preloadAt, preloadCpu: (preloadCpu.user + preloadCpu.system) / 1000, at, cpu: (cpu.user + cpu.system) / 1000, rss, marks };
    process.stderr.write(`restart-report ${JSON.stringify(report)}\n`);
    setTimeout(() => {
      const newSpace = require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
      process.stderr.write(`restart-later ${JSON.stringify({ rss: process.memoryUsage.rss(), newSpace })}\n`);
    }, Number(process.env.RESTART_LATER_MS || 5000)).unref();
  }
  return write.call(this, chunk, ...rest);
};
