// review31a HIGH 3 (aud31 M1 left `--at now` alone): inside a merged ClockStepped's window `audit --at
// now` answers by secondPass(), the binary search that assumes wall times rise along the pass, the
// very assumption aud31 M1 says a merged step's span breaks (its mergedReadings and passRanges no
// longer search there). Here, while the clock is still behind the floor (10:10): step 64 (10:10 ->
// 10:00), beta's lease on another disk lost when the clock read 10:09, a step merged into 64 (the clock
// read 10:01 again), then alpha's lease on db lost when it read 10:02. At 10:03 "now" nobody holds db
// (the daemon's own state), but the search meets beta's 10:09 first, goes left, and answers from the
// step's start: "alpha", flagged as the current pass.
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
const OTHER = '/img/other.qcow2';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const BETA = { uuid: '22222222-2222-4222-8222-222222222222', name: 'beta' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = (disk: string, owner: typeof ALPHA) => ({ resource: disk === DISK ? '/ls/db' : '/ls/other', name: 'x', lockspace: '/ls', kind: 'file', disk, path: disk, owner, mode: 'exclusive' });
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' });
const lost = (disk: string, owner: typeof ALPHA, at: string, wallAt: string) => fact('LeaseLost', at, { ...res(disk, owner), holder: {}, reason: 'replaced', wallAt } as never) as NewFact;
const acquired = (disk: string, owner: typeof ALPHA, at: string): FactRow => ({ kind: 'LockAcquired', at, disk, resource: res(disk, owner).resource, owner: owner.uuid, ownerName: owner.name, payload: { ...res(disk, owner), source: 'api' } });

test('--at now inside a merged step window answers the current state, not the step start', () => {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-r31a-now-')), 'journal.db'), { host: 'h' });
  j.append([{ kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } }, acquired(DISK, ALPHA, t('09:00:01')), acquired(OTHER, BETA, t('09:00:02'))]);
  const port = { full: true, append: (r: readonly FactRow[]) => (port.full ? (() => { throw REFUSED; })() : j.append(r)) };
  const wf = new WaitingFacts(port as never, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  for (let i = 0; i < STEPS_KEPT - 1; i++) {
    const from = new Date(Date.parse(t('09:20:00')) + i * 1000).toISOString();
    assert.ok(wf.later([step(from, new Date(Date.parse(from) - 2000).toISOString())], REFUSED));
  }
  const F = t('10:10:00');
  for (const f of [step(F, t('10:00:00')), lost(OTHER, BETA, F, t('10:09:00')), step(F, t('10:01:00')), lost(DISK, ALPHA, F, t('10:02:00'))]) assert.ok(wf.later([f], REFUSED));
  wf.stop();
  port.full = false;
  wf.append([]);
  assert.is(wf.pending, 0);
  const src = { live: j };
  const merged = [...j.readAfter(0)].filter((f) => f.kind === 'ClockStepped').at(-1)!;
  assert.is((merged.payload as { merged?: number }).merged, 2);
  // The daemon's state now (the journal's fold): nobody holds db.
  const a = holdersAnswer(src, DISK, t('10:03:00'), { now: true });
  assert.ok(a.current !== undefined, 'precondition: answered as the current pass');
  assert.is(a.holders.map((h) => h.owner.name).join(','), '', `audit --at now (10:03) answered ${a.holders.map((h) => h.owner.name).join(',')} as the current pass (after seq ${a.current.asOf}); alpha's lease was lost at 10:02 on this pass`);
});

test.run();
