// Compaction killed with SIGKILL at each phase (copy, after the cut is recorded, delete) on a
// 200,000-fact journal, by a real `vmlockd journal compact` process: verify never reports tampering,
// readers of journal + archive see each fact once, and a rerun (or the next writer's open) finishes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { queryFacts } from '../../src/cli/audit-query.js';
import { Journal } from '../../src/journal/journal.js';
import { MAIN } from '../helpers/daemon.js';
import { F, VM, rows } from '../helpers/lock-facts.js';

const FACTS = 200_000;
const DISKS = 100;
const CUT = 150_000;
const at = (i: number) => new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
const dir = mkdtempSync(join(tmpdir(), 'vmlockd-compact-crash-'));
const template = join(dir, 'template.db');

test.before(() => {
  // Each disk: a grant, then its release, over and over; 2,000 facts per disk.
  const j = Journal.open(template, { host: 'host-a' });
  const vms = [VM.alpha, VM.beta, VM.gamma];
  for (let base = 0; base < FACTS; base += 5000) {
    const batch = [];
    for (let i = base; i < base + 5000; i++) {
      const disk = `/d/${i % DISKS}`;
      const vm = vms[Math.floor(i / DISKS) % 3]!;
      batch.push(Math.floor(i / DISKS) % 2 === 0 ? F.acquired(at(i), vm, disk) : F.released(at(i), vm, disk));
    }
    j.append(rows(batch));
  }
  j.close();
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** The real CLI, with room for a 200k-fact journal on a loaded machine. */
function cli(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 300_000 });
  return { code: r.status ?? (r.signal === 'SIGKILL' ? -1 : -2), stdout: r.stdout, stderr: r.stderr };
}

/** One disk's facts read from journal + archive, as audit --archive reads them. */
function diskSeqs(file: string, archive: string): number[] {
  const live = Journal.open(file, { host: 'audit', readonly: true });
  const arch = Journal.open(archive, { host: 'audit', readonly: true });
  try {
    return queryFacts({ live, archive: arch }, { disk: '/d/7' }).map((f) => f.seq);
  } finally {
    arch.close();
    live.close();
  }
}

function count(file: string): { n: number; min: number; max: number } {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT count(*) AS n, coalesce(min(seq), 0) AS min, coalesce(max(seq), 0) AS max FROM facts').get() as { n: number; min: number; max: number };
  } finally {
    db.close();
  }
}

for (const phase of ['copy:3', 'meta:1', 'delete:5']) {
  test(`given a compaction SIGKILLed at ${phase}, then verify reports no tampering, readers see each fact once, and a rerun finishes it`, () => {
    const file = join(dir, `${phase.replace(':', '-')}.db`);
    const archive = join(dir, `${phase.replace(':', '-')}-archive.db`);
    copyFileSync(template, file);
    const args = ['journal', 'compact', '--before', at(CUT), '--journal', file, '--archive', archive];
    const killed = cli(args, { env: { VMLOCKD_TEST_COMPACT_KILL: phase } });
    assert.is(killed.code, -1, `the compaction was killed: ${killed.stdout}${killed.stderr}`);

    const verified = cli(['journal', 'verify', '--journal', file, '--archive', archive]);
    assert.is(verified.code, 0, verified.stdout + verified.stderr);
    assert.not.match(verified.stdout, /chain broken|first bad seq|tamper/);
    if (phase !== 'delete:5') assert.match(verified.stdout, /note: .*cut short/);

    // One disk's history across both files: every fact once, never doubled.
    const disk = diskSeqs(file, archive);
    assert.is(disk.length, FACTS / DISKS);
    assert.is(new Set(disk).size, disk.length);

    const rerun = cli(args);
    assert.is(rerun.code, 0, rerun.stdout + rerun.stderr);
    assert.equal(count(archive), { n: CUT, min: 1, max: CUT }, 'the archive holds the moved prefix once');
    assert.equal(count(file), { n: FACTS - CUT, min: CUT + 1, max: FACTS }, 'the journal keeps the rest');
    const again = cli(['journal', 'verify', '--journal', file, '--archive', archive]);
    assert.is(again.code, 0, again.stdout);
    assert.not.match(again.stdout, /note:/);
    assert.is(diskSeqs(file, archive).length, FACTS / DISKS);
  });
}

test('given a compaction SIGKILLed in its delete phase, when the journal is next opened by a writer (a daemon start), then the deletes are finished', () => {
  const file = join(dir, 'open.db');
  const archive = join(dir, 'open-archive.db');
  copyFileSync(template, file);
  const killed = cli(['journal', 'compact', '--before', at(CUT), '--journal', file, '--archive', archive], { env: { VMLOCKD_TEST_COMPACT_KILL: 'delete:2' } });
  assert.is(killed.code, -1, killed.stdout + killed.stderr);
  assert.ok(count(file).min <= CUT, 'facts already archived are still in the journal');
  const j = Journal.open(file, { host: 'host-a' });
  try {
    assert.equal(j.compactionState(), { undeleted: 0 });
    assert.is(j.firstSeq(), CUT + 1);
    assert.ok(j.verifyChain().ok);
  } finally {
    j.close();
  }
});

test.run();
