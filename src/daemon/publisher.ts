// Publication of this host's journal into the shared lockspace (issue 15), the daemon's side: starts,
// re-configures and stops the worker thread that does the file I/O (publish-worker.ts), tells it when
// new facts exist, and keeps the figures `vmlockd status` and /metrics show (published seq, lag in
// facts and seconds, bytes, errors, the last error). Nothing here touches the cluster filesystem:
// a hung mount holds up the worker only, never a reply (docs/decisions/0016-published-history.md).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { startThread } from '../journal/young-generation.js';
import type { Journal } from '../journal/journal.js';
import { holdCompactionNow, journalIdNow, releaseCompactionNow } from './publish-meta.js';
import { publishedThrough } from '../journal/compact.js';
import { hostSegmentDir } from '../journal/segment.js';
import { pinOf } from '../engine/locker-hosts.js';
import { envMs } from './env-ms.js';
import { Arrivals } from './arrivals.js';
import type { FromWorker, PublishWorkerData, ToWorker } from './publish-worker.js';

type Level = 'debug' | 'info' | 'warning' | 'error';

export interface PublishSettings {
  /** config `publish` (and a file lockspace: without one there is nowhere to publish). */
  enabled: boolean;
  lockspace: string | null;
  host: string;
  /** config `publish_segment_bytes`. */
  segmentBytes: number;
  /** config `publish_retain_days` (0: keep every segment). */
  retainDays: number;
}

/** How long a stop waits for the worker's last batch before leaving it behind. */
const STOP_WAIT_MS = 2_000;
/** A worker that died (a bug): started again after this long. */
const RESTART_MS = 5_000;
/** The same failure is logged again at most this often. */
const LOG_AGAIN_MS = 60_000;
/** Pacing: least time between two writes while the backlog is small (VMLOCKD_PUBLISH_INTERVAL_MS: tests and bench). */
function intervalMs(): number {
  return envMs(process.env, 'VMLOCKD_PUBLISH_INTERVAL_MS') ?? 100;
}

/** Retention in ms: the config's days, or VMLOCKD_PUBLISH_RETAIN_MS (tests: segments a few seconds old). */
function retainMs(days: number): number {
  return envMs(process.env, 'VMLOCKD_PUBLISH_RETAIN_MS') ?? days * 86_400_000;
}
/** How often the worker looks for segments past the retention (VMLOCKD_PUBLISH_PRUNE_EVERY_MS: tests). */
function pruneEveryMs(): number {
  return envMs(process.env, 'VMLOCKD_PUBLISH_PRUNE_EVERY_MS') ?? 3_600_000;
}

function workerFile(): URL {
  // Built: publish-worker.js beside this file. From source (tsx, which the worker inherits through execArgv): the .ts.
  const here = fileURLToPath(import.meta.url);
  const js = new URL('./publish-worker.js', import.meta.url);
  return here.endsWith('.ts') && !existsSync(fileURLToPath(js)) ? new URL('./publish-worker.ts', import.meta.url) : js;
}

interface Running {
  worker: Worker;
  lockspace: string;
  host: string;
  segmentBytes: number;
  exited: Promise<void>;
  stopping: boolean;
  /** The worker said it waits for facts: the next new seq wakes it. */
  waiting: boolean;
  /** The highest seq the worker has been told of (a `head` message). */
  told: number;
}

export class Publication {
  private settings: PublishSettings = { enabled: false, lockspace: null, host: '', segmentBytes: 0, retainDays: 0 };
  private run: Running | undefined;
  private journalId: string | undefined;
  private published = 0;
  /** Where publication stood when a reload turned it off (lockspace, host, last published seq). */
  private offAt: { readonly lockspace: string; readonly host: string; readonly seq: number } | undefined;
  private segment: string | null = null;
  private bytesTotal = 0;
  private factsTotal = 0;
  private errorsTotal = 0;
  /** Retention: the last seq removed on purpose (its pruned-through marker), and segments removed since the start. */
  private prunedThrough = 0;
  private segmentsPruned = 0;
  private lastError: { at: string; message: string; code: string | null } | null = null;
  private failing = false;
  private lastLogged = { message: '', at: 0 };
  private restartTimer: NodeJS.Timeout | undefined;
  private head = 0;
  /**
   * When this process's facts became durable: the lag's seconds (src/daemon/arrivals.ts). Facts
   * journaled before this process started count from its start (a mark at the monotonic clock's
   * origin, the process's start): timed by their stored label instead, a restart with the clock set
   * back read 0 s while they waited (labels in the clock's future), and one before the worker's first
   * progress read the journal's age, hours (aud31, review30 LOW 3 and LOW 4). The wait they had before
   * this start is not counted: the gauge never claims more than this process has had to publish them.
   */
  private readonly arrivals = new Arrivals();
  private closed = false;
  /** Serialises configure/stop: a worker is always gone before the next one starts. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly journal: Journal,
    private readonly log: (level: Level, msg: string) => void,
  ) {
    this.arrivals.note(1, 0);
    // Until the worker's first progress, what the previous run recorded as published (never more than
    // was: compaction trusts it), not 0: else every fact of the journal counted as waiting (LOW 4).
    try {
      this.published = publishedThrough(journal.db) ?? 0;
    } catch {
      this.published = 0;
    }
  }

  /** Applies settings (start, live reload): starts, re-targets or stops the worker. */
  configure(next: PublishSettings): Promise<void> {
    this.chain = this.chain.then(() => this.apply(next)).catch((e: unknown) => this.log('error', `publication: ${(e as Error).message}`));
    return this.chain;
  }

