// Questions by time after this host's clock stepped back (decision 0029): a time maps to a place on
// the journal's order per pass of the clock. Journals written as the daemon writes them (times never
// back along seq, wallAt after a step, ClockStepped with its window); the answers come from the real
// audit projections.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { holdersAnswer, passRanges, secondPass, stepsOver, timeline, type AuditSources } from '../../src/cli/audit-query.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { formatHolders } from '../../src/cli/audit-format.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const BETA = { uuid: '22222222-2222-4222-8222-222222222222', name: 'beta' };
const GAMMA = { uuid: '33333333-3333-4333-8333-333333333333', name: 'gamma' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;

function lock(kind: 'LockAcquired' | 'LockReleased', at: string, owner: typeof ALPHA, wallAt?: string): FactRow {
  const payload = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner, mode: 'exclusive', source: 'api', ...(kind === 'LockReleased' ? { reason: 'released' } : {}), ...(wallAt ? { wallAt } : {}) };
  return { kind, at, disk: DISK, resource: RES, owner: owner.uuid, ownerName: owner.name, payload };
}
const daemon = (kind: 'DaemonStarted' | 'DaemonStopped', at: string, wallAt?: string): FactRow => ({ kind, at, payload: { pid: 1, held: 0, version: 't', lockspace: '/ls', ...(wallAt ? { wallAt } : {}) } });
const stepped = (from: string, to: string, seenBy: 'start' | 'monotonic'): FactRow => ({ kind: 'ClockStepped', at: from, payload: { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy } });

function journal(rows: FactRow[]): AuditSources {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-clock-step-')), 'journal.db'), { host: 'h' });
  j.append(rows);
  return { live: j };
}

const names = (hs: ReadonlyArray<{ owner: { name?: string } }>) => hs.map((h) => h.owner.name).join(',');

/** Under a running daemon: alpha released at 10:05, the clock set back to 10:02, beta 10:03-10:04, gamma after the clock passed 10:05 again. */
function running(): AuditSources {
  return journal([
    daemon('DaemonStarted', t('10:00:00')), // 1
    lock('LockAcquired', t('10:00:01'), ALPHA), // 2
    lock('LockReleased', t('10:05:00'), ALPHA), // 3
    stepped(t('10:05:00'), t('10:02:00'), 'monotonic'), // 4
    lock('LockAcquired', t('10:05:00'), BETA, t('10:03:00')), // 5
    lock('LockReleased', t('10:05:00'), BETA, t('10:04:00')), // 6
    lock('LockAcquired', t('10:05:30'), GAMMA), // 7
  ]);
}

test('a time maps to the steps whose window [to, from) holds it', () => {
  const src = running();
  assert.equal(stepsOver(src, t('10:04:30')).map((f) => f.seq), [4]);
  assert.equal(stepsOver(src, t('10:02:00')).map((f) => f.seq), [4], 'to is in the window');
  assert.equal(stepsOver(src, t('10:05:00')), [], 'from is not: the clock reached it once');
  assert.equal(stepsOver(src, t('10:01:59')), []);
});

test('the pass after a step: after the last fact whose clock reading is at or before the time', () => {
  const src = running();
  const [step] = stepsOver(src, t('10:04:30'));
  assert.equal(secondPass(src, step!, t('10:02:30')), { seq: 4, label: t('10:05:00') }, 'before beta: at the step');
  assert.is(secondPass(src, step!, t('10:03:00')).seq, 5, 'at beta\'s grant, inclusive');
  assert.is(secondPass(src, step!, t('10:03:30')).seq, 5);
  assert.is(secondPass(src, step!, t('10:04:59')).seq, 6);
});

test('a window by the clock: the pass after a step adds the facts whose clock reading is in it', () => {
  const src = running();
  assert.equal(passRanges(src, t('10:03:30'), t('10:04:30')), [{ afterSeq: 5, untilSeq: 6 }], 'beta\'s release, made at 10:04');
  assert.equal(passRanges(src, undefined, t('10:03:30')), [{ afterSeq: 3, untilSeq: 5 }], 'the step and beta\'s grant');
  assert.equal(passRanges(src, t('10:04:10'), t('10:04:50')), [], 'nothing was made then on the second pass');
  assert.equal(passRanges(src, t('10:00:00'), t('10:01:30')), [], 'outside the window');
});

test('--at inside the window: both passes, no holder picked, when they differ', () => {
  const src = running();
  const a = holdersAnswer(src, DISK, t('10:03:30'));
  assert.equal(a.holders, []);
  assert.equal(a.ambiguous?.steps.map((s) => [s.seq, s.from, s.to]), [[4, t('10:05:00'), t('10:02:00')]]);
  assert.equal(a.ambiguous?.readings.map((r) => [r.pass, r.asOf, names(r.holders)]), [['before', 2, 'alpha'], ['after', 5, 'beta']]);
  // After beta's release on the second pass: alpha the first time, nobody the second.
  assert.equal(holdersAnswer(src, DISK, t('10:04:30')).ambiguous?.readings.map((r) => names(r.holders)), ['alpha', '']);
  // Outside the window: one answer.
  const before = holdersAnswer(src, DISK, t('10:01:00'));
  assert.is(names(before.holders), 'alpha');
  assert.is(before.ambiguous, undefined);
  assert.is(names(holdersAnswer(src, DISK, t('10:06:00')).holders), 'gamma');
  // A timeline starting inside the window starts from the labels' answer and folds the rest in journal order.
  const tl = timeline(src, DISK, t('10:03:30'), t('10:10:00'));
  assert.equal(tl.intervals.map((i) => [i.owner.name, i.from, i.to]), [
    ['alpha', t('10:00:01'), t('10:05:00')],
    ['beta', t('10:05:00'), t('10:05:00')],
    ['gamma', t('10:05:30'), undefined],
  ]);
});

