// Prometheus metrics on `metrics_address` (host:port): GET /metrics, text format 0.0.4, built with
// prom-client on a registry of this daemon's own (never prom-client's global one). Only the daemon
// imports this module (src/main.ts loads the daemon lazily), so client commands never load prom-client.
//
// Three kinds of figures: counted as they happen (commands answered per front door and their latency,
// facts by kind, conflicts, staging-file syncs: the `Meters` the daemon feeds), read at scrape time
// from the daemon's status (locks, journal health, verification), and read at scrape time from the
// lockspace's host files (hosts alive / gone, settings mismatch; cached for HOSTS_TTL_MS). The names
// and their meaning: docs/operations.md, "Metrics"; alerts on them: contrib/prometheus/vmlockd.rules.yml.
import * as http from 'node:http';
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';
import { VmlockdError } from '../engine/errors.js';
import type { Fact } from '../engine/facts.js';
import type { HostEntry } from '../engine/locker-hosts.js';
import type { Reply } from '../engine/pipeline.js';
import type { State } from '../engine/state.js';
import type { Command } from '../engine/types.js';

export interface MetricsSource {
  /** Gauges read at scrape time (the status figures), named without the `vmlockd_` prefix. */
  gauges(): Record<string, { help: string; value: number }>;
  /** The engine's state (locks by mode), once there is one. */
  state(): State | undefined;
  /** The lockspace's host entries and this host's settings fingerprint; null in direct mode. */
  hosts(): { entries: readonly HostEntry[]; self: string; fingerprint: string } | null;
}

// prom-client's index also loads its Pushgateway (http, https, url), the cluster aggregator, Summary
// and the default metrics' dozen collectors: 5-8x what the four classes used here cost, and the
// largest part of the daemon's module loading before it listens (bench/README.md, restart with
// 10,000 locks). So the classes come from their own files; the default metrics load with the
// metrics server, the only place they are registered.
const promRequire = createRequire(import.meta.url);
const Registry = promRequire('prom-client/lib/registry') as typeof Prom.Registry;
const Counter = promRequire('prom-client/lib/counter') as typeof Prom.Counter;
const Gauge = promRequire('prom-client/lib/gauge') as typeof Prom.Gauge;
const Histogram = promRequire('prom-client/lib/histogram') as typeof Prom.Histogram;

/** How long a read of the lockspace's host files serves scrapes (they are on the shared filesystem). */
const HOSTS_TTL_MS = 10_000;

/** Latency buckets (seconds): an acquire is a few hundred microseconds on a local disk, more on a cluster filesystem. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const SYNC_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/**
 * A metric's children by up to two label values, each made once by `make` (the second value '' when
 * the metric has one label). Bounded: past 4,096 the cache starts over (prom-client keeps the series).
 */
class Children<C> {
  private readonly byFirst = new Map<string, Map<string, C>>();
  private size = 0;
  constructor(private readonly make: (a: string, b: string) => C) {}

  get(a: string, b: string): C {
    let inner = this.byFirst.get(a);
    if (inner === undefined) {
      if (this.size >= 4096) {
        this.byFirst.clear();
        this.size = 0;
      }
      inner = new Map();
      this.byFirst.set(a, inner);
    }
    let c = inner.get(b);
    if (c === undefined) {
      c = this.make(a, b);
      inner.set(b, c);
      this.size++;
    }
    return c;
  }
}

/**
 * The daemon's event counters, alive from construction (before the metrics server starts, and
 * whether or not it ever does) so no event of the start is missed.
 */
