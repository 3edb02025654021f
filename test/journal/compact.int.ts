import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Journal, JournalError } from '../../src/journal/journal.js';
import { journalFiles } from '../helpers/journal-files.js';
import { F, T, VM, rows } from '../helpers/lock-facts.js';

const HOLDS = { open: ['LockAcquired', 'Reacquired'], close: ['LockReleased', 'LeaseLost'] };
const { tempDir, track } = journalFiles(test, 'vmlockd-compact-');
function openJournal(file: string, opts: { host?: string; readonly?: boolean; archive?: boolean } = {}): Journal {
  return track(Journal.open(file, { host: opts.host ?? 'host-a', readonly: opts.readonly ?? false, ...(opts.archive ? { archive: true } : {}) }));
}

function throwsCode(fn: () => unknown, code: string, part: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, JournalError, String(e));
    assert.is((e as JournalError).code, code, (e as Error).message);
    assert.match((e as Error).message, part);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

/** Nine facts: alpha holds d1 throughout (re-taken at a restart), beta and gamma share d2 for a while, beta takes d3. */
function seed(j: Journal): void {
  j.append(
    rows([
      F.acquired(T(0), VM.alpha, '/d/1', 'exclusive', 1),
      F.acquired(T(1), VM.beta, '/d/2', 'shared'),
      F.acquired(T(2), VM.gamma, '/d/2', 'shared'),
      F.released(T(3), VM.beta, '/d/2'),
      F.other(T(4)),
      F.reacquired(T(5), VM.alpha, '/d/1', 'exclusive', 2),
      F.refused(T(6), VM.beta, '/d/1', { host: 'host-a', owner: VM.alpha, mode: 'exclusive', generation: 2 }),
      F.released(T(7), VM.gamma, '/d/2'),
      F.acquired(T(8), VM.beta, '/d/3'),
    ]),
  );
}

const seqs = (facts: Array<{ seq: number }>) => facts.map((f) => f.seq);

test('given no snapshot at or past the cut, when compacting, then it is refused and nothing moves', () => {
  const dir = tempDir();
  const j = openJournal(join(dir, 'journal.db'));
  seed(j);
  j.writeSnapshot(3, { s: 3 });
  const archive = join(dir, 'journal-archive.db');
  throwsCode(() => j.compact({ throughSeq: 6, archive, holds: HOLDS }), 'VMLOCKD_ERR_BAD_INPUT', /needs a snapshot at seq 6 or later first \(newest is 3\)/);
  assert.not.ok(existsSync(archive), 'no archive is created for a refused compaction');
  assert.is(j.firstSeq(), 1);
  throwsCode(() => j.compact({ throughSeq: 10, archive, holds: HOLDS }), 'VMLOCKD_ERR_BAD_INPUT', /beyond the last fact seq 9/);
});

