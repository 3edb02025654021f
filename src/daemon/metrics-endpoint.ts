// The metrics endpoint is optional: it never takes the daemon, or the locks it holds, down (invariant
// 10). Bound before any lock is taken; when it cannot be (the port in use, an address not on this
// host) a start with nothing to keep fails in one line (a take-over too: the old daemon serves on
// with every lock), and a start with locks to keep (the journal holds some, systemd handed
// descriptors back) serves without metrics, says so at
// error level and in `status`, and tries again every 30 s (VMLOCKD_METRICS_RETRY_MS) until it can.
import type * as http from 'node:http';
import { envMs } from './env-ms.js';
import { listenMetrics, type Meters } from './metrics.js';

/** VMLOCKD_METRICS_RETRY_MS (read at start; tests shorten it): how often a failed bind is tried again. */
export function metricsRetryMs(env: NodeJS.ProcessEnv = process.env): number {
  return envMs(env, 'VMLOCKD_METRICS_RETRY_MS') ?? 30_000;
}

export class MetricsEndpoint {
  server?: http.Server;
  /** Why /metrics is not served now (undefined: it is, or none is configured). */
  problem?: string;
  private timer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly address: string,
    private readonly meters: Meters,
    private readonly log: (level: 'info' | 'error', msg: string) => void,
    private readonly retryMs: number = metricsRetryMs(),
  ) {}

  /** Bind (or serve `inherited`). `keep`: locks are at stake, so a failure degrades instead of throwing. */
  async start(inherited: number | undefined, keep: boolean): Promise<void> {
    try {
      this.server = await listenMetrics(this.address, this.meters, inherited);
    } catch (e) {
      if (!keep) throw e;
      this.degraded((e as Error).message, true);
      return;
    }
    this.problem = undefined;
    this.log('info', `metrics on http://${this.address}/metrics`);
  }

  private degraded(why: string, first: boolean): void {
    this.problem = why;
    if (first) this.log('error', `METRICS NOT SERVED: ${why}; vmlockd serves on with its locks (metrics are optional), retrying every ${this.retryMs / 1000} s`);
    if (this.closed) return;
    this.timer = setTimeout(() => void this.retry(), this.retryMs);
    this.timer.unref();
  }

  private async retry(): Promise<void> {
    this.timer = undefined;
    if (this.closed) return;
    try {
      const server = await listenMetrics(this.address, this.meters);
      if (this.closed) {
        server.close();
        return;
      }
      this.server = server;
      this.log('info', `metrics on http://${this.address}/metrics (after: ${this.problem})`);
      this.problem = undefined;
    } catch (e) {
      this.degraded((e as Error).message, false);
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.server?.close();
  }
}
