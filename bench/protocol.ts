// The virtlockd wire protocol, side by side: the real virtlockd and vmlockd (journaling every fact),
// driven by the same client (LockClient) in the same kind of worker process, in one run.
//
//   node --import tsx bench/protocol.ts           full run; rewrites the protocol section of bench/README.md
//   node --import tsx bench/protocol.ts --quick   a smaller run; prints the table only
//
// Each client registers once, then loops ACQUIRE (AUTOCREATE, exclusive, as the plugin sends for a
// disk) + RELEASE on its own lease; the acquire's round trip is timed. virtlockd runs unprivileged
// (as nobody when we are root) on a private socket, so its worker runs as nobody too.
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LockClient } from '../src/events/virtlockd/client.js';
import { virtlockdSkipReason, virtlockdTarget, vmlockdTarget, type ProtocolTarget } from '../test/helpers/protocol-suite.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const QUICK = process.argv.includes('--quick');

interface WorkerResult {
  readonly clients: number;
  readonly pairs: number;
  readonly ms: number;
  readonly p50: number;
  readonly p99: number;
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// ── worker (a separate process, as the uid the target accepts) ────────────────────────────────

async function worker(): Promise<void> {
  const sock = process.env.SOCK!;
  const ls = process.env.LS!;
  const clients = Number(process.env.CLIENTS);
  const pairs = Number(process.env.PAIRS);
  const warmup = Number(process.env.WARMUP);
  const setup = await LockClient.connect(sock);
  await setup.createLockspace(ls);
  await setup.close();
  const conns = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const c = await LockClient.connect(sock);
      const hex = (i + 1).toString(16).padStart(12, '0');
      // A pid that is not this process: closing the connection must not look like a VM exit.
      await c.register({ uuid: `b0000000-0000-4000-8000-${hex}`, name: `bench-${i}`, id: i + 1, pid: 900000 + i });
      return c;
    }),
  );
  const lat = new Float64Array(clients * pairs);
  const loop = async (c: LockClient, i: number, n: number, record: boolean): Promise<void> => {
    const name = `lease-${i}`;
    for (let k = 0; k < n; k++) {
      const t0 = performance.now();
      await c.acquire(ls, name, { autocreate: true });
      if (record) lat[i * pairs + k] = performance.now() - t0;
      await c.release(ls, name);
    }
  };
  await Promise.all(conns.map((c, i) => loop(c, i, warmup, false)));
  const t0 = performance.now();
  await Promise.all(conns.map((c, i) => loop(c, i, pairs, true)));
  const ms = performance.now() - t0;
  for (const c of conns) await c.close();
  lat.sort();
  const out: WorkerResult = { clients, pairs: clients * pairs, ms, p50: pct(lat, 50), p99: pct(lat, 99) };
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ── driver ───────────────────────────────────────────────────────────────────────────────────

