// VMLOCKD_START_MARKS=1: a performance mark at each phase of `serve`'s start, carrying the process's
// CPU time then (process.cpuUsage: every thread), read at "listening on" by bench/restart-preload.cjs
// (bench/restart.ts). Off: one comparison per phase, nothing kept.
const ON = process.env.VMLOCKD_START_MARKS === '1';

export function startMark(name: string): void {
  if (ON) performance.mark(`vmlockd:${name}`, { detail: process.cpuUsage() });
}