test('--at inside the window when every pass agrees: the answer, with the step said', () => {
  const src = journal([
    daemon('DaemonStarted', t('10:00:00')),
    lock('LockAcquired', t('10:00:01'), ALPHA),
    stepped(t('10:05:00'), t('10:02:00'), 'monotonic'),
    lock('LockReleased', t('10:05:00'), ALPHA, t('10:04:00')),
  ]);
  const a = holdersAnswer(src, DISK, t('10:03:00'));
  assert.is(names(a.holders), 'alpha');
  assert.is(a.ambiguous, undefined);
  assert.equal(a.clockSteps?.map((s) => s.seq), [3]);
  assert.equal(holdersAnswer(src, DISK, t('10:04:30')).ambiguous?.readings.map((r) => names(r.holders)), ['alpha', '']);
});

test('a step seen at a start: the second pass begins with that start, and before it the daemon was stopped', () => {
  const src = journal([
    daemon('DaemonStarted', t('10:00:00')), // 1
    lock('LockAcquired', t('10:00:01'), ALPHA), // 2
    lock('LockReleased', t('10:05:00'), ALPHA), // 3
    daemon('DaemonStopped', t('10:05:00')), // 4
    daemon('DaemonStarted', t('10:05:00'), t('10:02:10')), // 5
    stepped(t('10:05:00'), t('10:02:10'), 'start'), // 6
    lock('LockAcquired', t('10:05:00'), BETA, t('10:03:00')), // 7
  ]);
  const [step] = stepsOver(src, t('10:02:30'));
  assert.is(step?.seq, 6);
  assert.is(secondPass(src, step!, t('10:02:05')).seq, 4, 'before the start: after the stop');
  assert.is(secondPass(src, step!, t('10:02:30')).seq, 6);
  assert.is(secondPass(src, step!, t('10:03:30')).seq, 7);
  const down = holdersAnswer(src, DISK, t('10:02:12'));
  assert.equal(down.ambiguous?.readings.map((r) => names(r.holders)), ['alpha', '']);
  const held = holdersAnswer(src, DISK, t('10:03:30'));
  assert.equal(held.ambiguous?.readings.map((r) => [r.asOf, names(r.holders)]), [[2, 'alpha'], [7, 'beta']]);
  // The journal's order draws no overlap: beta from the label of its grant, after alpha's release.
  const tl = timeline(src, DISK, t('10:00:00'), t('10:10:00'));
  assert.equal(tl.intervals.map((i) => [i.owner.name, i.from, i.to]), [['alpha', t('10:00:01'), t('10:05:00')], ['beta', t('10:05:00'), undefined]]);
});

test('a journal from before ClockStepped whose times go back across a restart: the answer says the moment came twice', () => {
  const src = journal([
    daemon('DaemonStarted', t('10:00:00')), // 1
    lock('LockAcquired', t('10:00:01'), ALPHA), // 2
    lock('LockReleased', t('10:05:00'), ALPHA), // 3
    daemon('DaemonStopped', t('10:05:00')), // 4
    daemon('DaemonStarted', t('10:02:00')), // 5: the clock set back, not journaled
    lock('LockAcquired', t('10:03:00'), BETA), // 6
  ]);
  assert.equal(holdersAnswer(src, DISK, t('10:04:00')).unmarkedStep, { seq: 5, at: t('10:02:00'), before: t('10:05:00') });
  assert.match(formatHolders(holdersAnswer(src, DISK, t('10:04:00')), 'table'), /goes back in time at seq 5/);
  assert.is(holdersAnswer(src, DISK, t('10:01:00')).unmarkedStep, undefined);
  assert.is(holdersAnswer(src, DISK, t('10:06:00')).unmarkedStep, undefined);
});

// clock27 leftover (b): `--at now` on the set-back clock answered "ambiguous" like any other moment in
// the window, though the operator asks about the present: the latest pass. Fails before (holders
// empty, ambiguous set).
test('--at now inside the window: answered by the current pass (the latest), the steps said', () => {
  const src = journal([
    daemon('DaemonStarted', t('10:00:00')), // 1
    lock('LockAcquired', t('10:00:01'), ALPHA), // 2
    lock('LockReleased', t('10:05:00'), ALPHA), // 3
    stepped(t('10:05:00'), t('10:02:00'), 'monotonic'), // 4
    lock('LockAcquired', t('10:05:00'), BETA, t('10:03:00')), // 5
  ]);
  // Asked as a moment: both passes (alpha, then beta).
  assert.equal(holdersAnswer(src, DISK, t('10:03:30')).ambiguous?.readings.map((r) => names(r.holders)), ['alpha', 'beta']);
  // Asked as now (the clock reads 10:03:30 again): beta, as `locks` says.
  const a = holdersAnswer(src, DISK, t('10:03:30'), { now: true });
  assert.is(a.ambiguous, undefined);
  assert.is(names(a.holders), 'beta');
  assert.equal(a.clockSteps?.map((s) => s.seq), [4]);
  assert.equal(a.current, { step: 4, asOf: 5 });
  const text = formatHolders(a, 'table');
  assert.ok(text.includes('beta') && text.includes('the current pass'), text);
  // Outside any window, now is answered as any moment.
  assert.equal(holdersAnswer(src, DISK, t('10:06:00'), { now: true }).current, undefined);
});

test.run();
