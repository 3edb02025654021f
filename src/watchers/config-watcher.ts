// Watches the conf files and turns every settled change into a validated config or a rejection.
//
// It watches the files' directories, not the files: chokidar follows a watched file across
// rename-over saves and delete+recreate, but a file that is missing when the watch starts (a
// removed override, a conf about to be deployed) is only noticed at its second write; a watch on
// the directory sees it appear. A config reached through a symlink swapped in another place (a
// Kubernetes ConfigMap: vmlockd.conf -> ..data/vmlockd.conf, ..data renamed over) changes with no
// event on its path: each path is also stat()ed every second and a change of what it leads to is a
// look too. Every event only means "look again": the files are
// re-read whole and merged with the flags exactly as at start-up, so a change is judged by its
// effect on the config, never by which event announced it.

import { watch } from 'chokidar';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { installLayout } from '../install-layout.js';
import { EMPTY, Observable, concat, debounceTime, defer, filter, from, map, merge, mergeMap, of, share } from '../engine/rx.js';
import {
  ConfigError,
  buildConfig,
  diffConfig,
  readConfFile,
  type ConfRead,
  type Config,
  type ConfigDiff,
  type ConfigFlags,
  type LoadedConfig,
} from './config.js';

export { classifyChange } from './config.js';

export type ConfigUpdate =
  | { readonly kind: 'changed'; readonly loaded: LoadedConfig; readonly diff: ConfigDiff }
  | { readonly kind: 'rejected'; readonly error: string; readonly file: string };

export interface WatchConfigOptions {
  /** Each value forces a re-read, e.g. SIGHUP from the composition root. Not debounced. */
  readonly reload$?: Observable<unknown>;
  /** Quiet time after the last file event before re-reading; a save is often several events. */
  readonly debounceMs?: number;
  /**
   * After the debounce, the files are read, read again this much later, and judged only once two
   * reads in a row agree (text and stat): a file caught half-written (truncate, then write) is not
   * taken for the config. Default 250 ms.
   */
  readonly settleMs?: number;
  /**
   * Every this many ms each file is stat()ed (following symlinks) and a change of what it leads to
   * is looked at like an event: a config reached through a symlink swapped elsewhere (a Kubernetes
   * ConfigMap's `..data`) changes without any event on its own path. Default 1000; 0: no polling.
   */
  readonly pollMs?: number;
  /** Against which relative paths resolve; the daemon's cwd at start-up by default. */
  readonly cwd?: string;
  /**
   * Called once the watches are in place and the files have been compared with `current()` once
   * (any update from that first look is emitted before). Edits made before it may go unseen.
   */
  readonly onReady?: () => void;
}

type Signal =
  /** `forced`: SIGHUP, judged even when the files read exactly as at the last look. */
  | { readonly kind: 'look'; readonly forced?: boolean }
  | { readonly kind: 'ready' }
  | { readonly kind: 'watch-error'; readonly message: string };

const DEFAULT_DEBOUNCE_MS = 50;
const DEFAULT_SETTLE_MS = 250;
const DEFAULT_POLL_MS = 1000;
/** A file still changing after this many settle rounds is rejected for now (a later event looks again). */
const MAX_SETTLE_ROUNDS = 40;

/**
 * Emits `changed` when the files (and flags) now give a config different from `current()`,
 * `rejected` when they do not load, and nothing when a change makes no difference.
 * Cold: each subscription starts its own watcher and closes it on unsubscribe.
 * Right after the watches are ready it looks once, so an edit made between the daemon's own
 * load and the watcher's start is not lost.
 */
