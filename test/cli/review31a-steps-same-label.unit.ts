// review31a (decision 0029, reused by aud31's merged-step readings): lastOfPass() finds the next step
// with `queryFacts({ kinds: ['ClockStepped'], since: step.at, limit: 64 }).find(f => f.seq > step.seq)`.
// While the clock is behind the floor every step is labelled at the floor (FactClock.look: from =
// max(reading before, floor)), so a clock that keeps stepping back gives many steps with ONE label. From
// the 64th such step on, the 64 oldest at or after that label are all at or before it: no next step is
// found, and its pass is read to the journal's end, across the later steps' passes (whose wall times
// go back). Here 66 steps labelled 10:10:00, each back to 09:00. On the 65th pass alpha's lease was
// lost when the clock read 09:20 and re-taken at 09:40; the 66th pass has only other disks' facts.
// `audit --at 09:30` should be ambiguous (that pass had nobody); the 64th and 65th passes are read to
// the end (the search lands past the re-take) and every reading says alpha: agreed, false.
// Checked: the same journal with 10 steps before the 65th-like one answers ambiguous (passes).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { holdersAnswer } from '../../src/cli/audit-query.js';

const DISK = '/img/db.qcow2';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const BETA = { uuid: '22222222-2222-4222-8222-222222222222', name: 'beta' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const F = t('10:10:00');
const res = (disk: string, owner: typeof ALPHA) => ({ resource: `/ls/${disk.slice(5, 7)}`, name: 'x', lockspace: '/ls', kind: 'file', disk, path: disk, owner, mode: 'exclusive' });
const row = (kind: string, at: string, disk: string, owner: typeof ALPHA, extra: object): FactRow =>
  ({ kind, at, disk, resource: res(disk, owner).resource, owner: owner.uuid, ownerName: owner.name, payload: { ...res(disk, owner), ...extra } }) as FactRow;
const step = (to: string): FactRow => ({ kind: 'ClockStepped', at: F, payload: { from: F, to, backMs: Date.parse(F) - Date.parse(to), seenBy: 'monotonic' } }) as FactRow;

test('66 steps with one label: the 65th pass (alpha lost at 09:20, re-taken at 09:40) is not read as "alpha" at 09:30', () => {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-r31a-label-')), 'journal.db'), { host: 'h' });
  j.append([
    { kind: 'DaemonStarted', at: t('08:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } } as FactRow,
    row('LockAcquired', t('08:00:01'), DISK, ALPHA, { source: 'api' }),
  ]);
  // Steps 1..64: the clock went back to 09:00 each time, nothing of this disk in their passes.
  for (let i = 0; i < 64; i++) j.append([step(t('09:00:00'))]);
  // Step 65: alpha's lease lost when the clock read 09:20, re-taken at 09:40.
  j.append([step(t('09:00:00')), row('LeaseLost', F, DISK, ALPHA, { holder: {}, reason: 'replaced', wallAt: t('09:20:00') }), row('Reacquired', F, DISK, ALPHA, { source: 'verifier', wallAt: t('09:40:00') })]);
  // Step 66: only another disk's facts, early in the window.
  j.append([step(t('09:00:00'))]);
  for (let i = 1; i <= 4; i++) j.append([row('LockAcquired', F, `/img/o${i}.qcow2`, BETA, { source: 'api', wallAt: t(`09:0${i}:00`) })]);
  const a = holdersAnswer({ live: j }, DISK, t('09:30:00'));
  assert.ok(a.clockSteps?.length === 66 || a.ambiguous?.steps.length === 66, 'precondition: all 66 steps are over 09:30');
  assert.ok(a.ambiguous !== undefined, `audit --at 09:30 answered ${a.holders.map((h) => h.owner.name).join(',') || 'nobody'} as agreed by all 67 passes; on the 65th alpha's lease was lost (09:20-09:40)`);
});

test.run();
