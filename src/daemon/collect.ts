// One deliberate full garbage collection after a burst (docs/decisions/0007).
//
// `serve` keeps V8's young generation small, so the objects of a burst (a start re-taking thousands
// of locks, the publisher catching up a long history) are promoted to the old generation while they
// are still in use and become garbage there. V8 collects the old generation only when it reaches a
// limit set from the size it had after its last collection, and an idle daemon allocates too little
// to reach it: the burst's garbage stays resident for as long as the daemon runs. One collection
// once the burst is over gives it back (measured in bench/README.md, restart section).
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | null | undefined;

/** A full, synchronous collection of this thread's heap; false when V8 does not offer one. */
export function collectGarbage(): boolean {
  if (gc === undefined) {
    gc = null;
    try {
      // The flag installs `gc` in every context created afterwards: a fresh one hands it out
      // without exposing it to the rest of the process.
      v8.setFlagsFromString('--expose-gc');
      const f = vm.runInNewContext('gc') as unknown;
      if (typeof f === 'function') gc = f as () => void;
    } catch {
      // an embedder without the flag: memory is only a figure, never a reason to fail
    }
  }
  if (!gc) return false;
  gc();
  return true;
}

/**
 * Calls `collectGarbage` once `busy()` has said false for the first time at or after `afterMs`
 * (polled every `everyMs`), or at `maxMs` at the latest. The timer never keeps the process alive;
 * the returned function cancels it.
 */
export function collectWhenSettled(busy: () => boolean, opts: { afterMs: number; everyMs: number; maxMs: number }, collect: () => unknown = collectGarbage): () => void {
  const t0 = Date.now();
  const timer = setInterval(() => {
    const waited = Date.now() - t0;
    if (waited < opts.afterMs || (busy() && waited < opts.maxMs)) return;
    clearInterval(timer);
    collect();
  }, opts.everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
