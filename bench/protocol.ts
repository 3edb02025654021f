// The virtlockd wire protocol, side by side: the real virtlockd and vmlockd (journaling every fact),
// driven by the same clients in one run: the project's Node client (LockClient, in a worker process)
// and a C client (bench/protocol-client.c, one thread and blocking socket per connection, built with
// `cc` at bench time), each also against a no-op server (the floor of that client kind).
//
//   node --import tsx bench/protocol.ts           full run; rewrites the protocol section of bench/README.md
//   node --import tsx bench/protocol.ts --quick   a smaller run; prints the table only
//
// Each client registers once, then loops ACQUIRE (AUTOCREATE, exclusive, as the plugin sends for a
// disk) + RELEASE on its own lease; the acquire's round trip is timed. virtlockd runs unprivileged
// (as nobody when we are root) on a private socket, so its worker runs as nobody too.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { chmodSync, chownSync, closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LockClient } from '../src/events/virtlockd/client.js';
import { ACQUIRE_FLAG, FrameReader, MSG_TYPE, PROC, STATUS, decodeHeader, encodeCall, encodeFrame } from '../src/events/virtlockd/codec.js';
import { virtlockdSkipReason, virtlockdTarget, vmlockdTarget, type ProtocolTarget } from '../test/helpers/protocol-suite.js';
import { ROOT, writeReadmeSection } from './lib.js';

const SELF = fileURLToPath(import.meta.url);
const QUICK = process.argv.includes('--quick');

interface WorkerResult {
  readonly clients: number;
  readonly pairs: number;
  readonly ms: number;
  readonly p50: number;
  readonly p99: number;
  /** The daemon's main-thread CPU time per call (us), warm-up and registration included, when its pid is known. */
  cpuUs?: number;
  /**
   * How often the daemon's main thread went to sleep per call (its voluntary context switches: waiting
   * for the next request in epoll, or for the disk inside fdatasync), same calls as cpuUs.
   */
  sleeps?: number;
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

// ── the floor: a Node server that answers every call at once, doing no work ───────────────────

/** BENCH_NOOP=1: listen on SOCK and answer every frame with an OK reply (REGISTER, ACQUIRE, ... alike). */
function noopServer(): void {
  const sock = process.env.SOCK!;
  const server = net.createServer((s) => {
    const reader = new FrameReader();
    s.on('error', () => undefined);
    s.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        if (f.kind !== 'frame') return void s.destroy();
        s.write(encodeFrame({ ...decodeHeader(f.bytes), type: MSG_TYPE.REPLY, status: STATUS.OK }));
      }
    });
  });
  server.listen(sock, () => process.stdout.write('ready\n'));
}