test('given a snapshot past the cut, when compacting twice, then the archive holds the moved facts, open holds are carried and both chains verify', () => {
  const dir = tempDir();
  const file = join(dir, 'journal.db');
  const archiveFile = join(dir, 'journal-archive.db');
  const j = openJournal(file);
  seed(j);
  j.writeSnapshot(9, { s: 9 });
  const before = new Database(file, { readonly: true });
  const hashes = before.prepare('SELECT seq, hash FROM facts ORDER BY seq').all() as Array<{ seq: number; hash: Buffer }>;
  before.close();

  assert.is(j.compactionCut(T(6)), 6, 'every fact before the first at >= T(6)');
  const r = j.compact({ throughSeq: 6, archive: archiveFile, holds: HOLDS });
  assert.equal(r, { archive: archiveFile, moved: 6, deleted: 6, carried: 3, throughSeq: 6, firstLiveSeq: 7 });
  assert.equal(seqs([...j.readAfter(0)]), [7, 8, 9]);
  assert.is(j.archivedThrough(), 6);
  // alpha's grant and its re-take (d1 still held), gamma's shared grant (d2 still held); beta's released d2 is gone.
  assert.equal(seqs(j.carried()), [1, 3, 6]);
  assert.equal(seqs(j.carried({ disk: '/d/2' })), [3]);

  const a = openJournal(archiveFile, { readonly: true });
  assert.equal(seqs([...a.readAfter(0)]), [1, 2, 3, 4, 5, 6]);
  const raw = new Database(archiveFile, { readonly: true });
  const moved = raw.prepare('SELECT seq, hash FROM facts ORDER BY seq').all() as Array<{ seq: number; hash: Buffer }>;
  raw.close();
  assert.equal(moved.map((m) => m.hash.toString('hex')), hashes.slice(0, 6).map((h) => h.hash.toString('hex')), 'rows move with their hashes');
  assert.is(a.verifyChain().ok, true);
  const live = j.verifyChain();
  assert.is(live.ok, true, live.problems.join('\n'));
  assert.equal(live.base, { seq: 6, hash: hashes[5]!.hash.toString('hex') }, 'the live chain continues from the last archived hash');
  assert.ok(j.integrity().ok, JSON.stringify(j.integrity()));

  // Facts not archived are still append-only.
  const w = new Database(file);
  try {
    assert.throws(() => w.prepare('DELETE FROM facts WHERE seq = 8').run(), /append-only: DELETE/);
    assert.throws(() => w.prepare(`UPDATE facts SET kind = 'X' WHERE seq = 8`).run(), /append-only: UPDATE/);
  } finally {
    w.close();
  }

  j.append(rows([F.other(T(9))]));
  j.writeSnapshot(10, { s: 10 });
  const all = j.compact({ throughSeq: 10, archive: archiveFile, holds: HOLDS });
  assert.equal(all, { archive: archiveFile, moved: 4, deleted: 4, carried: 3, throughSeq: 10, firstLiveSeq: 0 });
  assert.equal(seqs(j.carried()), [1, 6, 9], 'gamma released d2 in the second range; beta took d3');
  assert.is(j.lastSeq(), 10, 'an emptied journal still knows where its seqs stand');
  assert.equal(j.append(rows([F.other(T(10))])).map((f) => f.seq), [11], 'numbering continues past the archive');
  assert.is(j.verifyChain().ok, true);
  assert.ok(j.integrity().ok, JSON.stringify(j.integrity()));
  assert.equal(seqs([...a.readAfter(0)]), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.is(a.verifyChain().head.hash, j.chainBase().hash.toString('hex'));

  assert.equal(j.compact({ throughSeq: 10, archive: archiveFile, holds: HOLDS }).moved, 0, 'compacting again is a no-op');
});

test('given a crash after the copy and before the deletes, when compaction runs again, then it deletes what the archive already has', () => {
  const dir = tempDir();
  const file = join(dir, 'journal.db');
  const archiveFile = join(dir, 'journal-archive.db');
  const j = openJournal(file);
  seed(j);
  j.writeSnapshot(9, { s: 9 });
  j.close();
  const crashed = join(dir, 'crashed.db');
  // The journal as it was before compaction, beside the archive as it is after the copy.
  copyFileSync(file, crashed);
  const done = openJournal(file);
  done.compact({ throughSeq: 6, archive: archiveFile, holds: HOLDS });
  done.close();

  const again = openJournal(crashed);
  const r = again.compact({ throughSeq: 6, archive: archiveFile, holds: HOLDS });
  assert.is(r.moved, 0);
  assert.is(r.deleted, 6);
  assert.equal(seqs(again.carried()), [1, 3, 6]);
  assert.is(again.verifyChain().ok, true);
});

test('given another journal\'s archive, when compacting into it, then it is refused', () => {
  const dir = tempDir();
  const one = openJournal(join(dir, 'one.db'));
  seed(one);
  one.writeSnapshot(9, {});
  one.compact({ throughSeq: 6, archive: join(dir, 'archive.db'), holds: HOLDS });
  const two = openJournal(join(dir, 'two.db'), { host: 'host-b' });
  two.append(rows([F.other(T(0)), F.other(T(1))]));
  two.writeSnapshot(2, {});
  throwsCode(() => two.compact({ throughSeq: 2, archive: join(dir, 'archive.db'), holds: HOLDS }), 'VMLOCKD_ERR_BAD_INPUT', /does not continue/);
  throwsCode(() => Journal.open(join(dir, 'archive.db'), { host: 'h' }), 'VMLOCKD_ERR_JOURNAL_NOT_OURS', /archive/);
  throwsCode(() => Journal.open(join(dir, 'one.db'), { host: 'h', archive: true }), 'VMLOCKD_ERR_JOURNAL_NOT_OURS', /live vmlockd journal, not an archive/);
});

test('given a backdated fact, when cutting at a time, then only the prefix before the first newer fact moves', () => {
  const j = openJournal(join(tempDir(), 'journal.db'));
  j.append(rows([F.other(T(1)), F.other(T(5)), F.other(T(2)), F.other(T(6))]));
  assert.is(j.compactionCut(T(0)), 0);
  assert.is(j.compactionCut(T(3)), 1, 'seq 3 is older than T(3) but follows seq 2, which is not');
  assert.is(j.compactionCut(T(6)), 3);
  assert.is(j.compactionCut(T(7)), 4);
});

test.run();
