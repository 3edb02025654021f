// What a client command costs over a bare Node start: `vmlockd status`, `locks`, `acquire`+`release`,
// `hook` against a real daemon, `who` on its lockspace, and `--help`, each from spawn to exit, interleaved with `node -e 0` in the
// same run (the floor no Node client can beat). Issue 13's target: node start + 60 ms at p50.
//
//   node --import tsx bench/cli-start.ts           full run, rewrites the cli-start table in bench/README.md
//   node --import tsx bench/cli-start.ts --quick   fewer samples, prints only
//   BENCH_BEFORE=DIR node --import tsx bench/cli-start.ts --quick   each command also from DIR's build
//                                                  (another checkout, built), interleaved in the same run
// Needs `npm run build`.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAIN, startBenchDaemon, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? (QUICK ? 10 : 100));
const VM = '11111111-1111-4111-8111-111111111111';

function sign(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * The child's own CPU time (user + system, getrusage of the whole process) is written at its exit by
 * a one-line preload, given to the baseline as well: on this shared machine wall time follows the
 * load, CPU time much less.
 */
let cpuPreload = '';
let cpuLog = '';
function readCpu(): number {
  const v = Number(fs.readFileSync(cpuLog, 'utf8'));
  fs.writeFileSync(cpuLog, '');
  return v;
}

/** Milliseconds from spawn to exit (and the child's CPU milliseconds); rejects on a non-zero exit. */
function timed(args: string[], stdin?: string): Promise<{ wall: number; cpu: number }> {
  return new Promise((resolve, reject) => {
    const input = stdin === undefined ? 'ignore' : fs.openSync(stdin, 'r');
    const t0 = process.hrtime.bigint();
    const p = spawn(process.execPath, ['--require', cpuPreload, ...args], { stdio: [input, 'ignore', 'pipe'], env: { ...process.env, CPU_LOG: cpuLog } });
    if (typeof input === 'number') fs.closeSync(input);
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('exit', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve({ wall: ms, cpu: readCpu() });
      else reject(new Error(`${args.join(' ')} exited ${code}: ${err}`));
    });
  });
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-cli-'));
  cpuPreload = path.join(dir, 'cpu.cjs');
  cpuLog = path.join(dir, 'cpu.log');
  fs.writeFileSync(cpuPreload, `process.on('exit', () => { const u = process.cpuUsage(); require('fs').writeFileSync(process.env.CPU_LOG, String((u.user + u.system) / 1000)); });\n`);
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'image');
  const d = await startBenchDaemon(dir, path.join(dir, 'lockspace'), 'bench-cli');
  const s = ['--socket', d.socket];
  // What qemu's hook gets on stdin: the domain XML.
  const xml = path.join(dir, 'domain.xml');
  fs.writeFileSync(xml, `<domain type='kvm'><name>vm1</name><uuid>${VM}</uuid><devices><disk type='file' device='disk'><source file='${disk}'/><target dev='vda'/></disk></devices></domain>\n`);
  const rows: Array<[string, string[], string?]> = [
    ['`node -e 0` (baseline: a bare Node start)', ['-e', '0']],
    ['`vmlockd --help`', [MAIN, '--help']],
    ['`vmlockd status`', [MAIN, 'status', ...s]],
    ['`vmlockd locks`', [MAIN, 'locks', ...s]],
    ['`vmlockd acquire` (real OFD lock, journaled)', [MAIN, 'acquire', '--vm', VM, disk, ...s]],
    ['`vmlockd release`', [MAIN, 'release', '--vm', VM, disk, ...s]],
    ['`vmlockd who` (reads the lockspace, no daemon)', [MAIN, 'who', disk, '--lockspace', path.join(dir, 'lockspace')]],
    ['`vmlockd hook qemu VM release end -` (through the daemon)', [MAIN, 'hook', 'qemu', 'vm1', 'release', 'end', '-', ...s], xml],
  ];
  // BENCH_BEFORE=DIR: every vmlockd row twice, this build's and DIR's, in the same run: each round
  // runs one build's commands in order (acquire before release), then the other's; who goes first alternates.
  const before = process.env.BENCH_BEFORE;
  const sets: number[][] = [rows.map((_, r) => r)];
  if (before !== undefined) {
    const other = path.join(before, 'dist', 'main.js');
    if (!fs.existsSync(other)) throw new Error(`BENCH_BEFORE: ${other} is missing (build it first)`);
    const n = rows.length;
    for (let r = 1; r < n; r++) rows[r] = [`${rows[r]![0]}, this build`, rows[r]![1], rows[r]![2]];
    for (let r = 1; r < n; r++) rows.push([`${rows[r]![0].replace(/, this build$/, '')}, before`, rows[r]![1].map((a) => (a === MAIN ? other : a)), rows[r]![2]]);
    sets[0] = Array.from({ length: n }, (_, r) => r);
    sets.push([0, ...Array.from({ length: n - 1 }, (_, r) => n + r)]);
  }
  const times = rows.map(() => [] as number[]);
  const cpus = rows.map(() => [] as number[]);
  try {
    for (let i = 0; i < SAMPLES; i++) {
      const order = i % 2 === 0 ? sets : [...sets].reverse();
      for (const set of order) {
        for (const r of set) {
          const t = await timed(rows[r]![1], rows[r]![2]);
          times[r]!.push(t.wall);
          cpus[r]!.push(t.cpu);
        }
      }
    }
  } finally {
    // Its exit before the directory goes: removing the lockspace under a daemon that still publishes
    // into it printed a publication warning at the end of every run.
    const exited = new Promise<void>((resolve) => (d.proc.exitCode !== null ? resolve() : d.proc.once('exit', () => resolve())));
    d.proc.kill('SIGTERM');
    await exited;
  }
  const sorted = times.map((t) => [...t].sort((a, b) => a - b));
  const base = pct(sorted[0]!, 50);
  const cpuSorted = cpus.map((t) => [...t].sort((a, b) => a - b));
  const cpuBase = pct(cpuSorted[0]!, 50);
  const table = [
    `Measured ${new Date().toISOString().slice(0, 16)}Z, ${SAMPLES} samples each, interleaved; ${os.cpus().length} CPUs, Node ${process.version}, load average ${os.loadavg()[0]!.toFixed(1)}. Spawn to exit.`,
    '',
    '| command | p50 | p99 | p50 minus baseline | CPU p50 (user+sys) | CPU p50 minus baseline |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      ([name], r) =>
        `| ${name} | ${pct(sorted[r]!, 50).toFixed(1)} ms | ${pct(sorted[r]!, 99).toFixed(1)} ms | ${r === 0 ? '-' : `${sign(pct(sorted[r]!, 50) - base)} ms`} | ${pct(cpuSorted[r]!, 50).toFixed(1)} ms | ${r === 0 ? '-' : `${sign(pct(cpuSorted[r]!, 50) - cpuBase)} ms`} |`,
    ),
  ].join('\n');
  process.stdout.write(`${table}\n`);
  if (!QUICK && before === undefined) writeReadmeSection('bench:cli-start', table);
  fs.rmSync(dir, { recursive: true, force: true });
}

await main();
