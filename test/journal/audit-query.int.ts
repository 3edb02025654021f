import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLOSE_KINDS, CONFLICT_KINDS, DISK_KINDS, LOCK_KINDS, OPEN_KINDS, holdersAnswer, holdersAt, queryFacts, timeline } from '../../src/cli/audit-query.js';
import { fact } from '../../src/engine/facts.js';
import { Journal } from '../../src/journal/journal.js';
import { F, T, VM, rows } from '../helpers/lock-facts.js';

const dirs: string[] = [];
const open: Journal[] = [];
function journalIn(dir: string, name = 'journal.db', readonly = false): Journal {
  const j = Journal.open(join(dir, name), { host: 'host-a', readonly });
  open.push(j);
  return j;
}
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vmlockd-audit-'));
  dirs.push(d);
  return d;
}
test.after.each(() => {
  for (const j of open.splice(0)) j.close();
});
test.after(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const who = (list: ReadonlyArray<ReturnType<typeof holdersAt>[number]>) => list.map((h) => `${h.owner.name}:${h.mode}:${h.since}:${h.generation ?? '-'}:${h.via}`);

test('given an exclusive disk passed from one VM to another, when asked who held it at moments, then the fact before each moment decides', () => {
  const j = journalIn(tempDir());
  j.append(rows([F.acquired(T(1), VM.alpha, '/d/1', 'exclusive', 1), F.released(T(3), VM.alpha, '/d/1'), F.acquired(T(4), VM.beta, '/d/1', 'exclusive', 2)]));
  const src = { live: j };
  assert.equal(who(holdersAt(src, '/d/1', T(0))), [], 'before anyone');
  assert.equal(who(holdersAt(src, '/d/1', T(1))), [`alpha:exclusive:${T(1)}:1:LockAcquired`], 'the moment of the grant counts');
  assert.equal(who(holdersAt(src, '/d/1', T(2))), [`alpha:exclusive:${T(1)}:1:LockAcquired`]);
  assert.equal(who(holdersAt(src, '/d/1', T(3, 30))), [], 'between release and the next grant');
  assert.equal(who(holdersAt(src, '/d/1', T(9))), [`beta:exclusive:${T(4)}:2:LockAcquired`]);
  assert.equal(holdersAt(src, '/d/1', T(9))[0]!.host, 'host-a');
});

test('given re-takes, a lost lease and shared holders, when asked, then each re-take opens a new hold with its mode and generation', () => {
  const j = journalIn(tempDir());
  j.append(
    rows([
      F.acquired(T(1), VM.alpha, '/d/1', 'exclusive', 1),
      F.reacquired(T(5), VM.alpha, '/d/1', 'exclusive', 2),
      F.reacquired(T(8), VM.alpha, '/d/1', 'exclusive', 3),
      F.acquired(T(2), VM.beta, '/d/2', 'shared'),
      F.acquired(T(3), VM.gamma, '/d/2', 'shared'),
      F.lost(T(6), VM.gamma, '/d/2', { host: 'host-b', mode: 'exclusive' }),
      F.reacquired(T(7), VM.gamma, '/d/2', 'shared'),
      F.released(T(9), VM.beta, '/d/2'),
    ]),
  );
  const src = { live: j };
  // The kernel dropped the lock before each re-take: a re-take is a new hold (issue 18.1).
  assert.equal(who(holdersAt(src, '/d/1', T(9))), [`alpha:exclusive:${T(8)}:3:Reacquired`]);
  assert.equal(who(holdersAt(src, '/d/1', T(6))), [`alpha:exclusive:${T(5)}:2:Reacquired`]);
  assert.equal(who(holdersAt(src, '/d/1', T(4))), [`alpha:exclusive:${T(1)}:1:LockAcquired`]);
  assert.equal(who(holdersAt(src, '/d/2', T(4))), [`beta:shared:${T(2)}:-:LockAcquired`, `gamma:shared:${T(3)}:-:LockAcquired`]);
  assert.equal(who(holdersAt(src, '/d/2', T(6, 30))), [`beta:shared:${T(2)}:-:LockAcquired`], 'the lost lease ends gamma\'s hold');
  assert.equal(who(holdersAt(src, '/d/2', T(7))), [`beta:shared:${T(2)}:-:LockAcquired`, `gamma:shared:${T(7)}:-:Reacquired`], 'a re-take after a loss starts a new hold');
  assert.equal(who(holdersAt(src, '/d/2', T(10))), [`gamma:shared:${T(7)}:-:Reacquired`]);
});

test('given a shared disk and a daemon crash, when asked, then holds end at the crash and the re-takes open new ones', () => {
  const j = journalIn(tempDir());
  j.append(
    rows([
      F.acquired(T(1), VM.beta, '/d/s', 'shared'),
      F.acquired(T(2), VM.gamma, '/d/s', 'shared'),
      F.acquired(T(2, 30), VM.alpha, '/d/other'),
      F.other(T(5)),
      // The restarted daemon re-took beta's hold only: gamma's grant was not in its state any more.
      F.reacquired(T(5), VM.beta, '/d/s', 'shared'),
      F.reacquired(T(5), VM.alpha, '/d/other', 'exclusive', 4),
      F.acquired(T(6), VM.alpha, '/d/s', 'shared'),
    ]),
  );
  const src = { live: j };
  assert.equal(who(holdersAt(src, '/d/s', T(7))), [`beta:shared:${T(5)}:-:Reacquired`, `alpha:shared:${T(6)}:-:LockAcquired`]);
  assert.equal(who(holdersAt(src, '/d/s', T(2, 30))), [`beta:shared:${T(1)}:-:LockAcquired`, `gamma:shared:${T(2)}:-:LockAcquired`], 'up to the run\'s last fact, the old grants answer');
  // No DaemonStopped before the start: the run crashed after its last fact (T 2:30) and before T 5.
  const gap = holdersAnswer(src, '/d/s', T(3));
  assert.equal(who(gap.holders), [], 'in the crash window nobody surely held it');
  assert.equal(gap.crash && { after: gap.crash.after, before: gap.crash.before, holds: who(gap.crash.holds) }, {
    after: T(2, 30),
    before: T(5),
    holds: [`beta:shared:${T(1)}:-:LockAcquired`, `gamma:shared:${T(2)}:-:LockAcquired`],
  });
  assert.equal(who(holdersAt(src, '/d/other', T(7))), [`alpha:exclusive:${T(5)}:4:Reacquired`]);
  const t = timeline(src, '/d/s', T(0), T(9));
  assert.equal(
    t.intervals.map((i) => [i.owner.name, i.from, i.to ?? 'open', i.end ?? '-', i.crashBefore ?? '-']),
    [
      ['beta', T(1), T(2, 30), 'crash', T(5)],
      ['gamma', T(2), T(2, 30), 'crash', T(5)],
      ['beta', T(5), 'open', '-', '-'],
      ['alpha', T(6), 'open', '-', '-'],
    ],
  );
});

test('given a compacted journal, when asked about the present without the archive, then carried facts still name the holder; with the archive, history before the cut answers too', () => {
  const dir = tempDir();
  const j = journalIn(dir);
  j.append(
    rows([
      F.acquired(T(1), VM.alpha, '/d/1', 'exclusive', 1),
      F.acquired(T(2), VM.beta, '/d/2'),
      F.released(T(3), VM.beta, '/d/2'),
      F.refused(T(4), VM.beta, '/d/1', { host: 'host-a', owner: VM.alpha, mode: 'exclusive' }),
      F.acquired(T(5), VM.gamma, '/d/3'),
    ]),
  );
  j.writeSnapshot(5, {});
  j.compact({ throughSeq: j.compactionCut(T(5)), archive: join(dir, 'journal-archive.db'), holds: { open: OPEN_KINDS, close: CLOSE_KINDS } });
  assert.equal([...j.readAfter(0)].map((f) => f.seq), [5]);
  const live = { live: j };
  assert.equal(who(holdersAt(live, '/d/1', T(9))), [`alpha:exclusive:${T(1)}:1:LockAcquired`]);
  assert.equal(who(holdersAt(live, '/d/2', T(2, 30))), [], 'history before the cut needs the archive');
  assert.equal(queryFacts(live, { disk: '/d/1' }).length, 0);

  const both = { live: j, archive: journalIn(dir, 'journal-archive.db', true) };
  assert.equal(who(holdersAt(both, '/d/2', T(2, 30))), [`beta:exclusive:${T(2)}:-:LockAcquired`]);
  assert.equal(who(holdersAt(both, '/d/1', T(9))), [`alpha:exclusive:${T(1)}:1:LockAcquired`]);
  assert.equal(queryFacts(both, { disk: '/d/1' }).map((f) => f.kind), ['LockAcquired', 'LockRefused']);
  assert.equal(queryFacts(both, { kinds: [...CONFLICT_KINDS] }).map((f) => f.seq), [4]);
  assert.equal(queryFacts(both, { limit: 2, newest: true }).map((f) => f.seq), [4, 5], 'the newest across both files');
});

test('given a disk handed around, when its timeline is drawn, then each hold is one interval and refusals are events', () => {
  const j = journalIn(tempDir());
  j.append(
    rows([
      F.acquired(T(1), VM.alpha, '/d/1', 'exclusive', 1),
      F.refused(T(2), VM.beta, '/d/1', { host: 'host-a', owner: VM.alpha }),
      F.reacquired(T(3), VM.alpha, '/d/1', 'exclusive', 2),
      F.released(T(4), VM.alpha, '/d/1'),
      F.acquired(T(5), VM.beta, '/d/1', 'exclusive', 3),
    ]),
  );
  const t = timeline({ live: j }, '/d/1', T(2), T(9));
  assert.equal(
    t.intervals.map((i) => [i.owner.name, i.mode, i.from, i.to ?? 'open', i.generation]),
    [
      ['alpha', 'exclusive', T(1), T(3), 1],
      ['alpha', 'exclusive', T(3), T(4), 2],
      ['beta', 'exclusive', T(5), 'open', 3],
    ],
  );
  assert.equal(t.events.map((e) => [e.kind, e.owner.name, e.other?.owner?.name]), [['LockRefused', 'beta', 'alpha']]);
});

const stopped = (at: string) => fact('DaemonStopped', at, { pid: 1, reason: 'SIGTERM', held: 1 });

test('given a clean stop, when asked between the stop and the next start, then nobody held the disk, and the re-take opens a new hold', () => {
  const j = journalIn(tempDir());
  j.append(rows([F.acquired(T(1), VM.alpha, '/d/1', 'exclusive', 1), stopped(T(2)), F.other(T(4)), F.reacquired(T(4), VM.alpha, '/d/1', 'exclusive', 2)]));
  const src = { live: j };
  assert.equal(who(holdersAt(src, '/d/1', T(1, 30))), [`alpha:exclusive:${T(1)}:1:LockAcquired`]);
  const gap = holdersAnswer(src, '/d/1', T(3));
  assert.equal(who(gap.holders), []);
  assert.equal(gap.stopped, { at: T(2), restarted: T(4) });
  assert.equal(who(holdersAt(src, '/d/1', T(5))), [`alpha:exclusive:${T(4)}:2:Reacquired`]);
  const t = timeline(src, '/d/1', T(0), T(9));
  assert.equal(t.intervals.map((i) => [i.from, i.to ?? 'open', i.end ?? '-']), [[T(1), T(2), 'stopped'], [T(4), 'open', '-']]);
});

test('given a stopped daemon not started again, when asked now, then nobody holds the disk', () => {
  const j = journalIn(tempDir());
  j.append(rows([F.acquired(T(1), VM.alpha, '/d/1'), stopped(T(2))]));
  const a = holdersAnswer({ live: j }, '/d/1', T(30));
  assert.equal(who(a.holders), []);
  assert.equal(a.stopped, { at: T(2) });
});

test('given a crash and a LeaseLost whose other party took the disk at T3, when asked after T3, then the hold is over without doubt', () => {
  const j = journalIn(tempDir());
  j.append(
    rows([
      F.acquired(T(1), VM.alpha, '/d/1', 'exclusive', 1),
      F.acquired(T(2), VM.beta, '/d/2'),
      F.other(T(5)),
      F.lost(T(5), VM.alpha, '/d/1', { host: 'host-b', owner: VM.gamma, mode: 'exclusive', since: T(3) }),
      F.reacquired(T(5), VM.beta, '/d/2'),
    ]),
  );
  const src = { live: j };
  const early = holdersAnswer(src, '/d/1', T(2, 30));
  assert.equal(who(early.holders), []);
  assert.equal(early.crash?.holds.map((h) => [h.owner.name, h.before]), [['alpha', T(3)]], 'between the last fact and the other party\'s grant: unknown');
  const late = holdersAnswer(src, '/d/1', T(4));
  assert.equal(who(late.holders), []);
  assert.is(late.crash, undefined, 'the other party held it from T3: alpha\'s hold had ended');
  const t = timeline(src, '/d/1', T(0), T(9));
  assert.equal(t.intervals.map((i) => [i.owner.name, i.from, i.to, i.end, i.crashBefore]), [['alpha', T(1), T(2), 'crash', T(3)]]);
});

test('given a lock lost while running, when asked after the other party took it, then the LeaseLost\'s evidence ends the hold', () => {
  const j = journalIn(tempDir());
  j.append(rows([F.acquired(T(1), VM.alpha, '/d/1'), F.lost(T(6), VM.alpha, '/d/1', { host: 'host-b', owner: VM.beta, since: T(4) })]));
  const src = { live: j };
  assert.equal(who(holdersAt(src, '/d/1', T(3))), [`alpha:exclusive:${T(1)}:-:LockAcquired`]);
  assert.equal(who(holdersAt(src, '/d/1', T(5))), [], 'beta held it from T4');
  assert.equal(timeline(src, '/d/1', T(0), T(9)).intervals.map((i) => [i.from, i.to, i.end]), [[T(1), T(4), 'lost']]);
});

test('given a restart that adopted the lock (zero-gap), when asked in the gap and after, then the hold continues from its grant', () => {
  const j = journalIn(tempDir());
  const adopted = fact('Reacquired', T(4), { ...rows([F.reacquired(T(4), VM.alpha, '/d/1')])[0]!.payload as object, how: "adopted" } as never);
  j.append(rows([F.acquired(T(1), VM.alpha, '/d/1', 'exclusive', 1), stopped(T(2)), F.other(T(4)), adopted]));
  const src = { live: j };
  assert.equal(who(holdersAt(src, '/d/1', T(3))), [`alpha:exclusive:${T(1)}:1:LockAcquired`], 'the descriptor store kept the lock through the stop');
  assert.equal(who(holdersAt(src, '/d/1', T(6))), [`alpha:exclusive:${T(1)}:-:Reacquired`]);
  assert.equal(timeline(src, '/d/1', T(0), T(9)).intervals.map((i) => [i.from, i.to ?? 'open']), [[T(1), 'open']]);
});

test('given the audit questions, when planned, then each reads one index range in answer order (no scan, no sort of a whole kind)', () => {
  const j = journalIn(tempDir());
  j.append(rows([F.acquired(T(1), VM.alpha, '/d/1')]));
  const since = T(0);
  // --disk --at: newest first, stops early
  assert.match(j.iteratePlan({ disk: '/d/1', kinds: [...LOCK_KINDS], until: T(5) }, { descending: true }), /^SEARCH facts USING INDEX facts_disk_at \(disk=\? AND at<\?\)$/);
  // --disk history, newest N
  assert.match(j.queryPlan({ disk: '/d/1', kinds: [...DISK_KINDS], limit: 1000, newest: true }), /^SEARCH facts USING INDEX facts_disk_at \(disk=\?\)$/);
  // --vm: uuid or name
  assert.match(j.queryPlan({ owner: 'alpha', limit: 1000, newest: true }), /^SEARCH facts USING INDEX facts_owner_at \(owner=\?\) \| LIST SUBQUERY .*SEARCH owners USING PRIMARY KEY \(name=\?\)/);
  // --conflicts --since: one range per kind, merged
  const conflicts = j.queryPlan({ kinds: [...CONFLICT_KINDS], since, limit: 1000, newest: true });
  assert.is(conflicts.match(/SEARCH facts USING INDEX facts_kind_at \(kind=\? AND at>\?\)/g)?.length, 2, conflicts);
  assert.not.match(conflicts, /SCAN facts/);
  // --host --kind --since --until
  assert.match(j.queryPlan({ host: 'h', kinds: ['LockAcquired'], since, until: T(9), limit: 100, newest: true }), /^SEARCH facts USING INDEX facts_kind_at \(kind=\? AND at>\? AND at<\?\)$/);
  // --since alone
  assert.match(j.queryPlan({ since, limit: 100, newest: true }), /^SEARCH facts USING INDEX facts_at \(at>\?\)$/);
  // --follow: what came after the last seq seen
  assert.match(j.queryPlan({ disk: '/d/1', afterSeq: 1, untilSeq: 9 }), /^SEARCH facts USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)$/);
});

test.run();
