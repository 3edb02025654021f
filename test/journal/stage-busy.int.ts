// Review 24b: with the staged journal's SQLite writer thread (decision 0021), a nonBlocking read or
// snapshot while another process holds SQLite's write lock must not block the caller's event loop for
// the thread's busy wait (settle) nor its own: the batch in flight gives up at once, a query answers
// VMLOCKD_ERR_JOURNAL_BUSY (try again), a snapshot fails as busy (retried later); no fact is lost.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { Journal } from '../../src/journal/journal.js';
import { JournalError } from '../../src/journal/errors.js';
import { until } from '../helpers/daemon.js';
import { journalFiles } from '../helpers/journal-files.js';

const { tempFile, track } = journalFiles(test, 'vmlockd-stage-busy-');
const at = (i: number) => new Date(Date.parse('2026-11-25T10:00:00.000Z') + i).toISOString();
const row = (i: number) => ({ kind: 'LockAcquired', at: at(i), disk: `/d/${i}`, owner: `vm-${i % 5}`, ownerName: `name-${i % 5}`, payload: { i } });

/** A blocked call's time; generous for a loaded 2-core machine, far below the 5 s busy timeout. */
const BOUND_MS = 1500;

async function lockedWithPending(thread: boolean): Promise<{ j: Journal; file: string; other: Database.Database }> {
  const file = tempFile();
  const j = track(Journal.open(file, { host: 'h', staged: { thread, sync: true, flushMs: 1 } }));
  if (thread) await until('writer thread ready', () => j.movesOnThread, 30_000);
  j.append([row(0)]);
  await until('first fact moved', () => j.pendingCount === 0, 20_000);
  const other = new Database(file);
  other.exec('BEGIN IMMEDIATE');
  for (let i = 1; i <= 20; i++) j.append([row(i)]);
  await new Promise((r) => setTimeout(r, 300)); // the batch is on the thread, waiting for the lock
  return { j, file, other };
}

function timed(fn: () => unknown): { ms: number; error: unknown } {
  const t0 = Date.now();
  let error: unknown = null;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  return { ms: Date.now() - t0, error };
}

for (const thread of [true, false]) {
  test(`thread=${thread}: a nonBlocking query while another process holds the write lock answers VMLOCKD_ERR_JOURNAL_BUSY at once, and finds every fact once the lock is free`, async () => {
    const { j, other } = await lockedWithPending(thread);
    let r: { ms: number; error: unknown };
    try {
      r = timed(() => j.nonBlocking(() => j.query({ limit: 1 })));
    } finally {
      other.exec('COMMIT');
      other.close();
    }
    assert.ok(r.error instanceof JournalError, `expected an error, got ${String(r.error)}`);
    assert.is((r.error as JournalError).code, 'VMLOCKD_ERR_JOURNAL_BUSY');
    assert.match((r.error as Error).message, /try again/);
    assert.ok(r.ms < BOUND_MS, `the query blocked ${r.ms} ms`);
    await until('the facts to move after the lock is free', () => j.pendingCount === 0, 30_000);
    assert.equal(j.query({}).map((f) => f.seq), Array.from({ length: 21 }, (_, i) => i + 1));
    assert.is(j.verifyChain().ok, true);
  });
}

test('given the writer thread, a snapshot inside nonBlocking while another process holds the write lock fails as busy at once (retried later), and succeeds once the lock is free', async () => {
  const { j, other } = await lockedWithPending(true);
  let r: { ms: number; error: unknown };
  try {
    r = timed(() => j.nonBlocking(() => j.writeSnapshot(j.lastSeq(), { x: 1 })));
  } finally {
    other.exec('COMMIT');
    other.close();
  }
  assert.ok(r.error instanceof JournalError, `expected an error, got ${String(r.error)}`);
  assert.match((r.error as Error).message, /SQLITE_BUSY/);
  assert.ok(r.ms < BOUND_MS, `the snapshot blocked ${r.ms} ms`);
  await until('the snapshot to be written once the lock is free', () => {
    try {
      j.nonBlocking(() => j.writeSnapshot(21, { x: 1 }));
      return true;
    } catch {
      return false;
    }
  }, 30_000);
  assert.is(j.latestSnapshot()?.seq, 21);
});

test('given the writer thread dies while a blocking read waits for its batch, the read notices (not after the 15 s answer timeout), and the main thread moves the facts itself', async () => {
  process.env.VMLOCKD_TEST_MOVER_DIE_ON_BUSY = '1000'; // the worker copies the environment when it starts
  let locked: Awaited<ReturnType<typeof lockedWithPending>>;
  try {
    locked = await lockedWithPending(true);
  } finally {
    delete process.env.VMLOCKD_TEST_MOVER_DIE_ON_BUSY;
  }
  const { j, other } = locked;
  let r: { ms: number; error: unknown };
  try {
    // Blocking: the thread dies ~1 s into its wait, then the main thread's own move waits out the
    // busy timeout (5 s) and the read goes on without the facts. Before: 15 s for the thread first.
    r = timed(() => j.query({ limit: 1 }));
  } finally {
    other.exec('COMMIT');
    other.close();
  }
  assert.is(r.error, null);
  assert.ok(r.ms < 10_000, `the read blocked ${r.ms} ms on a dead thread`);
  assert.is(j.movesOnThread, false);
  await until('the facts to move on the main thread', () => j.pendingCount === 0, 30_000);
  assert.equal(j.query({}).map((f) => f.seq), Array.from({ length: 21 }, (_, i) => i + 1));
  assert.is(j.verifyChain().ok, true);
});

test.run();
