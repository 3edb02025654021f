// Every benchmark, one after another (they would disturb each other's timings if run together).
//
//   node --import tsx bench/all.ts            full runs; each rewrites its own section of bench/README.md
//   node --import tsx bench/all.ts --quick    smaller runs that only print (< 1 minute in all)
//
// Each benchmark owns a marked section of bench/README.md (<!-- bench:NAME:start --> ... end) and
// rewrites only that one; this runner adds the summary of what ran, how long, and what failed.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
/** In order; a missing file is skipped (some are written alongside this one). */
const BENCHMARKS = ['run.ts', 'audit.ts', 'cluster.ts', 'cluster-audit.ts', 'protocol.ts', 'publish.ts', 'hook.ts', 'cli-start.ts', 'control.ts', 'durability.ts', 'takeover.ts'];

interface Outcome {
  readonly name: string;
  readonly status: 'ok' | 'failed' | 'absent';
  readonly seconds: number;
}

function main(): number {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'main.js'))) {
    process.stderr.write('bench: run `npm run build` first (the benchmarks start the built daemon)\n');
    return 1;
  }
  const outcomes: Outcome[] = [];
  for (const name of BENCHMARKS) {
    const file = path.join(ROOT, 'bench', name);
    if (!fs.existsSync(file)) {
      outcomes.push({ name, status: 'absent', seconds: 0 });
      continue;
    }
    process.stderr.write(`\n=== bench/${name}${QUICK ? ' --quick' : ''} ===\n`);
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', file, ...(QUICK ? ['--quick'] : [])], { cwd: ROOT, stdio: 'inherit' });
    const seconds = (performance.now() - t0) / 1000;
    outcomes.push({ name, status: r.status === 0 ? 'ok' : 'failed', seconds });
  }
  const table = [
    '| benchmark | result | time |',
    '|---|---|---|',
    ...outcomes.map((o) => `| bench/${o.name} | ${o.status === 'absent' ? 'not present' : o.status} | ${o.status === 'absent' ? '-' : `${o.seconds.toFixed(0)} s`} |`),
  ].join('\n');
  const stamp = `${QUICK ? 'Quick run' : 'Last \`npm run bench\`'}: ${new Date().toISOString().slice(0, 16)}Z.`;
  process.stdout.write(`\n${stamp}\n\n${table}\n`);
  if (!QUICK) {
    try {
      writeReadmeSection('bench:all', `${stamp}\n\n${table}`);
    } catch (e) {
      process.stderr.write(`${(e as Error).message}; summary not written\n`);
    }
  }
  return outcomes.some((o) => o.status === 'failed') ? 1 : 0;
}

process.exitCode = main();
