// engine29 item 1 (review28c concern, audit truth): past the waiting facts' bound (a full disk) and past
// STEPS_KEPT kept clock steps, a new step was merged into the last kept one and the merged step took
// the NEWEST step's place. The lock facts kept between the two steps (made in the pass after the
// earlier step) then lay before the merged step on the journal's order: outside every pass of the
// clock that `audit --at` reads (decision 0029). The pass before the step leaves them out by their
// labels; the pass after the merged step starts after them, so it counted them as done at every moment
// of the window whatever the clock read when they were made. Here alpha's lease is lost at 10:01 and
// re-taken at 10:05 on the second pass: at 10:03 nobody held the disk that pass, but both readings
// said alpha, and audit answered "alpha" as certain. Fails before (holders alpha, no ambiguity);
// passes after (the merged step keeps the earlier step's place, the facts after it are in its pass).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { JournalError } from '../../src/journal/errors.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { STEPS_KEPT, WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { holdersAnswer } from '../../src/cli/audit-query.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' });
const withWall = (at: string, wallAt: string | undefined) => (wallAt !== undefined && wallAt !== at ? { wallAt } : {});
const lost = (at: string, wallAt?: string) => fact('LeaseLost', at, { ...res, holder: {}, reason: 'replaced', ...withWall(at, wallAt) } as never) as NewFact;
const retaken = (at: string, wallAt?: string) => fact('Reacquired', at, { ...res, source: 'verifier', ...withWall(at, wallAt) } as never) as NewFact;

/** A journal with alpha holding the disk since 09:00:01; then the disk is full: `during` go through the waiting facts (bound 0). */
function run(during: NewFact[][]) {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-merged-step-')), 'journal.db'), { host: 'h' });
  const rows: FactRow[] = [
    { kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } },
    { kind: 'LockAcquired', at: t('09:00:01'), disk: DISK, resource: RES, owner: ALPHA.uuid, ownerName: ALPHA.name, payload: { ...res, source: 'api' } },
  ];
  j.append(rows);
  const port = { full: true, append: (r: readonly FactRow[]) => (port.full ? (() => { throw REFUSED; })() : j.append(r)) };
  const wf = new WaitingFacts(port as never, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  // STEPS_KEPT - 1 small steps long before (their windows are far from the moments asked).
  for (let i = 0; i < STEPS_KEPT - 1; i++) {
    const from = new Date(Date.parse(t('09:20:00')) + i * 1000).toISOString();
    assert.ok(wf.later([step(from, new Date(Date.parse(from) - 2000).toISOString())], REFUSED));
  }
  for (const facts of during) assert.ok(wf.later(facts, REFUSED));
  wf.stop();
  port.full = false;
  wf.append([]);
  assert.is(wf.pending, 0);
  const all = [...j.readAfter(0)];
  for (let i = 1; i < all.length; i++) assert.ok(all[i]!.at >= all[i - 1]!.at, `labels go back along seq: #${all[i]!.seq} ${all[i]!.at} after #${all[i - 1]!.seq} ${all[i - 1]!.at}`);
  return { src: { live: j }, all };
}

const names = (hs: ReadonlyArray<{ owner: { name?: string } }>) => hs.map((h) => h.owner.name).join(',');

test('a merged step past STEPS_KEPT: the lock facts between the two steps stay in the pass after it (the floor not caught up)', () => {
  // The clock reached 10:10 and read 10:00 (step 64); alpha's lease is lost at 10:01 and re-taken at
  // 10:05 (labelled at the floor, 10:10); the clock reached 10:08 and read 10:02 (step 65: from is the
  // floor, 10:10). At 10:03: alpha held it the first pass, nobody the second, alpha again the third.
  const { src, all } = run([[step(t('10:10:00'), t('10:00:00'))], [lost(t('10:10:00'), t('10:01:00'))], [retaken(t('10:10:00'), t('10:05:00'))], [step(t('10:10:00'), t('10:02:00'))]]);
  const merged = all.filter((f) => f.kind === 'ClockStepped').at(-1)!;
  assert.equal(merged.payload, { from: t('10:10:00'), to: t('10:00:00'), backMs: 600_000, seenBy: 'monotonic', merged: 2, span: 2 });
  const a = holdersAnswer(src, DISK, t('10:03:00'));
  assert.ok(a.ambiguous !== undefined, `audit --at 10:03 answered ${names(a.holders) || 'nobody'} as certain: the pass after the first step (lease lost at 10:01) was not read`);
  // aud31: a merged step's pass gives every answer the disk had along its span (the passes it stands
  // for cannot be told apart): alpha at its start and after the re-take, nobody between.
  assert.equal(a.ambiguous.readings.map((r) => [r.pass, names(r.holders)]), [['before', 'alpha'], ['after', 'alpha'], ['after', '']]);
  assert.equal(a.ambiguous.steps.map((s) => s.seq), [merged.seq]);
  // Before the loss on the second pass every real pass said alpha, but the merged step no longer says
  // which of its steps read back that far (its `to` is the earliest of theirs): the pass after the loss
  // may have met 10:00:30 too, so the answer lists it rather than claim alpha (aud31).
  const early = holdersAnswer(src, DISK, t('10:00:30'));
  assert.is(names(early.holders), '');
  assert.equal(early.ambiguous?.readings.map((r) => [r.pass, names(r.holders)]), [['before', 'alpha'], ['after', 'alpha'], ['after', '']]);
  // Before the merged window: one pass, alpha, no step over it.
  const before = holdersAnswer(src, DISK, t('09:59:00'));
  assert.is(names(before.holders), 'alpha');
  assert.is(before.clockSteps, undefined);
});

test('a merged step past STEPS_KEPT: facts between the steps labelled past the earlier window are relabelled, keeping the clock\'s reading', () => {
  // The clock reached 10:10 and read 10:00; the lease is lost at 10:01 (labelled 10:10); the clock
  // passes 10:10 again and alpha re-takes at 10:15 (labelled 10:15, no wallAt); the clock reaches 10:20
  // and reads 10:12. The merged window [10:00, 10:20) must come before the loss on the journal's
  // order, so the re-take is labelled 10:20 there with its clock's reading 10:15 as wallAt.
  const { src, all } = run([[step(t('10:10:00'), t('10:00:00'))], [lost(t('10:10:00'), t('10:01:00'))], [retaken(t('10:15:00'))], [step(t('10:20:00'), t('10:12:00'))]]);
  const a = holdersAnswer(src, DISK, t('10:03:00'));
  assert.ok(a.ambiguous !== undefined, `audit --at 10:03 answered ${names(a.holders) || 'nobody'} as certain`);
  assert.equal(a.ambiguous.readings.map((r) => [r.pass, names(r.holders)]), [['before', 'alpha'], ['after', 'alpha'], ['after', '']]);
  const tail = all.slice(-3);
  assert.equal(tail.map((f) => [f.kind, f.at, (f.payload as { wallAt?: string }).wallAt]), [
    ['ClockStepped', t('10:20:00'), undefined],
    ['LeaseLost', t('10:20:00'), t('10:01:00')],
    ['Reacquired', t('10:20:00'), t('10:15:00')],
  ]);
  assert.equal(tail[0]!.payload, { from: t('10:20:00'), to: t('10:00:00'), backMs: 1_200_000, seenBy: 'monotonic', merged: 2, span: 2 });
});

test.run();
