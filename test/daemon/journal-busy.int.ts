// Review 24b: another process holds journal.db's write lock (as `journal compact` or sqlite3 would)
// while acknowledged facts wait to move into SQLite. The daemon's event loop must not freeze: an
// audit read answers 503 VMLOCKD_ERR_JOURNAL_BUSY (try again) at once, the snapshot gives up at once
// (retried later), and lock requests and status are answered meanwhile. Decision 0021.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { UUID1, UUID2, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});

/** Far below the busy timeout (5 s) the freeze lasted, generous for a loaded 2-core machine. */
const BOUND_MS = 2000;

async function daemon(env: NodeJS.ProcessEnv = {}): Promise<{ d: TestDaemon; root: string; disk: (n: string) => string }> {
  const root = tmpdir('vmlockd-journal-busy-');
  const d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'ls'), hostId: 'h1', env });
  running.push(d);
  const disk = (n: string) => {
    const p = path.join(root, n);
    fs.writeFileSync(p, '');
    return p;
  };
  // The writer thread opens its connection after the start (no signal for it outside the process).
  await new Promise((r) => setTimeout(r, 2000));
  return { d, root, disk };
}

/** The worst /v1/status round trip while `busy` runs, polled every 50 ms. */
async function worstStatus(socket: string, busy: Promise<unknown>): Promise<number> {
  let worst = 0;
  let done = false;
  void busy.finally(() => (done = true));
  while (!done) {
    const t0 = Date.now();
    await call(socket, 'GET', '/v1/status');
    worst = Math.max(worst, Date.now() - t0);
    await new Promise((r) => setTimeout(r, 50));
  }
  return worst;
}

for (const thread of ['1', '0']) {
  test(`VMLOCKD_JOURNAL_THREAD=${thread}: an audit read while journal.db is write-locked elsewhere answers 503 VMLOCKD_ERR_JOURNAL_BUSY at once; status and lock requests are not held up; the fact is there once the lock is free`, async () => {
    const { d, root, disk } = await daemon({ VMLOCKD_JOURNAL_THREAD: thread });
    const other = new Database(path.join(root, 'state', 'journal.db'));
    other.exec('BEGIN IMMEDIATE');
    let audit: { ms: number; status: number; body: unknown };
    let worst: number;
    try {
      assert.is((await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: UUID1 }, disks: [{ path: disk('a.img') }] })).status, 200);
      await new Promise((r) => setTimeout(r, 300)); // the move is under way (thread) or failed once (main thread)
      const t0 = Date.now();
      const a = call(d.socket, 'GET', '/v1/audit?limit=1').then((r) => ({ ms: Date.now() - t0, status: r.status, body: r.body }));
      worst = await worstStatus(d.socket, a);
      audit = await a;
      // A lock request is answered while the journal stays locked (its facts are staged and synced).
      const t1 = Date.now();
      assert.is((await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: UUID2 }, disks: [{ path: disk('b.img') }] })).status, 200);
      assert.ok(Date.now() - t1 < BOUND_MS, `an acquire waited ${Date.now() - t1} ms`);
    } finally {
      other.exec('COMMIT');
      other.close();
    }
    assert.is(audit.status, 503, JSON.stringify(audit.body));
    assert.is((audit.body as { code: string }).code, 'VMLOCKD_ERR_JOURNAL_BUSY');
    assert.ok(audit.ms < BOUND_MS, `the audit read took ${audit.ms} ms`);
    assert.ok(worst < BOUND_MS, `a status waited ${worst} ms behind the audit read`);
    await until('the audit read to find both grants once the lock is free', async () => {
      const r = await call(d.socket, 'GET', '/v1/audit?kind=LockAcquired');
      return r.status === 200 && (r.body as unknown[]).length === 2;
    }, 30_000);
  });
}

test('with the writer thread, snapshots while journal.db is write-locked elsewhere do not freeze the event loop', async () => {
  const { d, root, disk } = await daemon({ VMLOCKD_SNAPSHOT_EVERY: '5' });
  const other = new Database(path.join(root, 'state', 'journal.db'));
  other.exec('BEGIN IMMEDIATE');
  let worst: number;
  try {
    const a = disk('a.img');
    for (let i = 0; i < 3; i++) {
      assert.is((await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: UUID1 }, disks: [{ path: a }] })).status, 200);
      assert.is((await call(d.socket, 'POST', '/v1/release', { vm: { uuid: UUID1 } })).status, 200);
    }
    // The snapshot is due (5 facts) and retried every 5 s while the lock is held: two tries at least.
    worst = await worstStatus(d.socket, new Promise((r) => setTimeout(r, 11_000)));
  } finally {
    other.exec('COMMIT');
    other.close();
  }
  assert.ok(worst < BOUND_MS, `a status waited ${worst} ms (a snapshot waited for the lock)`);
  await until('a snapshot written once the lock is free', () => /snapshot not written/.test(d.stdout + d.stderr), 30_000);
});

test.run();
