#!/usr/bin/env node
// Runs the test tiers with uvu (through tsx) and ends with the one line CI reads: `N passed, N failed, N skipped`.
// A suite skipped for lack of libvirtd or GlusterFS prints `  skipped: REASON` and passes one placeholder
// test: it counts as skipped, not passed; with CI=true any skip fails the run (the suites also fail).
// Usage: node test/run.mjs [unit|int|e2e|chaos|system ...]   (default: all tiers; chaos: VMLOCKD_CHAOS_SECONDS, VMLOCKD_CHAOS_SEED)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
// system: the package under a booted systemd container (test/contrib/package-systemd.system.ts), only
// with VMLOCKD_CI_SYSTEMD_CONTAINER=1 (its root file system is made by .ci/install-system.sh then; docs/ci.md).
const defaults = ['unit', 'int', 'e2e', 'chaos', ...(process.env.VMLOCKD_CI_SYSTEMD_CONTAINER === '1' ? ['system'] : [])];
const tiers = process.argv.slice(2).length ? process.argv.slice(2) : defaults;
let passed = 0;
let failed = 0;
let skipped = 0;

for (const tier of tiers) {
  process.stdout.write(`\n=== ${tier} tests ===\n`);
  const r = spawnSync(process.execPath, [path.join(root, 'node_modules/uvu/bin.js'), '-r', 'tsx', 'test', `\\.${tier}\\.ts$`], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0' },
    maxBuffer: 64 << 20,
  });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  const num = (label) => Number((r.stdout.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? NaN);
  const total = num('Total');
  const ok = num('Passed');
  const skip = num('Skipped');
  if (Number.isNaN(total)) {
    // uvu died before its summary (a file that throws at import): count the tier as one failure.
    if (r.status !== 0 || !/No test files|Total/.test(r.stdout)) {
      process.stdout.write(`${tier}: the runner stopped without a summary (exit ${r.status}, signal ${r.signal})\n`);
      failed += 1;
    }
    continue;
  }
  // Whole suites skipped (no libvirtd, no GlusterFS): their placeholder test passed, but nothing ran.
  // (With CI=true such a suite fails by itself: counted there as failed.)
  const suiteSkips = process.env.CI === 'true' ? 0 : (r.stdout.match(/^\s+skipped: /gm) ?? []).length;
  passed += Math.max(0, ok - suiteSkips);
  skipped += skip + Math.min(suiteSkips, ok);
  failed += total - ok - skip;
  if (r.status !== 0 && total - ok - skip === 0) failed += 1;
}

process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exitCode = failed > 0 || (process.env.CI === 'true' && skipped > 0) ? 1 : 0;
