// Watches the conf files and turns every settled change into a validated config or a rejection.
//
// It watches the files' directories, not the files: chokidar follows a watched file across
// rename-over saves and delete+recreate, but a file that is missing when the watch starts (a
// removed override, a conf about to be deployed) is only noticed at its second write; a watch on
// the directory sees it appear. Every event only means "look again": the files are
// re-read whole and merged with the flags exactly as at start-up, so a change is judged by its
// effect on the config, never by which event announced it.

import { watch } from 'chokidar';
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
  /** Against which relative paths resolve; the daemon's cwd at start-up by default. */
  readonly cwd?: string;
  /**
   * Called once the watches are in place and the files have been compared with `current()` once
   * (any update from that first look is emitted before). Edits made before it may go unseen.
   */
  readonly onReady?: () => void;
}

type Signal =
  | { readonly kind: 'look' }
  | { readonly kind: 'ready' }
  | { readonly kind: 'watch-error'; readonly message: string };

const DEFAULT_DEBOUNCE_MS = 50;
const DEFAULT_SETTLE_MS = 250;
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
    return () => {
      void watcher.close();
    };
  });

  const reload$: Observable<Signal> = (opts.reload$ ?? EMPTY).pipe(map((): Signal => ({ kind: 'look' })));

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
          return settledLook(paths, flags, cwd, current, settleMs);
        case 'ready':
          return concat(
            settledLook(paths, flags, cwd, current, settleMs),
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

function settledLook(paths: readonly string[], flags: ConfigFlags, cwd: string, current: () => Config, settleMs: number): Observable<ConfigUpdate> {
  return from(readSettled(paths, settleMs)).pipe(mergeMap((reads) => orNothing(reads === null ? unsettled(paths, settleMs) : look(reads, flags, cwd, current))));
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
