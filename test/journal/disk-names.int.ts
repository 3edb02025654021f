// disk_names (schema version 4): the names a disk's facts use, by identity and by lease hash, so
// `audit --disk` on a hard link or a leased disk is an index probe instead of a scan of every payload
// (4-5 s at 1M facts). A journal written before it opens and migrates in constant time; its older
// facts are indexed in bounded batches off the start's path while lookups scan what is not indexed
// yet; a SIGKILL anywhere in between leaves a journal that opens, verifies and answers the same.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal, SCHEMA_VERSION } from '../../src/journal/journal.js';
import { DISK_NAMES_PENDING, indexDiskNamesBatch } from '../../src/journal/schema.js';
import { TestDaemon, cli, tmpdir, until } from '../helpers/daemon.js';
import { writeSchema3, type Schema3 } from './fixtures/schema3-journal.js';

const sorted = (s: Set<string> | undefined) => [...(s ?? [])].sort();

function answersTruly(j: Journal, w: Schema3, what: string): void {
  for (const [inode, disks] of w.identities) assert.equal(j.disksWithInode([inode]), sorted(disks), `${what}: identity ${inode}`);
  for (const [h, disks] of w.leases) assert.equal(j.leaseDisks([h]), sorted(disks), `${what}: lease ${h}`);
  assert.equal(j.disksWithInode(['64769:1:1']), [], `${what}: an identity no fact carries`);
}

const pending = (j: Journal) => Number(j.db.prepare(`SELECT value FROM meta WHERE key = ?`).pluck().get(DISK_NAMES_PENDING));

test('a schema-3 journal is read as it is, migrates in constant time, and answers the same before, during and after its backfill', () => {
  const file = path.join(tmpdir(), 'journal.db');
  const w = writeSchema3(file, 6_000);
  const old = Journal.open(file, { host: 'hv-a', readonly: true });
  assert.is(old.schemaVersion, 3, 'a reader reads a file its writer has not migrated yet');
  answersTruly(old, w, 'schema 3, read only');
  old.close();

  const j = Journal.open(file, { host: 'hv-a' });
  try {
    assert.is(j.schemaVersion, SCHEMA_VERSION);
    assert.is(pending(j), 6_000, 'the migration indexes nothing itself: every older fact waits for the backfill');
    assert.is(j.db.prepare('SELECT count(*) FROM disk_names').pluck().get(), 0);
    answersTruly(j, w, 'migrated, nothing indexed');
    // A fact appended now is indexed by the trigger at once.
    j.append([{ kind: 'LockAcquired', at: '2026-02-01T00:00:00.000Z', resource: '/ls/0/x', disk: '/images/new.img', owner: 'o', payload: { disk: '/images/new.img', inode: '64769:9:9' } }]);
    assert.equal(j.db.prepare(`SELECT disk FROM disk_names WHERE key = 'id:64769:9:9'`).pluck().all(), ['/images/new.img']);
    let left = pending(j);
    let batches = 0;
    while (left > 0) {
      const next = indexDiskNamesBatch(j.db, 1_000);
      assert.is(next, Math.max(0, left - 1_000));
      left = next;
      if (++batches % 2 === 0) answersTruly(j, w, `backfill at ${left}`);
    }
    assert.is(batches, 6);
    answersTruly(j, w, 'backfill complete');
    assert.is(indexDiskNamesBatch(j.db), 0, 'a complete backfill does nothing');
    assert.match(j.db.prepare(`EXPLAIN QUERY PLAN SELECT disk FROM disk_names WHERE key = ?`).all('id:1').map((r: any) => r.detail).join(' '), /SEARCH disk_names USING PRIMARY KEY \(key=\?\)/);
    const report = j.integrity();
    assert.ok(report.ok, report.problems.join('; '));
  } finally {
    j.close();
  }
});

test('SIGKILL during the migration or the backfill leaves a journal that opens, verifies and answers the same', async () => {
  const dir = tmpdir();
  const base = path.join(dir, 'base.db');
  const w = writeSchema3(base, 20_000);
  const child = path.join(import.meta.dirname, 'fixtures', 'disk-names-child.ts');
  const seen = new Set<string>();
  // Killed: before the open finished (inside the migration, when the timing lands there), right after
  // it, and after 1, 10 and 40 of the backfill's 100 batches.
  for (const when of ['open-started', 'open', 1, 10, 40] as const) {
    const file = path.join(dir, `j-${when}.db`);
    fs.copyFileSync(base, file);
    const p = spawn(process.execPath, ['--import', 'tsx', child, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const reached = () => (when === 'open-started' ? out.includes('opening') : when === 'open' ? out.includes('open\n') : (out.match(/b/g) ?? []).length >= when);
    for (let i = 0; i < 2_400 && !reached() && p.exitCode === null; i++) await new Promise((r) => setTimeout(r, 5));
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
    const r = Journal.open(file, { host: 'hv-a', readonly: true });
    const v = r.schemaVersion;
    const left = v === 4 ? pending(r) : undefined;
    seen.add(v === 3 ? 'unmigrated' : left === 20_000 ? 'migrated' : left === 0 ? 'complete' : 'part');
    answersTruly(r, w, `killed at ${when} (schema ${v}, pending ${left})`);
    const ok = r.integrity();
    assert.ok(ok.ok, ok.problems.join('; '));
    r.close();
    const j = Journal.open(file, { host: 'hv-a' });
    while (indexDiskNamesBatch(j.db) > 0);
    answersTruly(j, w, `killed at ${when}, then completed`);
    j.close();
  }
  assert.ok(seen.has('part'), `a kill landed in the middle of the backfill: ${[...seen].join(', ')}`);
});

test('a daemon started on a schema-3 journal migrates it, answers, and its writer thread indexes the older facts', async () => {
  const dir = tmpdir();
  const state = path.join(dir, 'state');
  fs.mkdirSync(state);
  const file = path.join(state, 'journal.db');
  const w = writeSchema3(file, 20_000, 'LockRefused');
  const d = await new TestDaemon({ stateDir: state, lockspace: path.join(dir, 'ls'), hostId: 'hv-a', env: { VMLOCKD_TEST_DISK_NAMES_DELAY_MS: '0' } }).start();
  try {
    assert.is(d.cli(['status']).code, 0);
    await until('the backfill completes', () => {
      const r = Journal.open(file, { host: 'hv-a', readonly: true });
      try {
        return r.schemaVersion === 4 && pending(r) === 0;
      } finally {
        r.close();
      }
    }, 120_000);
    const r = Journal.open(file, { host: 'hv-a', readonly: true });
    try {
      answersTruly(r, w, 'after the daemon backfilled');
      assert.is(r.db.prepare(`SELECT count(*) FROM disk_names`).pluck().get(), new Set([...w.identities.entries()].flatMap(([k, ds]) => [...ds].map((x) => `${k} ${x}`))).size + [...w.leases.values()].reduce((n, s) => n + s.size, 0));
    } finally {
      r.close();
    }
    const verify = cli(['journal', 'verify', '--state-dir', state]);
    assert.is(verify.code, 0, verify.stdout + verify.stderr);
  } finally {
    await d.kill('SIGKILL');
  }
});

test.run();
