// Deferred appends (journal_sync = "fdatasync", the daemon's default): the fdatasync runs on libuv's
// thread pool while the event loop goes on, one at a time, each covering every append written before
// it started; rows become facts (readable, moved into SQLite) only when their sync ends, and a failed
// sync cuts off everything written since the last good one (docs/decisions/0017).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal, stageFileOf } from '../../src/journal/journal.js';

const dirs: string[] = [];
const open: Journal[] = [];
function journal(): { j: Journal; file: string; syncs: () => number } {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-deferred-'));
  dirs.push(dir);
  const file = join(dir, 'journal.db');
  const j = Journal.open(file, { host: 'h', staged: { flushMs: 3_600_000, sync: true } });
  open.push(j);
  let n = 0;
  j.onStageSync = () => n++;
  return { j, file, syncs: () => n };
}
test.after.each(() => {
  for (const j of open.splice(0)) {
    try {
      j.close();
    } catch {
      // a test that broke the staging file on purpose
    }
  }
});
test.after(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const at = (i: number) => new Date(Date.parse('2026-11-30T10:00:00.000Z') + i).toISOString();
const row = (i: number) => ({ kind: 'LockAcquired', at: at(i), disk: `/d/${i}`, owner: `vm-${i}`, ownerName: `name-${i}`, payload: { i } });
const seqs = (j: Journal) => [...j.readAfter(0)].map((f) => f.seq);
const durable = (j: Journal) => new Promise<Error | null>((resolve) => j.whenDurable(resolve));

test('a deferred append is written at once but is a fact only once its sync ends, and the callback comes from the thread pool, not at once', async () => {
  const { j, file } = journal();
  const r = j.appendDeferred([row(1), row(2)]);
  assert.is(r.durable, false);
  assert.equal(r.rows.map((f) => f.seq), [1, 2]);
  assert.match(readFileSync(stageFileOf(file), 'utf8'), '"LockAcquired"');
  let called = false;
  const done = new Promise<Error | null>((resolve) =>
    j.whenDurable((e) => {
      called = true;
      resolve(e);
    }),
  );
  assert.is(called, false, 'whenDurable called back before any sync could run');
  assert.equal(seqs(j), [], 'an unsynced row is not readable');
  assert.is(j.lastSeq(), 0);
  assert.is(await done, null);
  assert.equal(seqs(j), [1, 2]);
  assert.is(j.lastSeq(), 2);
});

test('appends written while no sync runs share the next one: five appends, then their five waits, cost one fdatasync', async () => {
  const { j, syncs } = journal();
  for (let i = 1; i <= 5; i++) j.appendDeferred([row(i)]);
  const all = await Promise.all([1, 2, 3, 4, 5].map(() => durable(j)));
  assert.equal(all, [null, null, null, null, null]);
  assert.is(syncs(), 1);
  assert.equal(seqs(j), [1, 2, 3, 4, 5]);
});

test('appends written while a sync runs wait for the next one, which covers all of them (group commit across turns)', async () => {
  const { j, syncs } = journal();
  j.appendDeferred([row(1)]);
  const first = durable(j); // starts a sync covering fact 1 only
  const later: Promise<Error | null>[] = [];
  for (let i = 2; i <= 6; i++) {
    j.appendDeferred([row(i)]);
    later.push(durable(j));
  }
  assert.is(await first, null);
  assert.equal(await Promise.all(later), [null, null, null, null, null]);
  assert.is(syncs(), 2);
  assert.equal(seqs(j), [1, 2, 3, 4, 5, 6]);
});

test('syncNow makes every deferred append durable on the spot and answers its waiters before it returns; append() does the same', () => {
  const { j } = journal();
  j.appendDeferred([row(1)]);
  const order: string[] = [];
  j.whenDurable((e) => order.push(`first ${e}`));
  j.syncNow();
  order.push('returned');
  assert.equal(order, ['first null', 'returned']);
  j.appendDeferred([row(2)]);
  j.whenDurable((e) => order.push(`second ${e}`));
  j.append([row(3)]);
  order.push('append returned');
  assert.equal(order, ['first null', 'returned', 'second null', 'append returned']);
  assert.equal(seqs(j), [1, 2, 3]);
});

test('a failed sync cuts off everything written since the last good one: its waiters get the error, the rows never become facts, and the chain continues from the last durable fact', async () => {
  const { j, file } = journal();
  j.append([row(1)]);
  const st = (j as unknown as { stage: { fd: number } }).stage;
  const fd = st.fd;
  j.appendDeferred([row(2)]);
  j.appendDeferred([row(3)]);
  // The descriptor goes bad under the sync (EBADF): the same path as EIO or EROFS from the disk.
  (st as { fd: number }).fd = 1_000_000;
  const errs = await Promise.all([durable(j), durable(j)]);
  (st as { fd: number }).fd = fd;
  assert.ok(errs[0] instanceof Error && errs[1] instanceof Error, 'both waiters told');
  assert.match(errs[0]!.message, 'staging file');
  assert.ok(j.health().stage !== null, 'health names the failing staging file');
  assert.equal(seqs(j), [1]);
  // The cut could not be made on the bad descriptor: the next append makes it first.
  const [f] = j.append([row(4)]);
  assert.is(f!.seq, 2, 'the chain continues from the last durable fact');
  assert.is(j.health().stage, null);
  const lines = readFileSync(stageFileOf(file), 'utf8').trim().split('\n');
  assert.is(lines.length, 2, 'the cut-off lines are gone from the staging file');
  j.close();
  open.pop();
  const again = Journal.open(file, { host: 'h' });
  try {
    assert.equal([...again.readAfter(0)].map((x) => (x.payload as { i: number }).i), [1, 4]);
    assert.ok(again.verifyChain().ok);
  } finally {
    again.close();
  }
});

test.run();
