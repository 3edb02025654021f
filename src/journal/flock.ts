// flock(2) through fs-ext, loaded on first use. fs-ext is a native addon that is not context-aware:
// loaded in a second thread it aborts V8 (the whole process). Imported at the top of stage.ts,
// stage-replace.ts and the daemon's instance guard, it was loaded by every module that imports the
// journal, so no worker thread could import the cluster cache (the parallel catch-up, decision 0030).
// Loaded here lazily, only a thread that really takes an flock (the daemon's main thread, a staged
// writer) loads it.
import { createRequire } from 'node:module';

type FsExt = { flockSync(fd: number, flags: 'sh' | 'ex' | 'shnb' | 'exnb' | 'un'): void };

let fsExt: FsExt | undefined;

/** flock(2) on `fd`, without blocking for the non-blocking flags (fs-ext's flockSync; throws as it does). */
export function flockSync(fd: number, flags: 'sh' | 'ex' | 'shnb' | 'exnb' | 'un'): void {
  fsExt ??= createRequire(import.meta.url)('fs-ext') as FsExt;
  fsExt.flockSync(fd, flags);
}
