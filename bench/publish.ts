// Publication (issue 15, docs/decisions/0016): what copying the journal into the lockspace costs and
// how far it lags, each against the same daemon with `publish = 0` in the same run.
//
//   node --import tsx bench/publish.ts           full run; rewrites the publish section of bench/README.md
//   node --import tsx bench/publish.ts --quick   a smaller run; prints the table only
//
// 1. Lag under the ingest benchmark's load (bench/run.ts's ingest: JSON-lines VM starts and stops in
//    windows of 5,000 to /v1/events): the daemon's status is sampled every 50 ms while it runs; the
//    table gives the largest and 99th-percentile lag (facts, and seconds the oldest unpublished fact
//    waited), and how long after the last reply everything was published. Ingest rate with
//    publication on and off, rounds alternating which goes first.
// 2. Cost on the protocol benchmark's workload (bench/protocol.ts: virtlockd-protocol ACQUIRE
//    AUTOCREATE + RELEASE pairs, the project's LockClient, 1 and 16 connections): pairs/s and acquire
//    p50/p99 with publication on and off, the ratio taken within each round.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { LockClient } from '../src/events/virtlockd/client.js';
import { startBenchDaemon, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : Number(process.env.BENCH_ROUNDS ?? 3);
/** BENCH_INGEST_VMS, BENCH_PAIRS (1 client; 16 clients do a fifth each): smaller runs on a busy machine. */
const INGEST_VMS = Number(process.env.BENCH_INGEST_VMS ?? (QUICK ? 5_000 : 50_000));
const PAIRS = Number(process.env.BENCH_PAIRS ?? (QUICK ? 200 : 3_000));
const PROTOCOL = [
  { clients: 1, pairs: PAIRS },
  { clients: 16, pairs: Math.max(10, Math.round(PAIRS / 5)) },
];

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(n >= 10 ? 1 : 2));
function pct(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

interface Daemon {
  proc: ChildProcess;
  socket: string;
  dir: string;
}

/**
 * Dirty pages of the run before (an ingest round writes ~120 MiB) written back first: their
 * write-back otherwise lands in the next run's `fdatasync`s (a 1-client round measured 0.41x).
 */
function settle(): void {
  spawnSync('sync');
}

async function start(publish: boolean, extra: string[] = []): Promise<Daemon> {
  settle();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-publish-'));
  const d = await startBenchDaemon(dir, path.join(dir, 'lockspace'), 'bench', ['--publish', publish ? '1' : '0', ...extra]);
  return { ...d, dir };
}

async function stop(d: Daemon): Promise<void> {
  if (d.proc.exitCode === null) {
    const gone = new Promise((r) => d.proc.once('exit', r));
    d.proc.kill('SIGTERM');
    await gone;
  }
  fs.rmSync(d.dir, { recursive: true, force: true });
}

function get(socket: string, p: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method: 'GET', path: p }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(JSON.parse(body)));
    });
    req.on('error', reject);
    req.end();
  });
}

