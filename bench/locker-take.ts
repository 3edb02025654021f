// The locker's take + release alone (decision 0019): Locker.prepare (take, exclusive, holder record)
// + commit, then the release (free record, unlock, close), on existing lease files in a local
// directory, through the one-call native path and through the fs-call path (the same build, the
// same binding; `oneCall: false`), rounds alternating which goes first. Prints us per take+release
// pair and CPU per pair, and the ratio within each round.
//   node --import tsx bench/locker-take.ts [--quick]     (BENCH_ROUNDS, default 6)
// BENCH_BEFORE=DIR: instead, this build's one-call path against DIR's (a source tree with its native
// binding built, e.g. `git archive main | tar -x -C DIR && (cd DIR && ln -s $PWD/node_modules && npm run
// install)`), each on lease files of its own; BENCH_MODE=shared takes shared locks.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Locker } from '../src/engine/locker.js';
import { native } from '../src/engine/native.js';
import type { ResourceRef } from '../src/engine/types.js';

const QUICK = process.argv.includes('--quick');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 2 : 6));
const FILES = QUICK ? 500 : 2_000;
const PASSES = QUICK ? 2 : 5;
const UUID = '11111111-1111-4111-8111-111111111111';

const BEFORE = process.env.BENCH_BEFORE;
const MODE = process.env.BENCH_MODE === 'shared' ? 'shared' : 'exclusive';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-take-'));
function leases(sub: string): ResourceRef[] {
  fs.mkdirSync(path.join(dir, sub));
  return Array.from({ length: FILES }, (_, i) => ({ id: path.join(dir, sub, `lease-${i}`), name: `lease-${i}`, lockspace: path.join(dir, sub), kind: 'file' as const, canonical: `/d/disk-${i}.img` }));
}
const refs = leases('this');
const beforeRefs = BEFORE ? leases('before') : [];
const BeforeLocker = BEFORE ? ((await import(path.resolve(BEFORE, 'src/engine/locker.ts'))) as { Locker: typeof Locker }).Locker : undefined;

function run(oneCall: boolean, before = false): { us: number; cpuUs: number } {
  // A binding of the Locker's own (a copy of the real one) with oneCall as asked; BENCH_BEFORE's with its own binding.
  const locker = before ? new BeforeLocker!('bench') : BEFORE ? new Locker('bench') : new Locker('bench', { native: Object.create(native) as typeof native, oneCall });
  const refs_ = before ? beforeRefs : refs;
  const owner = { uuid: UUID, name: 'vm' };
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  for (let p = 0; p < PASSES; p++) {
    for (const ref of refs_) {
      const at = '2026-11-30T12:00:00.000Z';
      const take = locker.prepare([{ kind: 'lock', how: 'take', disk: { path: ref.canonical, mode: MODE, resource: ref }, owner }], { at, source: 'bench' });
      if (take.outcome.status !== 'ok') throw new Error(`refused: ${take.outcome.message}`);
      take.commit();
      locker.prepare([{ kind: 'unlock', how: 'drop', resource: ref, path: ref.canonical, owner }], { at, source: 'bench' }).commit();
    }
  }
  const c = process.cpuUsage(c0);
  const n = PASSES * refs_.length;
  return { us: Number(process.hrtime.bigint() - t0) / 1000 / n, cpuUs: (c.user + c.system) / n };
}

if (BEFORE) {
  // This build (after) against BENCH_BEFORE's, both through the default Locker (one call).
  run(true, true);
  run(true);
  const ab: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? [true, false] : [false, true];
    const got: Record<string, { us: number; cpuUs: number }> = {};
    for (const b of order) got[b ? 'before' : 'after'] = run(true, b);
    const ratio = got.after!.cpuUs / got.before!.cpuUs;
    ab.push(ratio);
    process.stdout.write(`${MODE} round ${r + 1}: before ${got.before!.us.toFixed(1)} us/pair (CPU ${got.before!.cpuUs.toFixed(1)} us), after ${got.after!.us.toFixed(1)} us/pair (CPU ${got.after!.cpuUs.toFixed(1)} us), CPU ratio ${ratio.toFixed(2)}x (load ${os.loadavg()[0]!.toFixed(1)})\n`);
  }
  ab.sort((a, b) => a - b);
  process.stdout.write(`${MODE} median CPU ratio after / before: ${ab[Math.floor(ab.length / 2)]!.toFixed(2)}x (${ab.map((r) => r.toFixed(2)).join(', ')})\n`);
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

// Warm-up (creates every lease file and its records; JIT).
run(true);
run(false);
const ratios: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? [true, false] : [false, true];
  const got: Record<string, { us: number; cpuUs: number }> = {};
  for (const one of order) got[one ? 'one' : 'fs'] = run(one);
  const ratio = got.one!.cpuUs / got.fs!.cpuUs;
  ratios.push(ratio);
  process.stdout.write(
    `round ${r + 1}: one call ${got.one!.us.toFixed(1)} us/pair (CPU ${got.one!.cpuUs.toFixed(1)} us), fs calls ${got.fs!.us.toFixed(1)} us/pair (CPU ${got.fs!.cpuUs.toFixed(1)} us), CPU ratio ${ratio.toFixed(2)}x (load ${os.loadavg()[0]!.toFixed(1)})\n`,
  );
}
ratios.sort((a, b) => a - b);
process.stdout.write(`median CPU ratio one call / fs calls: ${ratios[Math.floor(ratios.length / 2)]!.toFixed(2)}x over ${ROUNDS} rounds, ${FILES} lease files x ${PASSES} passes each\n`);
fs.rmSync(dir, { recursive: true, force: true });
