// review31a HIGH 1 (aud31 M2 fix): FactsDropped's `coalesced` range is taken from the facts' LABELS
// (slot.f.at, f.at). After a clock step back the engine labels every fact at the floor (the time the
// clock had reached) and keeps the clock's own reading as wallAt (src/engine/fact-clock.ts), so a
// holding lost and re-taken twice while the clock is behind the floor gets a range [floor, floor):
// empty. `audit --at` a moment of that stretch reads the pass after the step by wallAt, finds the
// kept loss later than the moment, and answers "alpha" as agreed by both passes, with no
// `incomplete` mark, while alpha had really lost the disk then (lost when the clock read 10:02, re-taken
// at 10:04). A false audit answer: exactly what aud31 M2 set out to mark.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { JournalError } from '../../src/journal/errors.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { holdersAnswer, timeline } from '../../src/cli/audit-query.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' });
// As the engine stamps them in a stretch (FactClock.stamp): labelled at the floor, the reading as wallAt.
const lost = (at: string, wallAt: string) => fact('LeaseLost', at, { ...res, holder: {}, reason: 'replaced', wallAt } as never) as NewFact;
const retaken = (at: string, wallAt: string) => fact('Reacquired', at, { ...res, source: 'verifier', wallAt } as never) as NewFact;

function run(during: NewFact[][]) {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-r31a-stretch-')), 'journal.db'), { host: 'h' });
  const rows: FactRow[] = [
    { kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } },
    { kind: 'LockAcquired', at: t('09:00:01'), disk: DISK, resource: RES, owner: ALPHA.uuid, ownerName: ALPHA.name, payload: { ...res, source: 'api' } },
  ];
  j.append(rows);
  const port = { full: true, append: (r: readonly FactRow[]) => (port.full ? (() => { throw REFUSED; })() : j.append(r)) };
  const wf = new WaitingFacts(port as never, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  for (const facts of during) assert.ok(wf.later(facts, REFUSED));
  wf.stop();
  port.full = false;
  wf.append([]);
  assert.is(wf.pending, 0);
  return { src: { live: j }, all: [...j.readAfter(0)] };
}

const names = (hs: ReadonlyArray<{ owner: { name?: string } }>) => hs.map((h) => h.owner.name).join(',');

test('lost/re-taken twice while the clock is behind the floor (one plain step): --at inside the first loss is not an unmarked agreed "alpha"', () => {
  const F = t('10:20:00');
  const { src, all } = run([[step(F, t('10:00:00'))], [lost(F, t('10:02:00'))], [retaken(F, t('10:04:00'))], [lost(F, t('10:06:00'))], [retaken(F, t('10:08:00'))]]);
  const d = all.at(-1)!;
  assert.is(d.kind, 'FactsDropped');
  const a = holdersAnswer(src, DISK, t('10:03:00'));
  // On the pass after the step alpha had lost the disk at 10:02 (clock reading) and re-took it at 10:04.
  const agreedAlpha = a.ambiguous === undefined && names(a.holders) === 'alpha';
  assert.ok(
    !(agreedAlpha && a.incomplete === undefined),
    `audit --at 10:03 answered alpha as agreed and unmarked; FactsDropped.coalesced = ${JSON.stringify((d.payload as { coalesced?: unknown }).coalesced)} (a range by labels, empty in a stretch)`,
  );
});

test('the timeline over the stretch says it is incomplete', () => {
  const F = t('10:20:00');
  const { src } = run([[step(F, t('10:00:00'))], [lost(F, t('10:02:00'))], [retaken(F, t('10:04:00'))], [lost(F, t('10:06:00'))], [retaken(F, t('10:08:00'))]]);
  const tl = timeline(src, DISK, t('10:00:00'), t('10:10:00'));
  assert.ok((tl.incomplete?.length ?? 0) > 0, 'timeline 10:00-10:10 (the clock\'s readings of the coalesced facts) has no incomplete mark');
});

test.run();