/** The same client against the no-op server: what the client, the socket and a Node event loop cost alone. */
function noopTarget(): ProtocolTarget {
  let proc: ChildProcess | undefined;
  let dir = '';
  return {
    name: 'vmlockd',
    async start() {
      dir = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-noop-'));
      const socket = path.join(dir, 'noop.sock');
      const p = spawn(process.execPath, ['--import', 'tsx', SELF], { cwd: ROOT, env: { ...process.env, BENCH_NOOP: '1', SOCK: socket }, stdio: ['ignore', 'pipe', 'inherit'] });
      proc = p;
      await new Promise<void>((resolve, reject) => {
        p.stdout!.once('data', () => resolve());
        p.once('exit', (code) => reject(new Error(`no-op server exited ${code}`)));
      });
      return { socket, clientUid: process.getuid!(), foreignUid: null };
    },
    async stop() {
      const p = proc;
      if (p && p.exitCode === null) {
        const gone = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * BENCH_BEFORE=DIR: another build of vmlockd (DIR/dist/main.js, e.g. `git archive` of an earlier
 * commit, built), measured in the same rounds as this one: each hot-path change is measured against
 * the build before it in one run. Printed only.
 */
function beforeTarget(dir: string): ProtocolTarget {
  let proc: ChildProcess | undefined;
  let work = '';
  return {
    name: 'vmlockd',
    async start() {
      work = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-before-'));
      const socket = path.join(work, 'run', 'virtlockd-sock');
      const argv = [path.join(dir, 'dist', 'main.js'), 'serve', '--state-dir', path.join(work, 'state'), '--socket', path.join(work, 'vmlockd.sock'), '--lockspace', path.join(work, 'lockspace'), '--host-id', 'bench', '--virtlockd-socket', socket];
      const p = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
      proc = p;
      await new Promise<void>((resolve, reject) => {
        let out = '';
        p.stdout!.on('data', (d: Buffer) => {
          out += d;
          if (out.includes('listening on')) resolve();
        });
        p.once('exit', (code) => reject(new Error(`the BENCH_BEFORE daemon exited ${code}`)));
      });
      return { socket, clientUid: process.getuid!(), foreignUid: null, ...(p.pid !== undefined ? { pid: p.pid } : {}) };
    },
    async stop() {
      const p = proc;
      if (p && p.exitCode === null) {
        const gone = new Promise((r) => p.once('exit', r));
        p.kill('SIGTERM');
        await gone;
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
}

// ── driver ───────────────────────────────────────────────────────────────────────────────────

type ClientKind = 'node' | 'c';

function runNodeWorker(socket: string, ls: string, uid: number, clients: number, pairs: number): Promise<WorkerResult> {
  const drop = uid === process.getuid?.() ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
  const argv = [...drop, process.execPath, '--import', 'tsx', SELF];
  return collect(argv, {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: os.tmpdir(),
    BENCH_WORKER: '1',
    SOCK: socket,
    LS: ls,
    CLIENTS: String(clients),
    PAIRS: String(pairs),
    WARMUP: String(Math.min(QUICK ? 20 : 200, pairs)),
  });
}

/** The C client: a CREATE_LOCKSPACE frame, then per client REGISTER, ACQUIRE, RELEASE (serials rewritten by the client). */
function runCWorker(bin: string, work: string, socket: string, ls: string, uid: number, clients: number, pairs: number): Promise<WorkerResult> {
  const frames: Buffer[] = [encodeCall(PROC.CREATE_LOCKSPACE, 0, { path: ls })];
  for (let i = 0; i < clients; i++) {
    const hex = (i + 1).toString(16).padStart(12, '0');
    const owner = { uuid: `c0000000-0000-4000-8000-${hex}`, name: `cbench-${i}`, id: i + 1, pid: 910000 + i };
    frames.push(encodeCall(PROC.REGISTER, 0, { owner, flags: 0 }));
    frames.push(encodeCall(PROC.ACQUIRE_RESOURCE, 0, { path: ls, name: `lease-${i}`, flags: ACQUIRE_FLAG.AUTOCREATE }));
    frames.push(encodeCall(PROC.RELEASE_RESOURCE, 0, { path: ls, name: `lease-${i}`, flags: 0 }));
  }
  const file = path.join(work, 'frames.bin');
  writeFileSync(file, Buffer.concat(frames), { mode: 0o644 });
  const drop = uid === process.getuid?.() ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
  return collect([...drop, bin, socket, file, String(clients), String(pairs), String(Math.min(QUICK ? 20 : 200, pairs))], { PATH: process.env.PATH ?? '/usr/bin:/bin' });
}

function collect(argv: string[], env: NodeJS.ProcessEnv): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d));
    p.once('close', (code) => {
      if (code !== 0) return reject(new Error(`worker ${path.basename(argv.find((a) => !a.startsWith('-') && a !== 'setpriv') ?? '')} exited ${code}: ${out}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as WorkerResult);
    });
  });
}

/** Builds bench/protocol-client.c into a directory every uid can read; null (and a note) without a C compiler. */
function buildCClient(): string | null {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-cclient-'));
  chmodSync(dir, 0o755);
  const bin = path.join(dir, 'protocol-client');
  const r = spawnSync(process.env.CC ?? 'cc', ['-O2', '-pthread', '-o', bin, path.join(ROOT, 'bench', 'protocol-client.c')], { encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(`bench/protocol: C client not built (${r.error?.message ?? r.stderr.trim()}); its rows are skipped\n`);
    return null;
  }
  chmodSync(bin, 0o755);
  return bin;
}

/**
 * The sync's own cost on the file system the daemon's state directory is on (os.tmpdir(), as the
 * targets use): a 300-byte line appended and fdatasync'd per call, as the journal's staging file does
 * for a lone client. Per sync, in microseconds; median of `n`.
 */
function bareSyncUs(n: number, overwrite = false): { p50: number; p99: number } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-sync-'));
  const fd = openSync(path.join(dir, 'stage'), overwrite ? 'w+' : 'a');
  const line = Buffer.from('x'.repeat(299) + '\n');
  const t = new Float64Array(n);
  // overwrite: the lines go over zeros already on disk, as the daemon's preallocated staging file (decision 0018)
  if (overwrite) {
    writeSync(fd, Buffer.alloc(n * line.length));
    fdatasyncSync(fd);
  }
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      if (overwrite) writeSync(fd, line, 0, line.length, i * line.length);
      else writeSync(fd, line);
      fdatasyncSync(fd);
      t[i] = (performance.now() - t0) * 1000;
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  t.sort();
  return { p50: pct(t, 50), p99: pct(t, 99) };
}

interface Row {
  readonly scenario: string;
  readonly kind: ClientKind;
  /** One per round; empty when virtlockd is not installed. */
  readonly real: WorkerResult[];
  readonly ours: WorkerResult[];
  /** The no-op Node server, one per round. */
  readonly floor: WorkerResult[];
  /** BENCH_BEFORE's build, one per round (empty without it). */
  readonly before: WorkerResult[];
}

const ROUNDS = QUICK ? 1 : Number(process.env.BENCH_ROUNDS ?? 3);
/** BENCH_CLIENTS=1,8 limits the scenarios; BENCH_KINDS=c or node one client kind (for profiling). */
const ONLY = process.env.BENCH_CLIENTS?.split(',').map(Number);
const BEFORE = process.env.BENCH_BEFORE;
/** BENCH_BEFORE_ONLY=1: only this build and BENCH_BEFORE's (no virtlockd, no no-op server): a quicker A/B. */
const BEFORE_ONLY = BEFORE !== undefined && process.env.BENCH_BEFORE_ONLY === '1';
const KINDS = (process.env.BENCH_KINDS?.split(',') ?? ['node', 'c']) as ClientKind[];

// --quick (part of `npm run bench:quick`, under a minute in all): 1 and 16 clients, few pairs.
const SCENARIOS = [
  { name: '1 client', clients: 1, pairs: QUICK ? 150 : Number(process.env.BENCH_PAIRS1 ?? 2_000) },
  { name: '8 concurrent clients', clients: 8, pairs: QUICK ? 0 : 500 },
  { name: '16 concurrent clients', clients: 16, pairs: QUICK ? 40 : 400 },
].filter((s) => s.pairs > 0 && (ONLY === undefined || ONLY.includes(s.clients)));

/** A process's main thread's voluntary context switches (/proc), or null. */
function mainThreadSleeps(pid: number): number | null {
  try {
    const m = /^voluntary_ctxt_switches:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** utime + stime of a process's main thread, in microseconds (/proc; clock ticks of 10 ms). */
function mainThreadCpuUs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / 100;
  } catch {
    return null;
  }
}

async function measure(target: ProtocolTarget, kind: ClientKind, cbin: string | null, clients: number, pairs: number): Promise<WorkerResult> {
  const info = await target.start();
  const work = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-proto-'));
  try {
    chmodSync(work, 0o755);
    if (info.clientUid !== process.getuid?.()) chownSync(work, info.clientUid, info.clientUid);
    const ls = path.join(work, 'files');
    const cpu0 = info.pid !== undefined ? mainThreadCpuUs(info.pid) : null;
    const sw0 = info.pid !== undefined ? mainThreadSleeps(info.pid) : null;
    const r = kind === 'c' ? await runCWorker(cbin!, work, info.socket, ls, info.clientUid, clients, pairs) : await runNodeWorker(info.socket, ls, info.clientUid, clients, pairs);
    const cpu1 = info.pid !== undefined ? mainThreadCpuUs(info.pid) : null;
    const sw1 = info.pid !== undefined ? mainThreadSleeps(info.pid) : null;
    // Two calls a pair, the warm-up's too (registration and the lockspace are a few calls more).
    const calls = 2 * (r.pairs + clients * Math.min(QUICK ? 20 : 200, pairs));
    if (cpu0 !== null && cpu1 !== null) r.cpuUs = (cpu1 - cpu0) / calls;
    if (sw0 !== null && sw1 !== null) r.sleeps = (sw1 - sw0) / calls;
    return r;
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

/** vmlockd / virtlockd within each round (the two ran back to back), median of the rounds, and each round's. */
function ratios(r: Row): string {
  if (r.real.length === 0) return 'n/a';
  const each = r.ours.map((o, i) => rate(o) / rate(r.real[i]!));
  const sorted = [...each].sort((a, b) => a - b);
  const med = sorted[sorted.length >> 1]!;
  return `${med.toFixed(2)}×${each.length > 1 ? ` (${each.map((x) => x.toFixed(2)).join(', ')})` : ''}`;
}

function eachRatio(a: WorkerResult[], b: WorkerResult[]): string {
  const each = a.map((x, i) => rate(x) / rate(b[i]!));
  const med = [...each].sort((x, y) => x - y)[each.length >> 1]!;
  return `${med.toFixed(2)}×${each.length > 1 ? ` (${each.map((x) => x.toFixed(2)).join(', ')})` : ''}`;
}

/** Median main-thread CPU per call of each build, and each round's ratio. */
function cpuPair(a: WorkerResult[], b: WorkerResult[]): string {
  if (a.some((x) => x.cpuUs === undefined) || b.some((x) => x.cpuUs === undefined)) return 'n/a';
  const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
  const each = a.map((x, i) => x.cpuUs! / b[i]!.cpuUs!);
  const sleeps = a.every((x) => x.sleeps !== undefined) && b.every((x) => x.sleeps !== undefined) ? `; sleeps per call ${med(a.map((x) => x.sleeps!)).toFixed(2)} / ${med(b.map((x) => x.sleeps!)).toFixed(2)}` : '';
  return `${int(med(a.map((x) => x.cpuUs!)))} / ${int(med(b.map((x) => x.cpuUs!)))} (${each.map((x) => x.toFixed(2)).join(', ')})${sleeps}`;
}

/** This build's main thread per call: CPU (us) and sleeps (voluntary context switches), medians. */
function perCall(a: WorkerResult[]): string {
  const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
  if (a.length === 0 || a.some((x) => x.cpuUs === undefined || x.sleeps === undefined)) return 'n/a';
  return `${int(med(a.map((x) => x.cpuUs!)))} us / ${med(a.map((x) => x.sleeps!)).toFixed(2)}`;
}

function table(rows: Row[]): string {
  const lines = [
    '| scenario | client | no-op server pairs/s | virtlockd pairs/s | vmlockd pairs/s | vmlockd / virtlockd (each round) | virtlockd acquire p50 / p99 (ms) | vmlockd acquire p50 / p99 (ms) | budget per call to match virtlockd | vmlockd main thread per call: CPU / sleeps |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  if (BEFORE) {
    lines[0] += ' BENCH_BEFORE pairs/s | this build / before (each round) | main-thread CPU per call, this build / before (us; each round\'s ratio) |';
    lines[1] += '---:|---:|---:|';
  }
  for (const r of rows) {
    const ours = median(r.ours);
    const floor = r.floor.length > 0 ? median(r.floor) : ours;
    const real = r.real.length > 0 ? median(r.real) : null;
    const realRate = real ? `${int(rate(real))}${spread(r.real)}` : 'n/a';
    const realLat = real ? `${ms2(real.p50)} / ${ms2(real.p99)}` : 'n/a';
    // What a daemon may spend per call (two calls a pair) beyond the no-op server and still keep up with virtlockd.
    const budget = real ? `${Math.round(((1 / rate(real) - 1 / rate(floor)) / 2) * 1e6)} us` : 'n/a';
    lines.push(
      `| ${r.scenario} (${int(ours.pairs)} pairs) | ${r.kind === 'c' ? 'C' : 'Node'} | ${int(rate(floor))}${spread(r.floor)} | ${realRate} | ${int(rate(ours))}${spread(r.ours)} | ${ratios(r)} | ${realLat} | ${ms2(ours.p50)} / ${ms2(ours.p99)} | ${budget} | ${perCall(r.ours)} |` +
        (BEFORE ? ` ${int(rate(median(r.before)))}${spread(r.before)} | ${eachRatio(r.ours, r.before)} | ${cpuPair(r.ours, r.before)} |` : ''),
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const skip = virtlockdSkipReason();
  if (skip) process.stderr.write(`bench/protocol: virtlockd column skipped: ${skip}\n`);
  const cbin = KINDS.includes('c') ? buildCClient() : null;
  const kinds = KINDS.filter((k) => k === 'node' || cbin !== null);
  const rows: Row[] = [];
  const syncs: { p50: number; p99: number }[] = [];
  const overwrites: { p50: number; p99: number }[] = [];
  for (const s of SCENARIOS) {
    for (const kind of kinds) {
      const real: WorkerResult[] = [];
      const ours: WorkerResult[] = [];
      const floor: WorkerResult[] = [];
      const before: WorkerResult[] = [];
      // Several rounds, alternating which runs first: the baseline moves a lot between runs here.
      for (let r = 0; r < ROUNDS; r++) {
        const runReal = async () => {
          if (!skip && !BEFORE_ONLY) real.push(await measure(virtlockdTarget(), kind, cbin, s.clients, s.pairs));
        };
        const runOurs = async () => {
          ours.push(await measure(vmlockdTarget({ hostId: 'bench' }), kind, cbin, s.clients, s.pairs));
        };
        if (r % 2 === 0) {
          await runReal();
          await runOurs();
        } else {
          await runOurs();
          await runReal();
        }
        if (BEFORE) before.push(await measure(beforeTarget(BEFORE), kind, cbin, s.clients, s.pairs));
        if (!BEFORE_ONLY) floor.push(await measure(noopTarget(), kind, cbin, s.clients, s.pairs));
        if (s.clients === 1) {
          syncs.push(bareSyncUs(QUICK ? 100 : 500));
          overwrites.push(bareSyncUs(QUICK ? 100 : 500, true));
        }
      }
      rows.push({ scenario: s.name, kind, real, ours, floor, before });
      process.stderr.write(`bench/protocol: ${s.name}, ${kind} client done\n`);
    }
  }
  if (cbin) rmSync(path.dirname(cbin), { recursive: true, force: true });
  const when = new Date().toISOString().slice(0, 16);
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' / ');
  const header =
    `Protocol benchmark (${QUICK ? 'quick' : 'full'} run, ${when}Z; ${os.cpus().length} × ${cpu}, load average at the end ${load}, Node ${process.version}, ` +
    `virtlockd ${skip ? 'not installed' : '/usr/sbin/virtlockd'}). Each pair is ACQUIRE (AUTOCREATE, exclusive) + RELEASE over one ` +
    'connection per client, one outstanding call per connection; vmlockd journals OwnerSeen, LockAcquired and LockReleased ' +
    'before each reply, with its default `journal_sync = "fdatasync"` (the staging file is synced before the reply; docs/decisions/0002, 0006). virtlockd unlinks and re-creates the lease file on every pair; vmlockd ' +
    `keeps it (docs/protocol.md, D2). ${ROUNDS} round(s) per scenario and client, alternating which daemon runs first; the table gives the ` +
    'median round and, in brackets, the slowest and fastest; the ratio is taken within each round. Node client: LockClient in a worker process; ' +
    'C client: bench/protocol-client.c, a thread with a blocking socket per connection. The no-op Node server answers every call at once without doing ' +
    'anything (same client, same kind of socket): its rate is what that client and the socket allow; the last column is the time ' +
    'per call a daemon could spend beyond it and still match virtlockd; the next, the daemon\'s main thread per call (median round, warm-up included): its CPU time ' +
    'and how often it went to sleep (voluntary context switches: waiting for a request, or for the disk inside fdatasync).';
  let syncLine = '';
  if (syncs.length > 0) {
    const p50s = syncs.map((x) => x.p50).sort((a, b) => a - b);
    const med = p50s[p50s.length >> 1]!;
    const o50s = overwrites.map((x) => x.p50).sort((a, b) => a - b);
    const omed = o50s[o50s.length >> 1]!;
    syncLine =
      `\n\nThe sync's own cost, same run, same file system as the state directory (${os.tmpdir()}): a bare loop appending a 300-byte line and ` +
      `calling fdatasync takes ${int(med)} us per call (median of ${syncs.length} round(s): ${p50s.map(int).join(', ')} us; p99 ${int(syncs[syncs.length >> 1]!.p99)} us); ` +
      `writing the line over zeros already on disk (as vmlockd's preallocated staging file, decision 0018) ${int(omed)} us (${o50s.map(int).join(', ')} us; p99 ${int(overwrites[overwrites.length >> 1]!.p99)} us). ` +
      `A lone client waits for one sync per call, so vmlockd's 1-client rate cannot pass ~${int(1e6 / (2 * omed))} pairs/s here whatever it does between syncs.`;
  }
  const out = `${header}${syncLine}\n\n${table(rows)}\n`;
  process.stdout.write(out);
  if (!QUICK && ONLY === undefined && process.env.BENCH_KINDS === undefined && !BEFORE) {
    writeReadmeSection('bench:protocol', out);
  }
}

if (process.env.BENCH_NOOP === '1') {
  noopServer();
} else if (process.env.BENCH_WORKER === '1') {
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