  private async apply(next: PublishSettings): Promise<void> {
    if (this.closed) return;
    const on = next.enabled && next.lockspace !== null;
    const r = this.run;
    if (r !== undefined && on && r.lockspace === next.lockspace && r.host === next.host) {
      if (r.segmentBytes !== next.segmentBytes) {
        r.segmentBytes = next.segmentBytes;
        r.worker.postMessage({ type: 'segmentBytes', bytes: next.segmentBytes } satisfies ToWorker);
      }
      if (this.settings.retainDays !== next.retainDays) r.worker.postMessage({ type: 'retain', ms: retainMs(next.retainDays) } satisfies ToWorker);
      this.settings = next;
      return;
    }
    if (r !== undefined) await this.stopWorker();
    const prev = this.settings;
    this.settings = next;
    if (!on) {
      // Off: `journal compact` is no longer held back by a publication that will not catch up.
      try {
        releaseCompactionNow(this.journal);
      } catch (e) {
        this.log('warning', `publication off, but meta.published_through could not be removed (journal compact stays held back at it): ${(e as Error).message}`);
      }
      // Kept for a reload turning it on again into the same place: its segments are still there, and
      // until the worker's first progress 0 counted the whole journal as waiting (review31a LOW 8).
      // (The worker may not be running: a lockspace away retries; the position is the same.)
      if (prev.enabled && prev.lockspace !== null && this.published > 0) this.offAt = { lockspace: prev.lockspace, host: prev.host, seq: this.published };
      this.published = 0;
      this.segment = null;
      return;
    }
    if (this.published === 0 && this.offAt !== undefined && this.offAt.lockspace === next.lockspace && this.offAt.host === next.host) this.published = this.offAt.seq;
    this.offAt = undefined;
    this.start();
  }

  private start(): void {
    const s = this.settings;
    if (this.closed || !s.enabled || s.lockspace === null) return;
    try {
      this.journalId ??= journalIdNow(this.journal);
      // From now on `journal compact` waits for publication: until the worker records how far it got,
      // it may cut only what was already compacted (nothing new).
      holdCompactionNow(this.journal, () => this.journal.metaInt('archived_through'));
    } catch (e) {
      // Never a wait for another process's write lock on the event loop (publish-meta.ts): later.
      const code = (e as { code?: unknown }).code;
      this.failed({ message: `cannot write the journal's meta table (${(e as Error).message}); publication starts once it can (retried in ${RESTART_MS / 1000} s)`, code: typeof code === 'string' ? code : null });
      this.scheduleRestart();
      return;
    }
    const pin = pinOf(s.lockspace);
    if (pin === undefined) {
      this.failed({ message: `the lockspace ${s.lockspace} has no readable id file; publication waits (retried in ${RESTART_MS / 1000} s)`, code: 'VMLOCKD_ERR_LOCKSPACE_AWAY' });
      this.scheduleRestart();
      return;
    }
    const data: PublishWorkerData = {
      journalFile: this.journal.file,
      lockspace: s.lockspace,
      pin,
      host: s.host,
      journalId: this.journalId,
      segmentBytes: s.segmentBytes,
      intervalMs: intervalMs(),
      retainMs: retainMs(s.retainDays),
      pruneEveryMs: pruneEveryMs(),
    };
    // Its own heap, bounded: a batch is ~1 MiB, a resumed segment at most a few.
    const worker = startThread(workerFile(), { workerData: data, name: 'vmlockd-publisher', resourceLimits: { maxOldGenerationSizeMb: 96 } });
    worker.unref();
    const run: Running = {
      worker,
      lockspace: s.lockspace,
      host: s.host,
      segmentBytes: s.segmentBytes,
      stopping: false,
      waiting: false,
      told: this.head,
      exited: new Promise<void>((resolve) => worker.once('exit', () => resolve())),
    };
    this.run = run;
    worker.on('message', (m: FromWorker) => this.onMessage(run, m));
    worker.on('error', (e) => this.failed({ message: `publisher thread failed: ${e.stack ?? e.message}`, code: null }));
    worker.once('exit', (code) => {
      if (this.run === run) this.run = undefined;
      if (!run.stopping && !this.closed) {
        this.failed({ message: `publisher thread exited (code ${code}); started again in ${RESTART_MS / 1000} s`, code: null });
        this.scheduleRestart();
      }
    });
    if (this.head > 0) worker.postMessage({ type: 'head', seq: this.head } satisfies ToWorker);
  }

