// vmlockd benchmarks. Every figure is printed beside a baseline measured in the same run, because
// these machines are noisy: compare ratios, not absolute numbers.
//
//   npm run bench          full run, rewrites the table in bench/README.md
//   npm run bench:quick    a smaller run (< 1 min), prints the table only
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { native } from '../src/engine/native.js';
import { AUDIT_INDEXES } from '../src/journal/schema.js';
import { MAIN, startBenchDaemon, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
/**
 * --ingest-only: only the ingest rows and the floor (for profiling: VMLOCKD_NODE_ARGS="--cpu-prof ...").
 * BENCH_BEFORE=DIR (with --ingest-only): another build (DIR/dist/main.js) ingests the same events in the
 * same run, rounds alternating which build goes first; prints this build / before per round (rate, and the
 * daemon's CPU per command of the second pass).
 */
const INGEST_ONLY = process.argv.includes('--ingest-only');
const BEFORE = process.env.BENCH_BEFORE;
const N = {
  ofd: QUICK ? 200_000 : 1_000_000,
  sqlite: QUICK ? 100_000 : 500_000,
  ingestVms: QUICK ? 10_000 : 100_000,
  rtt: QUICK ? 1_000 : 10_000,
};

interface Row {
  readonly what: string;
  readonly value: string;
  readonly baseline: string;
  readonly ratio: string;
  readonly target: string;
}
const rows: Row[] = [];

function rate(n: number, ms: number): number {
  return (n / ms) * 1000;
}
function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1);
}
function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-'));
}

function rawOfdPairs(dir: string): number {
  const file = path.join(dir, 'raw.lock');
  const fd = fs.openSync(file, 'w+');
  const t0 = performance.now();
  for (let i = 0; i < N.ofd; i++) {
    native.ofdSetLk(fd, 'write', 0, 1);
    native.ofdSetLk(fd, 'unlock', 0, 1);
  }
  const ms = performance.now() - t0;
  fs.closeSync(fd);
  return rate(N.ofd, ms);
}

