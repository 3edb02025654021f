// A plain restart with many held locks (issue 13: "restart with 10,000 held locks, fresh start, not
// adoption, at most 1 s"): SIGTERM, then `vmlockd serve` re-taking every lock from the journal (file
// lockspace), timed from spawn to "listening on", with the CPU time (every thread) the process had
// spent by then and the start's phases (src/daemon/start-marks.ts, read by bench/restart-preload.cjs).
// Baselines in the same run, each round: a bare `node` (to its first line of output) and a start on an
// empty state directory (0 locks).
//
//   node --import tsx bench/restart.ts           10,000 locks, 6 rounds; prints only
//   node --import tsx bench/restart.ts --quick   1,000 locks, 2 rounds
//   BENCH_BEFORE=DIR     another checkout (built): its restarts alternate with this build's on the same
//                        fixture (which goes first alternates too); ratios this / before per round
//   BENCH_ROUNDS=N, BENCH_RESTART_LOCKS=N, BENCH_LATER_MS=N (the second memory reading, default 12 s after listening)
//   BENCH_PROF=DIR       a CPU profile of each start (both builds), spawn to "listening on"
//                        (summary: node --import tsx bench/prof-summary.ts DIR/this-1.cpuprofile)
// Needs `npm run build` (and BENCH_BEFORE's).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { call } from '../src/cli/client.js';
import { MAIN, ROOT } from './lib.js';

const QUICK = process.argv.includes('--quick');
const LOCKS = Number(process.env.BENCH_RESTART_LOCKS) || (QUICK ? 1_000 : 10_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS) || (QUICK ? 2 : 6);
const BEFORE = process.env.BENCH_BEFORE;
const PROF = process.env.BENCH_PROF;
const PER_REQUEST = 500;
const PRELOAD = path.join(ROOT, 'bench', 'restart-preload.cjs');
/** After "listening on", the start's facts move into SQLite, a snapshot follows 2 s later, then the collections: let them. */
/** When the preload reports resident memory and `new_space` again (BENCH_LATER_MS): after the start's collections. */
const LATER_MS = Number(process.env.BENCH_LATER_MS) || 12_000;
const SETTLE_MS = LATER_MS + 500;

interface Mark {
  name: string;
  at: number;
  cpu: number;
}
interface Report {
  /** ms since the process's start: the preload ran, "listening on". */
  preloadAt: number;
  at: number;
  /** CPU ms of the process (every thread) at the preload and at "listening on". */
  preloadCpu: number;
  cpu: number;
  rss: number;
  marks: Mark[];
}
interface Start {
  proc: ChildProcess;
  exit: Promise<number | null>;
  /** spawn to "listening on" as the bench saw it. */
  wall: number;
  report: Report;
  /** RESTART_LATER_MS after "listening on" (undefined until then). */
  later?: { rss: number; newSpace: number };
}

async function spawnUntil(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Start> {
  const t0 = performance.now();
  const proc = spawn(process.execPath, ['--require', PRELOAD, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VMLOCKD_START_MARKS: '1', RESTART_LATER_MS: String(LATER_MS), ...env } });
  const exit = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  let out = '';
  let err = '';
  let wall = NaN;
  const start: Partial<Start> = { proc, exit };
  const report = await new Promise<Report>((resolve, reject) => {
    let rep: Report | undefined;
    const check = () => {
      if (rep !== undefined && !Number.isNaN(wall)) resolve(rep);
    };
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (Number.isNaN(wall) && out.includes('listening on')) {
        wall = performance.now() - t0;
        check();
      }
    });
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      const m = /restart-report (\{.*\})\n/.exec(err);
      if (rep === undefined && m) {
        rep = JSON.parse(m[1]!) as Report;
        check();
      }
      const l = /restart-later (\{.*\})\n/.exec(err);
      if (start.later === undefined && l) start.later = JSON.parse(l[1]!) as Start['later'];
    });
    void exit.then((c) => reject(new Error(`exited ${c} before listening:\n${out}\n${err}`)));
  });
  return Object.assign(start, { wall, report }) as Start;
}

function serveArgs(main: string, dir: string, lockspace: string): string[] {
  return [main, 'serve', '--state-dir', path.join(dir, 'state'), '--lockspace', lockspace, '--socket', path.join(dir, 'd.sock'), '--host-id', 'bench-restart', '--log-level', 'warning'];
}

