// What a client command costs over a bare Node start: `vmlockd status`, `locks`, `acquire`+`release`
// against a real daemon, and `--help`, each from spawn to exit, interleaved with `node -e 0` in the
// same run (the floor no Node client can beat). Issue 13's target: node start + 60 ms at p50.
//
//   node --import tsx bench/cli-start.ts           full run, rewrites the cli-start table in bench/README.md
//   node --import tsx bench/cli-start.ts --quick   fewer samples, prints only
// Needs `npm run build`.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAIN, startBenchDaemon, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
const SAMPLES = QUICK ? 15 : 100;
const VM = '11111111-1111-4111-8111-111111111111';

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Milliseconds from spawn to exit; rejects on a non-zero exit. */
function timed(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('exit', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${args.join(' ')} exited ${code}: ${err}`));
    });
  });
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-cli-'));
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'image');
  const d = await startBenchDaemon(dir, path.join(dir, 'lockspace'), 'bench-cli');
  const s = ['--socket', d.socket];
  const rows: Array<[string, string[]]> = [
    ['`node -e 0` (baseline: a bare Node start)', ['-e', '0']],
    ['`vmlockd --help`', [MAIN, '--help']],
    ['`vmlockd status`', [MAIN, 'status', ...s]],
    ['`vmlockd locks`', [MAIN, 'locks', ...s]],
    ['`vmlockd acquire` (real OFD lock, journaled)', [MAIN, 'acquire', '--vm', VM, disk, ...s]],
    ['`vmlockd release`', [MAIN, 'release', '--vm', VM, disk, ...s]],
  ];
  const times = rows.map(() => [] as number[]);
  try {
    for (let i = 0; i < SAMPLES; i++) for (let r = 0; r < rows.length; r++) times[r]!.push(await timed(rows[r]![1]));
  } finally {
    d.proc.kill('SIGTERM');
  }
  const sorted = times.map((t) => [...t].sort((a, b) => a - b));
  const base = pct(sorted[0]!, 50);
  const table = [
    `Measured ${new Date().toISOString().slice(0, 16)}Z, ${SAMPLES} samples each, interleaved; ${os.cpus().length} CPUs, Node ${process.version}, load average ${os.loadavg()[0]!.toFixed(1)}. Spawn to exit.`,
    '',
    '| command | p50 | p99 | p50 minus baseline |',
    '|---|---|---|---|',
    ...rows.map(([name], r) => `| ${name} | ${pct(sorted[r]!, 50).toFixed(1)} ms | ${pct(sorted[r]!, 99).toFixed(1)} ms | ${r === 0 ? '-' : `+${(pct(sorted[r]!, 50) - base).toFixed(1)} ms`} |`),
  ].join('\n');
  process.stdout.write(`${table}\n`);
  if (!QUICK) writeReadmeSection('bench:cli-start', table);
  fs.rmSync(dir, { recursive: true, force: true });
}

await main();
