// review31a HIGH 2 (aud31 M1/M2, and decision 0029 before them): `audit --at T --csv` prints only the
// holder rows (formatHolders' csv: HOLDER_COLUMNS, nothing else) and audit.ts writes no note to stderr
// for --at. So:
// - an answer marked incomplete (FactsDropped.coalesced, aud31 M2) comes out as a plain "alpha held
//   it" row, the mark gone;
// - an ambiguous answer (the passes differ, aud31 M1's merged step or any step) has holders [] and
//   comes out as the header alone: byte for byte the CSV of "nobody held it".
// A script reading the CSV (the documented machine format) gets a false answer either way.
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
import { formatHolders } from '../../src/cli/audit-format.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' });
const lost = (at: string, wallAt?: string) => fact('LeaseLost', at, { ...res, holder: {}, reason: 'replaced', ...(wallAt ? { wallAt } : {}) } as never) as NewFact;
const retaken = (at: string, wallAt?: string) => fact('Reacquired', at, { ...res, source: 'verifier', ...(wallAt ? { wallAt } : {}) } as never) as NewFact;

function run(during: NewFact[][], steps = 0) {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-r31a-csv-')), 'journal.db'), { host: 'h' });
  const rows: FactRow[] = [
    { kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } },
    { kind: 'LockAcquired', at: t('09:00:01'), disk: DISK, resource: RES, owner: ALPHA.uuid, ownerName: ALPHA.name, payload: { ...res, source: 'api' } },
  ];
  j.append(rows);
  const port = { full: true, append: (r: readonly FactRow[]) => (port.full ? (() => { throw REFUSED; })() : j.append(r)) };
  const wf = new WaitingFacts(port as never, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  for (let i = 0; i < steps; i++) {
    const from = new Date(Date.parse(t('09:20:00')) + i * 1000).toISOString();
    assert.ok(wf.later([step(from, new Date(Date.parse(from) - 2000).toISOString())], REFUSED));
  }
  for (const facts of during) assert.ok(wf.later(facts, REFUSED));
  wf.stop();
  port.full = false;
  wf.append([]);
  return { live: j };
}

test('--at --csv inside a coalesced range: the incomplete mark reaches the CSV', () => {
  const src = run([[lost(t('10:00:00'))], [retaken(t('10:05:00'))], [lost(t('10:10:00'))], [retaken(t('10:15:00'))]]);
  const a = holdersAnswer(src, DISK, t('10:02:00'));
  assert.ok(a.incomplete !== undefined, 'precondition: the answer is marked (aud31 M2)');
  const csv = formatHolders(a, 'csv');
  assert.ok(/incomplete|coalesced|unknown/i.test(csv), `audit --at 10:02 --csv printed an unmarked holder row:\n${csv}`);
});

test('--at --csv of an ambiguous answer (merged step, passes differ) is not the CSV of "nobody held it"', () => {
  const src = run([[step(t('10:10:00'), t('10:00:00'))], [lost(t('10:10:00'), t('10:06:00'))], [step(t('10:10:00'), t('10:02:00'))], [retaken(t('10:10:00'), t('10:05:00'))]], STEPS_KEPT - 1);
  const a = holdersAnswer(src, DISK, t('10:03:00'));
  assert.ok(a.ambiguous !== undefined, 'precondition: ambiguous (aud31 M1)');
  const nobody = holdersAnswer(src, DISK, t('08:00:00'));
  assert.is(nobody.holders.length, 0);
  assert.is(nobody.ambiguous, undefined);
  const csvAmb = formatHolders(a, 'csv');
  const csvNobody = formatHolders({ ...nobody, at: a.at }, 'csv');
  assert.ok(csvAmb !== csvNobody, `the ambiguous answer's CSV is the same text as "nobody held it":\n${csvAmb}`);
});

test.run();