async function stop(s: Start): Promise<number> {
  const t = performance.now();
  s.proc.kill('SIGTERM');
  const code = await s.exit;
  if (code !== 0) throw new Error(`daemon exited ${code} on SIGTERM`);
  return performance.now() - t;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number): string => `${Math.round(x)}`;

/** Phase durations (wall, CPU) between consecutive marks, from the process's start. */
const PHASES: Array<[string, string, string]> = [
  ['node start, imports, config', '', 'imported'],
  ['daemon set-up to the journal', 'imported', 'start'],
  ['journal open (staging recovery)', 'start', 'journal-opened'],
  ['state load (snapshot + tail)', 'journal-opened', 'state-loaded'],
  ['naming check, lockspaces, engine, adoption', 'state-loaded', 'retake'],
  ['re-take of every lock (locker.reacquire)', 'retake', 'retaken'],
  ['journaling the start facts (Reacquired...)', 'retaken', 'journaled'],
  ['API server, listen, sources, flush', 'journaled', 'listening'],
];

function phases(r: Report): Map<string, { wall: number; cpu: number }> {
  const by = new Map(r.marks.map((m) => [m.name, m]));
  const out = new Map<string, { wall: number; cpu: number }>();
  for (const [label, from, to] of PHASES) {
    const a = from === '' ? { at: 0, cpu: 0 } : by.get(from);
    const b = by.get(to);
    if (a && b) out.set(label, { wall: b.at - a.at, cpu: b.cpu - a.cpu });
  }
  return out;
}