function uuid(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** bench/run.ts's ingest load: windows of 5,000 VMs started then stopped, streamed as JSON lines. */
async function ingest(d: Daemon): Promise<{ commands: number; ms: number }> {
  const images = path.join(d.dir, 'images');
  fs.mkdirSync(images, { recursive: true });
  for (let i = 0; i < INGEST_VMS; i++) fs.closeSync(fs.openSync(path.join(images, `disk${i}.qcow2`), 'w'));
  const lines: string[] = [];
  const WINDOW = 5000;
  for (let w = 0; w < INGEST_VMS; w += WINDOW) {
    const end = Math.min(INGEST_VMS, w + WINDOW);
    for (let i = w; i < end; i++) lines.push(JSON.stringify({ type: 'started', vm: { uuid: uuid(i), name: `vm${i}` }, disks: [{ path: `${images}/disk${i}.qcow2` }] }));
    for (let i = w; i < end; i++) lines.push(JSON.stringify({ type: 'stopped', vm: { uuid: uuid(i) } }));
  }
  const t0 = performance.now();
  let results = 0;
  await new Promise<void>((resolve, reject) => {
    const req = http.request({ socketPath: d.socket, method: 'POST', path: '/v1/events' }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        for (let i = c.indexOf('\n'); i !== -1; i = c.indexOf('\n', i + 1)) results++;
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(lines.join('\n') + '\n');
  });
  const ms = performance.now() - t0;
  if (results !== lines.length) throw new Error(`ingest: ${results} results for ${lines.length} lines`);
  return { commands: lines.length, ms };
}

interface LagRun {
  rate: number;
  maxFacts: number;
  p99Facts: number;
  maxSeconds: number;
  p99Seconds: number;
  catchUpMs: number;
  facts: number;
  segments: number;
  bytes: number;
}

async function ingestWithLag(d: Daemon): Promise<LagRun> {
  const facts: number[] = [];
  const secs: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const st = await get(d.socket, '/v1/status');
      // Off: sampled all the same, so both daemons answer the same status requests.
      if (st.publication.lagFacts !== null) facts.push(st.publication.lagFacts);
      if (st.publication.lagSeconds !== null) secs.push(st.publication.lagSeconds);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const ing = await ingest(d);
  const done = performance.now();
  let st = await get(d.socket, '/v1/status');
  while (st.publication.enabled && st.publication.publishedSeq !== st.lastSeq) {
    await new Promise((r) => setTimeout(r, 10));
    st = await get(d.socket, '/v1/status');
  }
  const catchUpMs = performance.now() - done;
  sampling = false;
  await sampler;
  const dir = path.join(d.dir, 'lockspace', '.journal', 'bench');
  const segs = fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.endsWith('.seg')) : [];
  const bytes = segs.reduce((n, s) => n + fs.statSync(path.join(dir, s)).size, 0);
  facts.sort((a, b) => a - b);
  secs.sort((a, b) => a - b);
  return {
    rate: (ing.commands / ing.ms) * 1000,
    maxFacts: facts[facts.length - 1] ?? 0,
    p99Facts: pct(facts, 99),
    maxSeconds: secs[secs.length - 1] ?? 0,
    p99Seconds: pct(secs, 99),
    catchUpMs,
    facts: st.lastSeq,
    segments: segs.length,
    bytes,
  };
}

/** The protocol benchmark's loop (bench/protocol.ts worker): each connection registers, then acquire+release pairs on its own lease. */
async function protocolRun(d: Daemon, clients: number, pairs: number): Promise<{ rate: number; p50: number; p99: number }> {
  const sock = path.join(d.dir, 'virtlockd-sock');
  const ls = path.join(d.dir, 'files');
  const setup = await LockClient.connect(sock);
  await setup.createLockspace(ls);
  await setup.close();
  const conns = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const c = await LockClient.connect(sock);
      await c.register({ uuid: `b0000000-0000-4000-8000-${(i + 1).toString(16).padStart(12, '0')}`, name: `bench-${i}`, id: i + 1, pid: 900000 + i });
      return c;
    }),
  );
  const lat: number[] = [];
  const loop = async (c: LockClient, i: number, n: number, record: boolean) => {
    for (let k = 0; k < n; k++) {
      const t0 = performance.now();
      await c.acquire(ls, `lease-${i}`, { autocreate: true });
      if (record) lat.push(performance.now() - t0);
      await c.release(ls, `lease-${i}`);
    }
  };
  await Promise.all(conns.map((c, i) => loop(c, i, Math.min(50, pairs), false)));
  const t0 = performance.now();
  await Promise.all(conns.map((c, i) => loop(c, i, pairs, true)));
  const ms = performance.now() - t0;
  for (const c of conns) await c.close();
  lat.sort((a, b) => a - b);
  return { rate: ((clients * pairs) / ms) * 1000, p50: pct(lat, 50), p99: pct(lat, 99) };
}