export class Meters {
  readonly registry = new Registry();
  private readonly acquisitions = new Counter({ name: 'vmlockd_acquisitions_total', help: 'Acquire commands answered with the locks held, by source (front door).', labelNames: ['source'], registers: [this.registry] });
  private readonly refusals = new Counter({ name: 'vmlockd_refusals_total', help: 'Commands refused (a disk held by another owner), by source and command kind.', labelNames: ['source', 'kind'], registers: [this.registry] });
  private readonly releases = new Counter({ name: 'vmlockd_releases_total', help: 'Release commands answered ok, by source (front door).', labelNames: ['source'], registers: [this.registry] });
  private readonly errors = new Counter({ name: 'vmlockd_command_errors_total', help: 'Commands answered with an error (bad input, I/O, journal failing), by source and code.', labelNames: ['source', 'code'], registers: [this.registry] });
  private readonly latency = new Histogram({ name: 'vmlockd_request_duration_seconds', help: 'Time from a command entering the pipeline to its reply (facts durable), by source (front door) and command kind.', labelNames: ['source', 'kind'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly facts = new Counter({ name: 'vmlockd_facts_total', help: 'Facts journaled since this daemon started, by kind.', labelNames: ['kind'], registers: [this.registry] });
  private readonly leaseLost = new Counter({ name: 'vmlockd_lease_lost_total', help: 'LeaseLost facts journaled since start: a VM runs without a lock it had.', registers: [this.registry] });
  // The counter restarts with the process: a LeaseLost journaled at a start, after a process that had
  // counted one, reads 1 -> 1 and increase() misses it (review14). The last one's time does not.
  private readonly lastLeaseLost = new Gauge({ name: 'vmlockd_last_lease_lost_timestamp_seconds', help: 'Time of the last LeaseLost this daemon journaled (0: none since start); alert on time() - it.', registers: [this.registry] });
  private readonly conflicts = new Counter({ name: 'vmlockd_conflicts_total', help: 'Held locks the verifier found taken by another owner, and held disks found to be one file under two names (IdentityLearned with a conflict), since start.', registers: [this.registry] });
  private readonly syncs = new Histogram({ name: 'vmlockd_journal_sync_seconds', help: "fdatasync of the journal's staging file, one per group commit (journal_sync=fdatasync).", buckets: SYNC_BUCKETS, registers: [this.registry] });

  constructor(info: { version: string }) {
    new Gauge({ name: 'vmlockd_build_info', help: 'Always 1; the labels say which vmlockd and which Node.js run.', labelNames: ['version', 'node'], registers: [this.registry] })
      .labels({ version: info.version, node: process.versions.node })
      .set(1);
    // Zero series from the start, so a rate() or an alert sees the first increase.
    this.leaseLost.inc(0);
    this.lastLeaseLost.set(0);
    this.conflicts.inc(0);
  }

  // Each series' prom-client child, made once (labels() builds a label object and binds a function
  // per call: ~0.7 KB of garbage per command on the protocol's hot path; bench/README.md, proto26).
  // Sources and kinds are a handful of fixed names; error codes a few dozen.
  private readonly latencyOf = new Children((source, kind) => this.latency.labels({ source, kind }));
  private readonly refusalsOf = new Children((source, kind) => this.refusals.labels({ source, kind }));
  private readonly errorsOf = new Children((source, code) => this.errors.labels({ source, code }));
  private readonly acquisitionsOf = new Children((source) => this.acquisitions.labels({ source }));
  private readonly releasesOf = new Children((source) => this.releases.labels({ source }));
  private readonly factsOf = new Children((kind) => this.facts.labels({ kind }));

  /** The engine's onReply. */
  readonly reply = (command: Command, reply: Reply, seconds: number): void => {
    const source = command.source;
    this.latencyOf.get(source, command.kind).observe(seconds);
    if (reply.status === 'refused') this.refusalsOf.get(source, command.kind).inc();
    else if (reply.status === 'error') this.errorsOf.get(source, reply.code).inc();
    else if (command.kind === 'acquire') this.acquisitionsOf.get(source, '').inc();
    else if (command.kind === 'release') this.releasesOf.get(source, '').inc();
  };

  /** Every batch of durable facts. */
  readonly factsSeen = (facts: readonly Fact[]): void => {
    // One increment per run of facts of one kind: a start's re-take journals 10,000 Reacquired in one
    // group, and prom-client hashes the labels on every call.
    for (let i = 0; i < facts.length; ) {
      const kind = facts[i]!.kind;
      let j = i + 1;
      while (j < facts.length && facts[j]!.kind === kind) j++;
      this.factsOf.get(kind, '').inc(j - i);
      if (kind === 'LeaseLost') {
        this.leaseLost.inc(j - i);
        const at = Date.parse(facts[j - 1]!.at);
        this.lastLeaseLost.set((Number.isFinite(at) ? at : Date.now()) / 1000);
      }
      if (kind === 'IdentityLearned') {
        for (let k = i; k < j; k++) if ((facts[k]!.payload as { conflict?: readonly unknown[] }).conflict?.length) this.conflicts.inc();
      }
      i = j;
    }
  };

  readonly conflict = (): void => this.conflicts.inc();

  /** The journal's onStageSync. */
  readonly stageSync = (seconds: number): void => this.syncs.observe(seconds);

  /** Add the scrape-time gauges read from `src`. Called once, when the metrics server starts. */
  watch(src: MetricsSource): void {
    const reg = [this.registry];
    this.status = src.gauges;
    for (const [name, g] of Object.entries(src.gauges())) {
      const meters = this;
      new Gauge({
        name: `vmlockd_${name}`,
        help: g.help,
        registers: reg,
        collect() {
          this.set(meters.scrape?.[name]?.value ?? 0);
        },
      });
    }
    new Gauge({
      name: 'vmlockd_locks_held_by_mode',
      help: 'Locks held by VMs on this host, by mode (exclusive, shared).',
      labelNames: ['mode'],
      registers: reg,
      collect() {
        const n = { exclusive: 0, shared: 0 };
        for (const r of src.state()?.resources.values() ?? []) for (const h of r.holders.values()) n[h.mode]++;
        this.labels({ mode: 'exclusive' }).set(n.exclusive);
        this.labels({ mode: 'shared' }).set(n.shared);
      },
    });
    let cached: { at: number; hosts: ReturnType<MetricsSource['hosts']> | Error } | undefined;
    const hosts = () => {
      const now = Date.now();
      if (!cached || now - cached.at > HOSTS_TTL_MS) {
        let h: ReturnType<MetricsSource['hosts']> | Error;
        try {
          h = src.hosts();
        } catch (e) {
          h = e as Error;
        }
        cached = { at: now, hosts: h };
      }
      return cached.hosts;
    };
    const readErrors = new Gauge({ name: 'vmlockd_lockspace_hosts_read_failing', help: "1 while the lockspace's host files cannot be read (the host gauges are then left out), else 0.", registers: reg });
    new Gauge({
      name: 'vmlockd_lockspace_hosts',
      help: "Hosts registered in the lockspace's .hosts directory: alive (a daemon holds its host file) or gone.",
      labelNames: ['state'],
      registers: reg,
      collect() {
        this.reset();
        const h = hosts();
        readErrors.set(h instanceof Error ? 1 : 0);
        if (h === null || h instanceof Error) return;
        this.labels({ state: 'alive' }).set(h.entries.filter((e) => e.alive).length);
        this.labels({ state: 'gone' }).set(h.entries.filter((e) => !e.alive).length);
      },
    });
    new Gauge({
      name: 'vmlockd_lockspace_host_up',
      help: "Per host id in the lockspace: 1 while a daemon holds its host file, 0 once it is gone (a host never registered is absent).",
      labelNames: ['host'],
      registers: reg,
      collect() {
        this.reset();
        const h = hosts();
        if (h === null || h instanceof Error) return;
        for (const e of h.entries) this.labels({ host: e.host }).set(e.alive ? 1 : 0);
      },
    });
    new Gauge({
      name: 'vmlockd_lockspace_settings_mismatch',
      help: "Alive hosts in the lockspace whose lock-relevant settings' fingerprint differs from this host's (see `vmlockd cluster`).",
      registers: reg,
      collect() {
        const h = hosts();
        if (h === null || h instanceof Error) return this.set(0);
        this.set(h.entries.filter((e) => e.alive && e.host !== h.self && e.record !== undefined && e.record.fingerprint !== h.fingerprint).length);
      },
    });
    // The process and Node.js figures under their usual names (process_cpu_seconds_total,
    // nodejs_heap_size_used_bytes...), as every Node.js dashboard expects them.
    (promRequire('prom-client/lib/defaultMetrics') as typeof Prom.collectDefaultMetrics)({ register: this.registry });
  }

  private status?: MetricsSource['gauges'];
  /** The status gauges of the scrape under way: one status read serves them all. */
  private scrape?: ReturnType<MetricsSource['gauges']>;

  async text(): Promise<string> {
    this.scrape = this.status?.();
    try {
      return await this.registry.metrics();
    } finally {
      this.scrape = undefined;
    }
  }
}

/** inherited: a listening descriptor for `address` handed over by `serve --takeover`, served instead of binding. */
export async function startMetrics(address: string, meters: Meters, src: MetricsSource, inherited?: number): Promise<http.Server> {
  meters.watch(src);
  return listenMetrics(address, meters, inherited);
}

/** The /metrics endpoint alone (the meters already watch their source): bind, or reject naming the address. */
/** Concurrent /metrics connections (a Prometheus pair and a curl need a handful). */
export const METRICS_MAX_CONNECTIONS = 16;
const METRICS_HEADERS_MS = 5_000;
const METRICS_REQUEST_MS = 10_000;

export async function listenMetrics(address: string, meters: Meters, inherited?: number): Promise<http.Server> {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(i + 1));
  // No client of /metrics may starve the lock path of descriptors (review14: half-open connections
  // ran the daemon out of them, and an acquire failed with EMFILE): at most METRICS_MAX_CONNECTIONS
  // at once (the rest are closed as they are accepted), a request's headers within 5 s and the whole
  // request within 10 s, idle sockets closed after 10 s, all checked every second.
  const server = http.createServer({ headersTimeout: METRICS_HEADERS_MS, requestTimeout: METRICS_REQUEST_MS, connectionsCheckingInterval: 1000, keepAlive: false }, (req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404).end('not found: try GET /metrics\n');
      return;
    }
    // Connection: close. A scraper comes back every 15 s or more, past the 5 s keep-alive, so a kept
    // connection is never reused, only raced: the server closes it as the client sends the next
    // scrape on it (undici: UND_ERR_SOCKET, a failed scrape). Closing each also keeps a scrape storm
    // from parking idle sockets (descriptors the locks need).
    meters.text().then(
      (body) => res.writeHead(200, { 'content-type': meters.registry.contentType, 'content-length': Buffer.byteLength(body), connection: 'close' }).end(body),
      (e: unknown) => res.writeHead(500).end(`metrics failed: ${(e as Error).message}\n`),
    );
  });
  server.maxConnections = METRICS_MAX_CONNECTIONS;
  server.setTimeout(METRICS_REQUEST_MS, (socket) => socket.destroy());
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new VmlockdError('VMLOCKD_ERR_IO', `cannot serve metrics on ${address}: ${e.message}`, { cause: e })));
    if (inherited !== undefined) server.listen({ fd: inherited }, () => resolve());
    else server.listen(port, host, () => resolve());
  });
  return server;
}