export function watchConfig(
  files: readonly string[],
  flags: ConfigFlags,
  current: () => Config,
  opts: WatchConfigOptions = {},
): Observable<ConfigUpdate> {
  const cwd = opts.cwd ?? process.cwd();
  const paths = files.map((f) => resolve(cwd, f));
  const settleMs = opts.settleMs ?? DEFAULT_SETTLE_MS;
  // The files as last judged: an event and the poll both announce one edit, and a file judged once
  // (a rejection, a refused key) is not judged, logged and journaled again until it changes or SIGHUP.
  let lastJudged: string | undefined;
  const settledLook = (forced: boolean): Observable<ConfigUpdate> =>
    from(readSettled(paths, settleMs)).pipe(
      mergeMap((reads) => {
        if (reads === null) return of(unsettled(paths, settleMs));
        const key = JSON.stringify(reads);
        if (!forced && key === lastJudged) return EMPTY;
        lastJudged = key;
        return orNothing(look(reads, flags, cwd, current));
      }),
    );

  const fsSignals$ = new Observable<Signal>((subscriber) => {
    const dirs = [...new Set(paths.map((p) => dirname(p)))];
    const wanted = new Set<string>([...paths, ...dirs]);
    const watcher = watch(dirs, {
      ignoreInitial: true,
      depth: 0,
      // Only our files: a busy /etc/libvirt must not wake us for every unrelated save.
      ignored: (p: string) => !wanted.has(resolve(p)),
    });
    watcher.on('all', () => subscriber.next({ kind: 'look' }));
    watcher.on('error', (e) => subscriber.next({ kind: 'watch-error', message: errorMessage(e) }));
    watcher.on('ready', () => subscriber.next({ kind: 'ready' }));
    // What each path leads to now: a swap of a symlink anywhere on the way changes it.
    let stamps = paths.map(statStamp).join('\n');
    const pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
    const poll =
      pollMs > 0
        ? setInterval(() => {
            const now = paths.map(statStamp).join('\n');
            if (now === stamps) return;
            stamps = now;
            subscriber.next({ kind: 'look' });
          }, pollMs)
        : undefined;
    poll?.unref();
    return () => {
      if (poll) clearInterval(poll);
      void watcher.close();
    };
  });

  const reload$: Observable<Signal> = (opts.reload$ ?? EMPTY).pipe(map((): Signal => ({ kind: 'look', forced: true })));

  return defer(() => {
    const fs$ = fsSignals$.pipe(share());
    // "ready" skips the debounce: a file event right behind it must not swallow the one signal
    // that tells the caller the watch is live.
    const settled$ = fs$.pipe(
      filter((s) => s.kind !== 'ready'),
      debounceTime(opts.debounceMs ?? DEFAULT_DEBOUNCE_MS),
    );
    const ready$ = fs$.pipe(filter((s) => s.kind === 'ready'));
    return merge(settled$, ready$, reload$);
  }).pipe(
    // One look at a time, in order: a look waits for the files to settle, and an older look must
    // never be judged after a newer one.
    mergeMap((signal) => {
      switch (signal.kind) {
        case 'look':
          return settledLook(signal.forced === true);
        case 'ready':
          return concat(
            settledLook(true),
            defer(() => {
              opts.onReady?.();
              return EMPTY;
            }),
          );
        case 'watch-error':
          return of(watchError(signal.message, paths));
        default: {
          const _exhaustive: never = signal;
          return _exhaustive;
        }
      }
    }, 1),
  );
}


/** The files' reads once two in a row, `settleMs` apart, agree; null if they kept changing. */
async function readSettled(paths: readonly string[], settleMs: number): Promise<ConfRead[] | null> {
  let prev = paths.map(readConfFile);
  for (let round = 0; round < MAX_SETTLE_ROUNDS; round++) {
    await new Promise((r) => setTimeout(r, settleMs));
    const next = paths.map(readConfFile);
    if (sameReads(prev, next)) return next;
    prev = next;
  }
  return null;
}

function sameReads(a: readonly ConfRead[], b: readonly ConfRead[]): boolean {
  return a.every((r, i) => {
    const o = b[i]!;
    return r.stamp === o.stamp && JSON.stringify(r.source) === JSON.stringify(o.source);
  });
}

function unsettled(paths: readonly string[], settleMs: number): ConfigUpdate {
  const s = ((MAX_SETTLE_ROUNDS * settleMs) / 1000).toFixed(1);
  return { kind: 'rejected', error: `the config files kept changing for ${s} s: not applied until they stay unchanged for ${settleMs} ms`, file: paths[0] ?? '' };
}

/** dev:ino:size:mtime:ctime of what `path` leads to (symlinks followed), or why it cannot be stat()ed. */
function statStamp(path: string): string {
  try {
    const st = statSync(path, { throwIfNoEntry: false });
    return st === undefined ? 'missing' : `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch (e) {
    return `error:${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
}

function orNothing(update: ConfigUpdate | null): Observable<ConfigUpdate> {
  return update === null ? EMPTY : of(update);
}

function look(reads: readonly ConfRead[], flags: ConfigFlags, cwd: string, current: () => Config): ConfigUpdate | null {
  let loaded: LoadedConfig;
  try {
    loaded = buildConfig(reads.map((r) => r.source), flags, cwd, installLayout());
  } catch (e) {
    // Anything but a ConfigError is a bug here, yet the watcher must outlive it: the daemon keeps
    // its current config either way, and a dead watcher would ignore every later fix.
    if (e instanceof ConfigError) return { kind: 'rejected', error: e.message, file: e.problems[0]?.file ?? '' };
    return { kind: 'rejected', error: `reading the configuration failed: ${errorMessage(e)}`, file: reads[0]?.source.file ?? '' };
  }
  const diff = diffConfig(current(), loaded.config);
  return diff.length === 0 ? null : { kind: 'changed', loaded, diff };
}

function watchError(message: string, paths: readonly string[]): ConfigUpdate {
  return { kind: 'rejected', error: `watching the configuration failed: ${message}`, file: paths[0] ?? '' };
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