async function main(): Promise<void> {
  const out: string[] = [];
  // 1. Lag under ingest load, and the ingest rate on vs off.
  const on: LagRun[] = [];
  const off: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? [true, false] : [false, true];
    for (const publish of order) {
      const d = await start(publish);
      try {
        const run = await ingestWithLag(d);
        if (publish) on.push(run);
        else off.push(run.rate);
      } finally {
        await stop(d);
      }
    }
    process.stderr.write(`bench/publish: ingest round ${r + 1} done\n`);
  }
  const m = on[on.length >> 1]!;
  const ratios = on.map((x, i) => x.rate / off[i]!);
  out.push(
    `Publication under the ingest benchmark's load (${INGEST_VMS.toLocaleString('en-US')} VMs started and stopped, ${(INGEST_VMS * 2).toLocaleString('en-US')} events, ` +
      `~${fmt(m.facts)} facts; status sampled every 50 ms; default publish_segment_bytes and pacing; ${ROUNDS} round(s), the middle one shown where one is):`,
    '',
    '| figure | publish = 1 | publish = 0 | ratio (each round) |',
    '|---|---:|---:|---:|',
    `| ingest commands/s | ${fmt(median(on.map((x) => x.rate)))} | ${fmt(median(off))} | ${median(ratios).toFixed(2)}× (${ratios.map((x) => x.toFixed(2)).join(', ')}) |`,
    `| publication lag, facts: p99 / max of the samples | ${fmt(m.p99Facts)} / ${fmt(m.maxFacts)} | - | - |`,
    `| publication lag, seconds the oldest unpublished fact waited: p99 / max | ${m.p99Seconds.toFixed(2)} / ${m.maxSeconds.toFixed(2)} | - | - |`,
    `| everything published, after the last reply | ${fmt(m.catchUpMs)} ms | - | - |`,
    `| published | ${m.segments} segment(s), ${fmt(m.bytes / 1024 / 1024)} MiB, ${fmt(m.bytes / Math.max(1, m.facts))} bytes/fact | - | - |`,
    '',
  );
  // 2. The protocol workload, on vs off within each round.
  const rows: string[] = [];
  for (const s of PROTOCOL) {
    const res: Record<'on' | 'off', Array<{ rate: number; p50: number; p99: number }>> = { on: [], off: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const);
      for (const k of order) {
        settle();
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-publish-'));
        const dd = await startBenchDaemon(dir, path.join(dir, 'lockspace'), 'bench', ['--publish', k === 'on' ? '1' : '0', '--virtlockd-socket', path.join(dir, 'virtlockd-sock')]);
        const daemon: Daemon = { ...dd, dir };
        try {
          res[k].push(await protocolRun(daemon, s.clients, s.pairs));
        } finally {
          await stop(daemon);
        }
      }
    }
    const each = res.on.map((x, i) => x.rate / res.off[i]!.rate);
    const mo = median(res.on.map((x) => x.rate));
    const mf = median(res.off.map((x) => x.rate));
    const p = (xs: Array<{ p50: number; p99: number }>) => `${median(xs.map((x) => x.p50)).toFixed(3)} / ${median(xs.map((x) => x.p99)).toFixed(3)}`;
    rows.push(`| ${s.clients} client(s), ${(s.clients * s.pairs).toLocaleString('en-US')} pairs | ${fmt(mo)} | ${fmt(mf)} | ${median(each).toFixed(2)}× (${each.map((x) => x.toFixed(2)).join(', ')}) | ${p(res.on)} | ${p(res.off)} |`);
    process.stderr.write(`bench/publish: protocol, ${s.clients} client(s) done\n`);
  }
  out.push(
    `The protocol benchmark's workload (bench/protocol.ts: ACQUIRE AUTOCREATE + RELEASE per pair over the virtlockd protocol, journal_sync = fdatasync, LockClient), publication on and off, ${ROUNDS} round(s) alternating which runs first; medians, the ratio taken within each round:`,
    '',
    '| scenario | publish = 1 pairs/s | publish = 0 pairs/s | on / off (each round) | acquire p50 / p99 ms, on | acquire p50 / p99 ms, off |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows,
  );
  const when = new Date().toISOString().slice(0, 16);
  const text = `Publish benchmark (${QUICK ? 'quick' : 'full'} run, ${when}Z; ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, load average at the end ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')}; state directory and lockspace on ${os.tmpdir()}).\n\n${out.join('\n')}\n`;
  process.stdout.write(text);
  if (!QUICK) writeReadmeSection('bench:publish', text);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