  private scheduleRestart(): void {
    if (this.restartTimer !== undefined || this.closed) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.run === undefined) this.start();
    }, RESTART_MS);
    this.restartTimer.unref();
  }

  private onMessage(run: Running, m: FromWorker): void {
    switch (m.type) {
      case 'progress':
        this.published = m.seq;
        this.segment = m.segment;
        this.bytesTotal += m.bytes;
        this.factsTotal += m.facts;
        run.waiting = false;
        this.recovered();
        return;
      case 'idle':
        this.published = m.seq;
        run.waiting = true;
        this.recovered();
        // Facts that arrived while it was busy, which it was not told of: wake it now. Facts it was
        // told of but did not find are not in SQLite yet (staged; SQLite locked by another process
        // or full): it looks again by itself, paced. Waking it for them again answered each idle
        // with a wake-up, a loop that kept a core busy for as long as SQLite lagged (review24d).
        if (this.head > m.seq && this.head > run.told) {
          run.waiting = false;
          run.told = this.head;
          run.worker.postMessage({ type: 'head', seq: this.head } satisfies ToWorker);
        }
        return;
      case 'error':
        this.failed(m);
        return;
      case 'notice':
        this.log('info', `publication: ${m.message}`);
        return;
      case 'pruned':
        this.prunedThrough = m.through;
        this.segmentsPruned += m.segments;
        return;
      case 'stopped':
        this.published = m.seq;
        return;
      default: {
        const _exhaustive: never = m;
        void _exhaustive;
      }
    }
  }

  private failed(m: { message: string; code: string | null }): void {
    this.errorsTotal++;
    this.failing = true;
    this.lastError = { at: new Date().toISOString(), message: m.message, code: m.code };
    const now = Date.now();
    if (m.message !== this.lastLogged.message || now - this.lastLogged.at >= LOG_AGAIN_MS) {
      this.lastLogged = { message: m.message, at: now };
      this.log('warning', `publication to ${this.dir() ?? 'the lockspace'} failing (locks and replies are not affected; it resumes where it stopped): ${m.message}`);
    }
  }

  private recovered(): void {
    if (!this.failing) return;
    this.failing = false;
    this.lastLogged = { message: '', at: 0 };
    this.log('info', `publication to ${this.dir() ?? 'the lockspace'} works again (published through seq ${this.published})`);
  }

  /**
   * New facts are durable up to `seq`, the first of them `from` (the daemon's afterFacts): cheap, and
   * no message while the worker is busy.
   */
  notify(seq: number, from: number = this.head + 1): void {
    if (seq > this.head) {
      this.arrivals.note(Math.max(from, this.head + 1));
      this.head = seq;
    }
    const r = this.run;
    if (r !== undefined && r.waiting) {
      r.waiting = false;
      r.told = this.head;
      r.worker.postMessage({ type: 'head', seq: this.head } satisfies ToWorker);
    }
  }

  private dir(): string | null {
    return this.settings.lockspace === null ? null : hostSegmentDir(this.settings.lockspace, this.settings.host);
  }

  private on(): boolean {
    return this.settings.enabled && this.settings.lockspace !== null;
  }

  /** Facts not yet published, and how long the oldest of them has waited (seconds; 0 when none). */
  lag(headSeq: number): { facts: number; seconds: number } {
    if (!this.on()) return { facts: 0, seconds: 0 };
    const facts = Math.max(0, headSeq - this.published);
    if (facts === 0) return { facts, seconds: 0 };
    // Since this process said the fact was durable, or, journaled before it started, since its start
    // (its monotonic time, never the fact's label, which a clock step moves).
    return { facts, seconds: (this.arrivals.waited(this.published + 1) ?? 0) / 1000 };
  }

  /** For `vmlockd status` / GET /v1/status. */
  status(headSeq: number): Record<string, unknown> {
    const on = this.on();
    const lag = this.lag(headSeq);
    return {
      enabled: on,
      dir: on ? this.dir() : null,
      journalId: this.journalId ?? null,
      publishedSeq: on ? this.published : null,
      lagFacts: on ? lag.facts : null,
      lagSeconds: on ? Math.round(lag.seconds * 1000) / 1000 : null,
      segment: on ? this.segment : null,
      retainDays: this.settings.retainDays,
      prunedThrough: on && this.prunedThrough > 0 ? this.prunedThrough : null,
      failing: on && this.failing,
      errors: this.errorsTotal,
      lastError: this.lastError,
    };
  }

  /** Scrape-time gauges, named without the vmlockd_ prefix (src/cli/metrics.ts). */
  gauges(headSeq: number): Record<string, { help: string; value: number }> {
    const lag = this.lag(headSeq);
    return {
      publish_enabled: { help: '1 while this daemon publishes its journal into the lockspace (.journal/<host-id>/), else 0.', value: this.on() ? 1 : 0 },
      published_seq: { help: 'Seq of the last fact published into the lockspace.', value: this.published },
      publish_lag_facts: { help: 'Facts journaled here but not yet published into the lockspace.', value: lag.facts },
      publish_lag_seconds: { help: 'How long the oldest fact not yet published has waited (0 when none waits).', value: lag.seconds },
      publish_failing: { help: '1 while the last publication attempt failed (the lockspace away, hung, full), else 0.', value: this.on() && this.failing ? 1 : 0 },
      published_bytes_total: { help: 'Bytes of facts written into published segments since start.', value: this.bytesTotal },
      published_facts_total: { help: 'Facts written into published segments since start.', value: this.factsTotal },
      published_segments_pruned_total: { help: 'Published segments removed by retention (publish_retain_days) since start.', value: this.segmentsPruned },
      publish_errors_total: { help: 'Publication attempts that failed since start (each is retried).', value: this.errorsTotal },
    };
  }

  private async stopWorker(): Promise<void> {
    const r = this.run;
    if (r === undefined) return;
    r.stopping = true;
    r.worker.postMessage({ type: 'stop' } satisfies ToWorker);
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([r.exited.then(() => false), new Promise<boolean>((res) => (timer = setTimeout(() => res(true), STOP_WAIT_MS)))]);
    clearTimeout(timer);
    if (late) {
      // Stuck in a write to a hung filesystem: terminate() cannot interrupt a syscall, so it is left
      // to finish (or to the process's end); a new worker starts only after it is gone.
      this.log('warning', `publication: the publisher thread did not stop within ${STOP_WAIT_MS / 1000} s (its filesystem hangs?); left to finish`);
      void r.worker.terminate();
      await r.exited;
    }
    if (this.run === r) this.run = undefined;
  }

  /** The daemon's stop: the last batch is written when the filesystem answers; never waits longer than STOP_WAIT_MS. */
  async close(): Promise<void> {
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    const r = this.run;
    this.closed = true;
    if (r === undefined) return;
    r.stopping = true;
    r.worker.postMessage({ type: 'stop' } satisfies ToWorker);
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([r.exited.then(() => false), new Promise<boolean>((res) => (timer = setTimeout(() => res(true), STOP_WAIT_MS)))]);
    clearTimeout(timer);
    // Stuck in a hung filesystem: once its syscall returns it must not write another batch (a
    // daemon taking over may be publishing by then), so it is terminated, not left to finish.
    if (late) void r.worker.terminate();
  }
}

/** What a config asks of publication. */
export function publishSettings(c: { publish: boolean; fileLockspaceDir: string | null; hostId: string; publishSegmentBytes: number; publishRetainDays: number }): PublishSettings {
  return { enabled: c.publish, lockspace: c.fileLockspaceDir, host: c.hostId, segmentBytes: c.publishSegmentBytes, retainDays: c.publishRetainDays };
}

/** Config keys whose change re-configures publication. */
export const PUBLISH_KEYS: ReadonlySet<string> = new Set(['publish', 'publishSegmentBytes', 'publishRetainDays', 'fileLockspaceDir', 'hostId']);
