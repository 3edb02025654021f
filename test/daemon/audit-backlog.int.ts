// Review24d (LOW): the first GET /v1/audit after a long lock held elsewhere on journal.db moved the
// whole staged backlog into SQLite on the event loop (30,000 facts: 519 ms with nothing else running;
// ~1.9-2.1 s on a loaded 2-core machine, every status waiting behind it). A read inside nonBlocking now
// moves at most one batch there: a larger backlog answers 503 VMLOCKD_ERR_JOURNAL_BUSY (try again)
// while the writer thread moves it in batches. The backlog is made by a real second SQLite connection
// holding the write lock; the move's retry timer (VMLOCKD_JOURNAL_FLUSH_MS) is set far off, so nothing
// but the audit's request moves it once the lock is free.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { MAIN, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { waitFor } from '../helpers/published.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});

const N = 1500;
const uuid = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;

test('a backlog of staged facts larger than one batch: GET /v1/audit answers 503 VMLOCKD_ERR_JOURNAL_BUSY instead of moving it on the event loop, the writer thread moves it, and the audit then finds every fact', async () => {
  const root = tmpdir('vmlockd-audit-backlog-');
  fs.mkdirSync(path.join(root, 'img'));
  const d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'ls'), hostId: 'h1', extra: ['--publish', '0'], env: { VMLOCKD_JOURNAL_FLUSH_MS: '600000' } });
  running.push(d);
  // The writer thread opens its connection after the start (no signal for it outside the process).
  await new Promise((r) => setTimeout(r, 2000));
  const lines: string[] = [];
  for (let i = 0; i < N; i++) {
    const disk = path.join(root, 'img', `d${i}`);
    fs.writeFileSync(disk, '');
    lines.push(JSON.stringify({ type: 'started', vm: { uuid: uuid(i), name: `vm${i}` }, disks: [{ path: disk }] }));
  }
  for (let i = 0; i < N; i++) lines.push(JSON.stringify({ type: 'stopped', vm: { uuid: uuid(i) } }));
  // Another process holds journal.db's write lock while the facts come: they stay staged.
  const other = new Database(path.join(root, 'state', 'journal.db'));
  other.exec('BEGIN IMMEDIATE');
  try {
    const r = spawnSync(process.execPath, [MAIN, 'ingest', '-', '--socket', d.socket], { input: lines.join('\n') + '\n', encoding: 'utf8', maxBuffer: 1 << 26 });
    assert.is(r.status, 0, r.stderr);
    // The writer thread's batch gives up after the busy timeout (5 s); its retry waits for the
    // move timer (VMLOCKD_JOURNAL_FLUSH_MS), so nothing moves by itself once the lock is free.
    await new Promise((res) => setTimeout(res, 7000));
  } finally {
    other.exec('COMMIT');
    other.close();
  }
  const st = (await call(d.socket, 'GET', '/v1/status')).body as { lastSeq: number; journalMovedSeq: number };
  assert.ok(st.lastSeq - st.journalMovedSeq >= 2 * N, `the facts are not staged: ${JSON.stringify(st)}`);

  // Before: 200 at once, the whole backlog moved on the event loop first.
  const first = await call(d.socket, 'GET', '/v1/audit?limit=1');
  assert.is(first.status, 503, JSON.stringify(first.body));
  assert.is((first.body as { code: string }).code, 'VMLOCKD_ERR_JOURNAL_BUSY');
  assert.match((first.body as { message: string }).message, /acknowledged facts are still moving into it/);
  const answered = await waitFor('the audit answered once the backlog moved', async () => {
    const a = await call(d.socket, 'GET', `/v1/audit?kind=LockAcquired&limit=${2 * N}`);
    return a.status === 200 ? a : false;
  }, 60_000);
  assert.is((answered.body as unknown[]).length, N);
});

test.run();