function runWorker(socket: string, ls: string, uid: number, clients: number, pairs: number): Promise<WorkerResult> {
  const drop = uid === process.getuid?.() ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
  const argv = [...drop, process.execPath, '--import', 'tsx', SELF];
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: os.tmpdir(),
        BENCH_WORKER: '1',
        SOCK: socket,
        LS: ls,
        CLIENTS: String(clients),
        PAIRS: String(pairs),
        WARMUP: String(Math.min(200, pairs)),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d));
    p.once('close', (code) => {
      if (code !== 0) return reject(new Error(`worker exited ${code}: ${out}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as WorkerResult);
    });
  });
}

interface Row {
  readonly scenario: string;
  /** One per round; empty when virtlockd is not installed. */
  readonly real: WorkerResult[];
  readonly ours: WorkerResult[];
}

const ROUNDS = QUICK ? 1 : 3;

const SCENARIOS = [
  { name: '1 client', clients: 1, pairs: QUICK ? 2_000 : 20_000 },
  { name: '16 concurrent clients', clients: 16, pairs: QUICK ? 200 : 2_000 },
];

async function measure(target: ProtocolTarget, clients: number, pairs: number): Promise<WorkerResult> {
  const info = await target.start();
  const work = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-proto-'));
  try {
    chmodSync(work, 0o755);
    if (info.clientUid !== process.getuid?.()) chownSync(work, info.clientUid, info.clientUid);
    return await runWorker(info.socket, path.join(work, 'files'), info.clientUid, clients, pairs);
  } finally {
    await target.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

const rate = (r: WorkerResult): number => (r.pairs / r.ms) * 1000;
const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms2 = (n: number): string => n.toFixed(3);

/** The round with the median rate. */
function median(rs: WorkerResult[]): WorkerResult {
  return [...rs].sort((a, b) => rate(a) - rate(b))[rs.length >> 1]!;
}

function spread(rs: WorkerResult[]): string {
  if (rs.length < 2) return '';
  const r = rs.map(rate).sort((a, b) => a - b);
  return ` [${int(r[0]!)}-${int(r[r.length - 1]!)}]`;
}

function table(rows: Row[]): string {
  const lines = [
    '| scenario | virtlockd pairs/s | vmlockd pairs/s | vmlockd / virtlockd | virtlockd acquire p50 / p99 (ms) | vmlockd acquire p50 / p99 (ms) |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const ours = median(r.ours);
    const real = r.real.length > 0 ? median(r.real) : null;
    const realRate = real ? `${int(rate(real))}${spread(r.real)}` : 'n/a';
    const ratio = real ? `${(rate(ours) / rate(real)).toFixed(2)}×` : 'n/a';
    const realLat = real ? `${ms2(real.p50)} / ${ms2(real.p99)}` : 'n/a';
    lines.push(`| ${r.scenario} (${int(ours.pairs)} pairs) | ${realRate} | ${int(rate(ours))}${spread(r.ours)} | ${ratio} | ${realLat} | ${ms2(ours.p50)} / ${ms2(ours.p99)} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const skip = virtlockdSkipReason();
  if (skip) process.stderr.write(`bench/protocol: virtlockd column skipped: ${skip}\n`);
  const rows: Row[] = [];
  for (const s of SCENARIOS) {
    const real: WorkerResult[] = [];
    const ours: WorkerResult[] = [];
    // Several rounds, alternating which runs first: the baseline moves a lot between runs here.
    for (let r = 0; r < ROUNDS; r++) {
      const runReal = async () => {
        if (!skip) real.push(await measure(virtlockdTarget(), s.clients, s.pairs));
      };
      const runOurs = async () => {
        ours.push(await measure(vmlockdTarget({ hostId: 'bench' }), s.clients, s.pairs));
      };
      if (r % 2 === 0) {
        await runReal();
        await runOurs();
      } else {
        await runOurs();
        await runReal();
      }
    }
    rows.push({ scenario: s.name, real, ours });
  }
  const when = new Date().toISOString().slice(0, 10);
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const header =
    `Protocol benchmark (${QUICK ? 'quick' : 'full'} run, ${when}; ${os.cpus().length} × ${cpu}, Node ${process.version}, ` +
    `virtlockd ${skip ? 'not installed' : '/usr/sbin/virtlockd'}). Each pair is ACQUIRE (AUTOCREATE, exclusive) + RELEASE over one ` +
    'connection per client, one outstanding call per connection; vmlockd journals OwnerSeen, LockAcquired and LockReleased ' +
    'before each reply (staged: one write to the journal\'s staging file, SQLite in batches; docs/decisions/0006). virtlockd unlinks and re-creates the lease file on every pair; vmlockd ' +
    `keeps it (docs/protocol.md, D2). ${ROUNDS} rounds per scenario, alternating which daemon runs first; the table gives the ` +
    'median round and, in brackets, the slowest and fastest.';
  const out = `${header}\n\n${table(rows)}\n`;
  process.stdout.write(out);
  if (!QUICK) {
    const readme = path.join(ROOT, 'bench', 'README.md');
    const text = readFileSync(readme, 'utf8');
    const start = '<!-- bench:protocol:start -->';
    const end = '<!-- bench:protocol:end -->';
    const section = `${start}\n${out}${end}`;
    const next = text.includes(start) && text.includes(end) ? text.replace(new RegExp(`${start}[\\s\\S]*?${end}`), section) : `${text.trimEnd()}\n\n${section}\n`;
    writeFileSync(readme, next);
  }
}

if (process.env.BENCH_WORKER === '1') {
  worker().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
} else {
  mkdirSync(os.tmpdir(), { recursive: true });
  main().catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  });
}
