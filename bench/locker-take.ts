// The locker's take + release alone (decision 0019): Locker.prepare (take, exclusive, holder record)
// + commit, then the release (free record, unlock, close), on existing lease files in a local
// directory, through the one-call native path and through the fs-call path (the same build, the
// same binding; `oneCall: false`), rounds alternating which goes first. Prints us per take+release
// pair and CPU per pair, and the ratio within each round.
//   node --import tsx bench/locker-take.ts [--quick]     (BENCH_ROUNDS, default 6)
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

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-take-'));
const refs: ResourceRef[] = [];
for (let i = 0; i < FILES; i++) {
  const id = path.join(dir, `lease-${i}`);
  refs.push({ id, name: `lease-${i}`, lockspace: dir, kind: 'file', canonical: `/d/disk-${i}.img` });
}

function run(oneCall: boolean): { us: number; cpuUs: number } {
  // A binding of the Locker's own (a copy of the real one) with oneCall as asked.
  const locker = new Locker('bench', { native: Object.create(native) as typeof native, oneCall });
  const owner = { uuid: UUID, name: 'vm' };
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  for (let p = 0; p < PASSES; p++) {
    for (const ref of refs) {
      const at = '2026-11-30T12:00:00.000Z';
      const take = locker.prepare([{ kind: 'lock', how: 'take', disk: { path: ref.canonical, mode: 'exclusive', resource: ref }, owner }], { at, source: 'bench' });
      if (take.outcome.status !== 'ok') throw new Error(`refused: ${take.outcome.message}`);
      take.commit();
      locker.prepare([{ kind: 'unlock', how: 'drop', resource: ref, path: ref.canonical, owner }], { at, source: 'bench' }).commit();
    }
  }
  const c = process.cpuUsage(c0);
  const n = PASSES * refs.length;
  return { us: Number(process.hrtime.bigint() - t0) / 1000 / n, cpuUs: (c.user + c.system) / n };
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
