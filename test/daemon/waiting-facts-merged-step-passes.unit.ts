// aud31 MEDIUM 1 (review30, audit truth): past the waiting facts' bound (a full disk) and past
// STEPS_KEPT kept clock steps, a later step is merged into the last one kept (keepStep): one window,
// one pass after it on the journal's order. But the clock passed a moment of that window once per
// step it stands for, and the merged pass's wall times go back where the merged-away step was (the
// search for a moment in a pass assumes they do not). Here the clock reached 10:10 and read 10:00,
// alpha's lease was lost at 10:06, the clock (at 10:08) read 10:02 again, and alpha re-took at 10:05.
// At 10:03 alpha held the disk before the steps and on the first pass, NOBODY did on the second.
// Before: `audit --at 10:03` answered "alpha" as agreed by every pass (the merged pass was searched
// as if its wall times rose: both facts read later than 10:03, so it was read at its start). After:
// the merged pass cannot say where in it each of its passes met the moment, so it gives every answer
// the disk had along it, and the answer is ambiguous unless they all agree.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { JournalError } from '../../src/journal/errors.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { STEPS_KEPT, WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { holdersAnswer, passRanges } from '../../src/cli/audit-query.js';
import { boundaryNote } from '../../src/cli/audit-format.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' });
const lost = (at: string, wallAt: string) => fact('LeaseLost', at, { ...res, holder: {}, reason: 'replaced', wallAt } as never) as NewFact;
const retaken = (at: string, wallAt: string) => fact('Reacquired', at, { ...res, source: 'verifier', wallAt } as never) as NewFact;

/** A journal with alpha holding the disk since 09:00:01; then the disk is full: `during` go through the waiting facts (bound 0). */
function run(during: NewFact[][]) {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-merged-passes-')), 'journal.db'), { host: 'h' });
  const rows: FactRow[] = [
    { kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } },
    { kind: 'LockAcquired', at: t('09:00:01'), disk: DISK, resource: RES, owner: ALPHA.uuid, ownerName: ALPHA.name, payload: { ...res, source: 'api' } },
  ];
  j.append(rows);
  const port = { full: true, append: (r: readonly FactRow[]) => (port.full ? (() => { throw REFUSED; })() : j.append(r)) };
  const wf = new WaitingFacts(port as never, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  for (let i = 0; i < STEPS_KEPT - 1; i++) {
    const from = new Date(Date.parse(t('09:20:00')) + i * 1000).toISOString();
    assert.ok(wf.later([step(from, new Date(Date.parse(from) - 2000).toISOString())], REFUSED));
  }
  for (const facts of during) assert.ok(wf.later(facts, REFUSED));
  wf.stop();
  port.full = false;
  wf.append([]);
  assert.is(wf.pending, 0);
  return { src: { live: j }, all: [...j.readAfter(0)] };
}

const names = (hs: ReadonlyArray<{ owner: { name?: string } }>) => hs.map((h) => h.owner.name).join(',');

test('a merged step: a moment its merged-away step passed again with another holder is not answered as agreed', () => {
  const { src, all } = run([[step(t('10:10:00'), t('10:00:00'))], [lost(t('10:10:00'), t('10:06:00'))], [step(t('10:10:00'), t('10:02:00'))], [retaken(t('10:10:00'), t('10:05:00'))]]);
  const merged = all.filter((f) => f.kind === 'ClockStepped').at(-1)!;
  assert.is((merged.payload as { merged?: number }).merged, 2);
  const a = holdersAnswer(src, DISK, t('10:03:00'));
  assert.ok(a.ambiguous !== undefined, `audit --at 10:03 answered ${names(a.holders) || 'nobody'} as agreed: the second pass (lease lost at 10:06 on the first, re-taken at 10:05 on the second) had nobody`);
  assert.is(a.holders.length, 0);
  // Every answer the merged pass can give is listed: alpha (at its start, before the loss) and nobody (between the loss and the re-take).
  const after = a.ambiguous.readings.filter((r) => r.pass === 'after');
  assert.ok(after.every((r) => r.step === merged.seq && r.merged === 2));
  assert.ok(after.some((r) => names(r.holders) === ''), 'the pass with nobody is among the readings');
  assert.ok(after.some((r) => names(r.holders) === 'alpha'));
  assert.match(boundaryNote(a), /stands for 2 steps/);
  // A list up to 10:05:30 has the re-take made when the clock read 10:05 on the second pass, not the
  // loss made at 10:06 on the first (by each fact's own reading; a search assuming rising readings
  // stopped at the 10:06 and found neither).
  const inList = passRanges(src, t('10:04:00'), t('10:05:30')).flatMap((r) => all.filter((f) => f.seq > r.afterSeq && f.seq <= r.untilSeq).map((f) => f.kind));
  assert.equal(inList, ['Reacquired']);
});

test('a merged step whose pass never changed the disk: every pass agrees, and that answer stands', () => {
  // Nothing of this disk happens after the steps: alpha held it at 10:03 on every pass.
  const { src } = run([[step(t('10:10:00'), t('10:00:00'))], [step(t('10:10:00'), t('10:02:00'))]]);
  const a = holdersAnswer(src, DISK, t('10:03:00'));
  assert.is(a.ambiguous, undefined);
  assert.is(names(a.holders), 'alpha');
  assert.is(a.clockSteps?.length, 1);
});

test.run();