async function main(): Promise<void> {
  if (!fs.existsSync(MAIN)) throw new Error('run `npm run build` first');
  const beforeMain = BEFORE ? path.join(BEFORE, 'dist', 'main.js') : undefined;
  if (beforeMain && !fs.existsSync(beforeMain)) throw new Error(`${beforeMain} is missing: build BENCH_BEFORE first`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-restart-'));
  if (PROF) fs.mkdirSync(PROF, { recursive: true });
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const dir = path.join(root, 'a');
  fs.mkdirSync(dir);
  const disks = Array.from({ length: LOCKS }, (_, i) => path.join(images, `d${i}.img`));
  for (const d of disks) fs.writeFileSync(d, '');
  let cur = await spawnUntil(serveArgs(MAIN, dir, lockspace));
  const t0 = performance.now();
  for (let i = 0; i < LOCKS; i += PER_REQUEST) {
    const vm = { uuid: `00000000-0000-4000-8000-${String(i / PER_REQUEST).padStart(12, '0')}`, name: `vm${i / PER_REQUEST}` };
    const r = await call(path.join(dir, 'd.sock'), 'POST', '/v1/acquire', { vm, disks: disks.slice(i, i + PER_REQUEST).map((p) => ({ path: p })) });
    if ((r.body as { status?: string }).status !== 'ok') throw new Error(`acquire: ${JSON.stringify(r.body).slice(0, 300)}`);
  }
  process.stderr.write(`${LOCKS} locks taken in ${ms(performance.now() - t0)} ms; load ${os.loadavg()[0]!.toFixed(1)}\n`);
  await sleep(SETTLE_MS);

  type Build = 'this' | 'before';
  const runs: Record<Build, Start[]> = { this: [], before: [] };
  const bare: Start[] = [];
  const empty: Start[] = [];
  const stops: number[] = [];
  const loads: number[] = [];
  // One warm-up restart (page cache, the first start's own snapshot), not counted.
  await stop(cur);
  cur = await spawnUntil(serveArgs(MAIN, dir, lockspace));
  await sleep(SETTLE_MS);
  for (let round = 0; round < ROUNDS; round++) {
    loads.push(os.loadavg()[0]!);
    const b = await spawnUntil(['-e', "process.stdout.write('listening on\\n')"]);
    await b.exit;
    bare.push(b);
    const emptyDir = fs.mkdtempSync(path.join(root, 'empty-'));
    const e = await spawnUntil(serveArgs(MAIN, emptyDir, path.join(emptyDir, 'lockspace')));
    await stop(e);
    empty.push(e);
    const order: Build[] = beforeMain === undefined ? ['this'] : round % 2 === 0 ? ['this', 'before'] : ['before', 'this'];
    for (const build of order) {
      stops.push(await stop(cur));
      const n = runs[build].length + 1;
      // Both builds profiled or neither: the profiler's own CPU would otherwise skew the ratios.
      const env = PROF ? { RESTART_PROF: path.join(PROF, `${build}-${n}.cpuprofile`) } : {};
      cur = await spawnUntil(serveArgs(build === 'this' ? MAIN : beforeMain!, dir, lockspace), env);
      runs[build].push(cur);
      const r = cur.report;
      process.stderr.write(
        `round ${round + 1} ${build}: spawn to listening ${ms(cur.wall)} ms (process ${ms(r.at)} ms), CPU ${ms(r.cpu)} ms, rss ${ms(r.rss / 1048576)} MB; bare node ${ms(b.wall)} ms / CPU ${ms(b.report.cpu)} ms; empty start ${ms(e.wall)} ms / CPU ${ms(e.report.cpu)} ms (load ${os.loadavg()[0]!.toFixed(1)})\n`,
      );
      await sleep(SETTLE_MS);
    }
  }
  await stop(cur);
  fs.rmSync(root, { recursive: true, force: true });

  const lines: string[] = [];
  const stamp = `Measured ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} cores, Node ${process.version}, ${LOCKS.toLocaleString('en')} locks, ${ROUNDS} rounds, load ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}.`;
  lines.push(stamp, '');
  const col = (xs: Start[], f: (s: Start) => number) => (xs.length === 0 ? '-' : `${ms(median(xs.map(f)))} (${ms(Math.min(...xs.map(f)))}-${ms(Math.max(...xs.map(f)))})`);
  const later = (xs: Start[]) => (xs.some((s) => s.later) ? `${col(xs, (s) => (s.later?.rss ?? NaN) / 1048576)} / ${col(xs, (s) => (s.later?.newSpace ?? NaN) / 1048576)}` : '-');
  lines.push(`| start | spawn to "listening on", ms | CPU at "listening on", ms | resident at "listening on", MB | ${LATER_MS / 1000} s later: resident / \`new_space\`, MB |`, '|---|---:|---:|---:|---:|');
  lines.push(`| bare \`node\` (first output) | ${col(bare, (s) => s.wall)} | ${col(bare, (s) => s.report.cpu)} | ${col(bare, (s) => s.report.rss / 1048576)} | - |`);
  lines.push(`| empty state directory (0 locks) | ${col(empty, (s) => s.wall)} | ${col(empty, (s) => s.report.cpu)} | ${col(empty, (s) => s.report.rss / 1048576)} | - |`);
  lines.push(`| restart, ${LOCKS.toLocaleString('en')} locks re-taken, this build | ${col(runs.this, (s) => s.wall)} | ${col(runs.this, (s) => s.report.cpu)} | ${col(runs.this, (s) => s.report.rss / 1048576)} | ${later(runs.this)} |`);
  if (beforeMain) {
    lines.push(`| restart, ${LOCKS.toLocaleString('en')} locks re-taken, BENCH_BEFORE | ${col(runs.before, (s) => s.wall)} | ${col(runs.before, (s) => s.report.cpu)} | ${col(runs.before, (s) => s.report.rss / 1048576)} | ${later(runs.before)} |`);
  }
  lines.push('');
  lines.push(`restart / bare node, medians: wall ${(median(runs.this.map((s) => s.wall)) / median(bare.map((s) => s.wall))).toFixed(2)}x, CPU ${(median(runs.this.map((s) => s.report.cpu)) / median(bare.map((s) => s.report.cpu))).toFixed(2)}x; SIGTERM to exit ${ms(median(stops))} ms median`);
  if (beforeMain) {
    const ratio = (f: (s: Start) => number) => runs.this.map((s, i) => (runs.before[i] ? f(s) / f(runs.before[i]!) : NaN));
    const w = ratio((s) => s.wall);
    const c = ratio((s) => s.report.cpu);
    lines.push(`this / before per round: wall ${w.map((x) => x.toFixed(2)).join(', ')} (median ${median(w).toFixed(2)}x); CPU ${c.map((x) => x.toFixed(2)).join(', ')} (median ${median(c).toFixed(2)}x)`);
  }
  // Phases of this build's starts (medians; wall and CPU between the marks, from the process's start).
  const ph = runs.this.map((s) => phases(s.report));
  if (ph.some((p) => p.size > 0)) {
    lines.push('', '| phase (this build, medians) | wall ms | CPU ms |', '|---|---:|---:|');
    for (const [label] of PHASES) {
      const xs = ph.map((p) => p.get(label)).filter((x) => x !== undefined);
      if (xs.length > 0) lines.push(`| ${label} | ${ms(median(xs.map((x) => x.wall)))} | ${ms(median(xs.map((x) => x.cpu)))} |`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
