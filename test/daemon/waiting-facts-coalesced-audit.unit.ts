// aud31 MEDIUM 2 (review30, audit truth): past the waiting facts' bound (a full disk) a holding's
// LeaseLost / Reacquired are coalesced: the last LeaseLost and the last Reacquired after it stand for
// the rest. Lost at 10:00, re-taken at 10:05, lost at 10:10, re-taken at 10:15 journals only the second
// pair, so the journal's fold says alpha held the disk from 09:00 to 10:10: `audit --at 10:02` answered
// "alpha" with nothing to say it was really lost then. Before: no mark at all (holders alpha, no
// `incomplete`). After: the FactsDropped lists the holdings whose facts were coalesced and the time they
// cover, and --at, --timeline (and the --disk list's note) mark answers there as incomplete.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { JournalError } from '../../src/journal/errors.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { holdersAnswer, timeline, coalescedOver } from '../../src/cli/audit-query.js';
import { boundaryNote } from '../../src/cli/audit-format.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const lost = (at: string) => fact('LeaseLost', at, { ...res, holder: {}, reason: 'replaced' } as never) as NewFact;
const retaken = (at: string) => fact('Reacquired', at, { ...res, source: 'verifier' } as never) as NewFact;

function run(during: NewFact[][]) {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-coalesced-')), 'journal.db'), { host: 'h' });
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

test('lost, re-taken, lost, re-taken past the bound: --at inside the first loss is marked incomplete, not a silent "held"', () => {
  const { src, all } = run([[lost(t('10:00:00'))], [retaken(t('10:05:00'))], [lost(t('10:10:00'))], [retaken(t('10:15:00'))]]);
  assert.equal(all.slice(2).map((f) => [f.kind, f.at]), [['LeaseLost', t('10:10:00')], ['Reacquired', t('10:15:00')], ['FactsDropped', t('10:15:00')]]);
  const d = all.at(-1)!.payload as { coalesced?: unknown };
  assert.equal(d.coalesced, [{ resource: RES, disk: DISK, owner: ALPHA.uuid, ownerName: 'alpha', count: 2, from: t('10:00:00'), to: t('10:10:00') }]);
  const a = holdersAnswer(src, DISK, t('10:02:00'));
  assert.ok(a.incomplete !== undefined, `audit --at 10:02 answered ${names(a.holders) || 'nobody'} with no mark: the lease was really lost from 10:00 to 10:05`);
  assert.equal(a.incomplete.map((c) => [c.owner, c.count, c.from, c.to]), [[ALPHA.uuid, 2, t('10:00:00'), t('10:10:00')]]);
  assert.match(boundaryNote(a), /journal's disk was full on this host; 2 loss\/re-take fact\(s\) of alpha's lock .* between 2026-11-25T10:00:00.000Z and 2026-11-25T10:10:00.000Z were coalesced/);
  // Outside the range the journal is complete for that lock: no mark.
  assert.is(holdersAnswer(src, DISK, t('09:59:00')).incomplete, undefined);
  assert.is(holdersAnswer(src, DISK, t('10:12:00')).incomplete, undefined);
  // The timeline over the window says which part of it is incomplete.
  const tl = timeline(src, DISK, t('09:30:00'), t('10:30:00'));
  assert.equal(tl.incomplete?.map((c) => [c.owner, c.from, c.to]), [[ALPHA.uuid, t('10:00:00'), t('10:10:00')]]);
  assert.is(timeline(src, DISK, t('10:20:00'), t('10:30:00')).incomplete, undefined);
  // And the --disk list's window.
  assert.is(coalescedOver(src, [DISK], t('09:00:00'), t('10:01:00')).length, 1);
  assert.is(coalescedOver(src, [DISK], t('10:11:00'), undefined).length, 0);
  assert.is(coalescedOver(src, ['/img/other.qcow2'], undefined, undefined).length, 0);
});

test('one loss and one re-take past the bound: nothing coalesced, nothing marked', () => {
  const { src, all } = run([[lost(t('10:00:00'))], [retaken(t('10:05:00'))]]);
  assert.ok(all.every((f) => f.kind !== 'FactsDropped'));
  assert.is(holdersAnswer(src, DISK, t('10:02:00')).incomplete, undefined);
  assert.is(names(holdersAnswer(src, DISK, t('10:02:00')).holders), '');
});

test.run();