/** Batched inserts into a table shaped like the journal's, with the same indexes, WAL + NORMAL (no hash chain). */
function rawSqliteRows(dir: string): number {
  const db = new Database(path.join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(`CREATE TABLE facts(seq INTEGER PRIMARY KEY, at TEXT NOT NULL, host TEXT NOT NULL, kind TEXT NOT NULL,
    resource TEXT, disk TEXT, owner TEXT, owner_name TEXT, payload TEXT NOT NULL, hash BLOB)`);
  // The journal's own indexes, so the baseline pays the same index cost per row.
  for (const ix of AUDIT_INDEXES) db.exec(ix.sql);
  const ins = db.prepare('INSERT INTO facts(at, host, kind, resource, disk, owner, owner_name, payload) VALUES (?,?,?,?,?,?,?,?)');
  const batch = db.transaction((from: number, n: number) => {
    for (let i = from; i < from + n; i++) {
      const payload = JSON.stringify({ resource: `/ls/${i}`, disk: `/images/${i}.qcow2`, owner: { uuid: `u${i}`, name: `vm${i}` }, mode: 'exclusive' });
      ins.run(new Date().toISOString(), 'bench', 'LockAcquired', `/ls/${i}`, `/images/${i}.qcow2`, `u${i}`, `vm${i}`, payload);
    }
  });
  const t0 = performance.now();
  for (let i = 0; i < N.sqlite; i += 1000) batch(i, 1000);
  const ms = performance.now() - t0;
  db.close();
  return rate(N.sqlite, ms);
}

/**
 * The least a lock command can cost on this machine: the lock-file system calls the locker makes
 * (acquire: open, OFD lock, fstat, stat of the path, record read and write; release: record write,
 * close), on lock files that exist, with nothing else: no parsing, no resolving, no hashing, no HTTP.
 * Microseconds per command (half an acquire+release pair).
 */
function lockSyscallsPerCommand(dir: string, n: number): number {
  const ls = path.join(dir, 'floor');
  fs.mkdirSync(ls, { recursive: true });
  const files = Array.from({ length: 1000 }, (_, i) => path.join(ls, `f${i}`));
  for (const f of files) fs.writeFileSync(f, Buffer.alloc(512));
  const rec = Buffer.alloc(512, 0x20);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const f = files[i % files.length]!;
    const fd = fs.openSync(f, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    native.ofdSetLk(fd, 'write', 0, 1);
    fs.fstatSync(fd);
    fs.statSync(f);
    fs.readSync(fd, rec, 0, 512, 0);
    fs.writeSync(fd, rec, 0, 512, 0);
    fs.writeSync(fd, rec, 0, 512, 0);
    fs.closeSync(fd);
  }
  return ((performance.now() - t0) * 1000) / n / 2;
}

/** A process's user+system CPU milliseconds so far (/proc/PID/stat, clock ticks of 10 ms). */
function procCpuMs(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').slice(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

function uuid(i: number): string {
  const h = i.toString(16).padStart(12, '0');
  return `00000000-0000-4000-8000-${h}`;
}

/** End to end: JSON lines through the control API's ingest stream, as `vmlockd ingest` sends them. */
async function ingest(socket: string, dir: string): Promise<{ commands: number; ms: number }> {
  fs.mkdirSync(path.join(dir, 'images'), { recursive: true });
  // The images exist, as a started VM's disks do (a missing one costs resolve an ENOENT per path).
  for (let i = 0; i < N.ingestVms; i++) {
    const img = path.join(dir, 'images', `disk${i}.qcow2`);
    if (!fs.existsSync(img)) fs.closeSync(fs.openSync(img, 'w'));
  }
  const lines: string[] = [];
  // Windows of 5,000 VMs: all start, then all stop, so at most 5,000 locks (descriptors) are held at once.
  const WINDOW = 5000;
  for (let w = 0; w < N.ingestVms; w += WINDOW) {
    const end = Math.min(N.ingestVms, w + WINDOW);
    for (let i = w; i < end; i++) {
      lines.push(JSON.stringify({ type: 'started', vm: { uuid: uuid(i), name: `vm${i}` }, disks: [{ path: `${dir}/images/disk${i}.qcow2` }] }));
    }
    for (let i = w; i < end; i++) lines.push(JSON.stringify({ type: 'stopped', vm: { uuid: uuid(i) } }));
  }
  const body = lines.join('\n') + '\n';
  const t0 = performance.now();
  let results = 0;
  let failures = 0;
  await new Promise<void>((resolve, reject) => {
    const req = http.request({ socketPath: socket, method: 'POST', path: '/v1/events' }, (res) => {
      let rest = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        rest += chunk;
        let i: number;
        while ((i = rest.indexOf('\n')) >= 0) {
          const line = rest.slice(0, i);
          if (!line.includes('"status":"ok"') && failures++ < 3) process.stderr.write(`not ok: ${line}\n`);
          results++;
          rest = rest.slice(i + 1);
        }
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
  const ms = performance.now() - t0;
  if (results !== lines.length || failures > 0) throw new Error(`ingest: ${results} results for ${lines.length} lines, ${failures} not ok`);
  return { commands: lines.length, ms };
}

function request(agent: http.Agent, socket: string, method: string, p: string, body?: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ agent, socketPath: socket, method, path: p, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** Acquire round trips through the socket (keep-alive connection, one at a time, like a hook or plugin). */
async function roundTrips(socket: string, dir: string): Promise<{ acquire: number[]; status: number[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const disk = path.join(dir, 'images', 'rtt.qcow2');
  // The disk exists (a lock on a missing path is refused unless the client says it will create it).
  fs.closeSync(fs.openSync(disk, 'a'));
  const vm = { uuid: uuid(999_999_999), name: 'rtt' };
  const acquire: number[] = [];
  const status: number[] = [];
  for (let i = 0; i < N.rtt + 200; i++) {
    let t0 = performance.now();
    await request(agent, socket, 'GET', '/v1/status');
    const s = performance.now() - t0;
    t0 = performance.now();
    const code = await request(agent, socket, 'POST', '/v1/acquire', { vm, disks: [{ path: disk }] });
    const a = performance.now() - t0;
    if (code !== 200) throw new Error(`acquire answered ${code}`);
    await request(agent, socket, 'POST', '/v1/release', { vm });
    if (i >= 200) {
      // the first 200 warm the JIT and the connection
      acquire.push(a * 1000);
      status.push(s * 1000);
    }
  }
  agent.destroy();
  return { acquire: acquire.sort((x, y) => x - y), status: status.sort((x, y) => x - y) };
}

/** Second-pass ingest (lock files exist) of this build and BENCH_BEFORE's, alternating; ratios per round. */
async function ingestAB(before: string): Promise<void> {
  const builds = [
    { name: 'this build', main: MAIN },
    { name: 'before', main: path.join(before, 'dist', 'main.js') },
  ];
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const out: string[] = [];
  for (let r = 0; r < rounds; r++) {
    const rates: Record<string, number> = {};
    // The daemon's CPU per command too: steadier than wall time on this shared machine.
    const cpu: Record<string, number> = {};
    for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
      const dir = tmp();
      const { proc, socket } = await startBenchDaemon(dir, path.join(dir, 'lockspace'), 'bench', [], b.main);
      try {
        await ingest(socket, dir);
        const d0 = procCpuMs(proc.pid!);
        const ing = await ingest(socket, dir);
        cpu[b.name] = ((procCpuMs(proc.pid!) - d0) * 1000) / ing.commands;
        rates[b.name] = rate(ing.commands, ing.ms);
      } finally {
        proc.kill('SIGTERM');
        await new Promise((res) => proc.once('exit', res));
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    const line = `round ${r + 1}: this build ${fmt(rates['this build']!)}/s (daemon CPU ${cpu['this build']!.toFixed(0)} us/command), before ${fmt(rates.before!)}/s (${cpu.before!.toFixed(0)} us/command), ratio ${(rates['this build']! / rates.before!).toFixed(2)}x, CPU ${(cpu['this build']! / cpu.before!).toFixed(2)}x (load ${os.loadavg()[0]!.toFixed(1)})`;
    process.stdout.write(line + '\n');
    out.push(line);
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(MAIN)) throw new Error('run `npm run build` first');
  if (INGEST_ONLY && BEFORE) return ingestAB(BEFORE);
  const dir = tmp();
  process.stderr.write(`bench${QUICK ? ' (quick)' : ''} in ${dir}\n`);
  const ofd = rawOfdPairs(dir);
  const sqlite = rawSqliteRows(dir);
  const { proc, socket } = await startBenchDaemon(dir, path.join(dir, 'lockspace'), 'bench');
  try {
    // The first pass creates one lock file per disk (a new file in the lockspace: what a disk's very
    // first lock costs); the second finds them, as on a host whose disks have been locked before.
    for (const pass of ['first pass, creates every lock file', 'second pass, lock files exist'] as const) {
      const c0 = process.cpuUsage();
      const d0 = procCpuMs(proc.pid!);
      const ing = await ingest(socket, dir);
      const c1 = process.cpuUsage(c0);
      if (process.env.BENCH_CPU) process.stderr.write(`ingest ${pass}: ${ing.ms.toFixed(0)} ms wall, daemon CPU ${(procCpuMs(proc.pid!) - d0).toFixed(0)} ms, bench client CPU ${((c1.user + c1.system) / 1000).toFixed(0)} ms\n`);
      const cps = rate(ing.commands, ing.ms);
      rows.push({ what: `ingest: lock commands/s end to end (${fmt(ing.commands)} events, journaled; ${pass})`, value: fmt(cps), baseline: `${fmt(sqlite)} raw batched SQLite rows/s`, ratio: `${((cps / sqlite) * 100).toFixed(0)}%`, target: '>= 100,000/s or >= 60% of raw SQLite' });
    }
    // Each ingested command journals 1.5 rows (started: OwnerSeen + LockAcquired; stopped: LockReleased).
    const sysUs = lockSyscallsPerCommand(dir, QUICK ? 20_000 : 100_000);
    const floor = 1e6 / (sysUs + 1.5 * (1e6 / sqlite));
    rows.push({
      what: `floor: lock-file system calls (${sysUs.toFixed(1)} us/command) + 1.5 journal rows at the raw batched rate, nothing else`,
      value: fmt(floor),
      baseline: `${fmt(sqlite)} raw batched SQLite rows/s`,
      ratio: `${((floor / sqlite) * 100).toFixed(0)}%`,
      target: 'the best any implementation could do here',
    });
    rows.push({ what: 'raw OFD lock+unlock pairs/s (binding, one fd)', value: fmt(ofd), baseline: '-', ratio: '-', target: '-' });
    if (!INGEST_ONLY) {
      const rt = await roundTrips(socket, dir);
      const p50 = pct(rt.acquire, 50);
      const p99 = pct(rt.acquire, 99);
      const s50 = pct(rt.status, 50);
      const s99 = pct(rt.status, 99);
      const ofdUs = 1e6 / ofd;
      rows.push({ what: `acquire round trip p50 through the socket (${fmt(N.rtt)} samples)`, value: `${p50.toFixed(0)} us`, baseline: `${s50.toFixed(0)} us GET /v1/status; ${ofdUs.toFixed(2)} us raw OFD pair`, ratio: `${(p50 / s50).toFixed(2)}x status`, target: '<= 200 us' });
      rows.push({ what: 'acquire round trip p99 through the socket', value: `${p99.toFixed(0)} us`, baseline: `${s99.toFixed(0)} us GET /v1/status`, ratio: `${(p99 / s99).toFixed(2)}x status`, target: '<= 1 ms' });
    }
  } finally {
    proc.kill('SIGTERM');
    await new Promise((res) => proc.once('exit', res));
  }
  const table = [
    `| figure | value | baseline (same run) | ratio | target |`,
    `|---|---|---|---|---|`,
    ...rows.map((r) => `| ${r.what} | ${r.value} | ${r.baseline} | ${r.ratio} | ${r.target} |`),
  ].join('\n');
  const stamp = `Measured ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), Node ${process.version}${QUICK ? ', quick run' : ''}.`;
  process.stdout.write(`${stamp}\n\n${table}\n`);
  if (!QUICK && !INGEST_ONLY) {
    writeReadmeSection('bench', `${stamp}\n\n${table}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
