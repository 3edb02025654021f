// review31a (aud31 M2 on journals written before it): a FactsDropped from a vmlockd between 35edeeb
// (review26d F2: holding facts coalesced past the bound) and 7fc2335 (aud31: `coalesced`) says
// `superseded: 2` and names the owners in `vouchedBy`, over [from, to], but has no `coalesced` list.
// coalescedOver() skips it (`if (!Array.isArray(list)) continue`), so `audit --at` inside the range
// answers "alpha held it" with no mark: the very false answer aud31 M2 fixed, on the journals that
// already have it. The journal says enough to mark it (the owner, the window): the mark should fall
// back to that, never to nothing.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { holdersAnswer, timeline } from '../../src/cli/audit-query.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const hold = (kind: string, at: string, extra: object): FactRow => ({ kind, at, disk: DISK, resource: RES, owner: ALPHA.uuid, ownerName: ALPHA.name, payload: { ...res, ...extra } }) as FactRow;

function oldJournal() {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-r31a-old-')), 'journal.db'), { host: 'h' });
  j.append([
    { kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } },
    hold('LockAcquired', t('09:00:01'), { source: 'api' }),
    // As 35edeeb..7fc2335 journaled lost 10:00, re-taken 10:05, lost 10:10, re-taken 10:15 past the bound.
    hold('LeaseLost', t('10:10:00'), { holder: {}, reason: 'replaced' }),
    hold('Reacquired', t('10:15:00'), { source: 'verifier' }),
    {
      kind: 'FactsDropped', at: t('10:15:00'),
      payload: { count: 2, kinds: { LeaseLost: 1, Reacquired: 1 }, from: t('10:00:00'), to: t('10:15:00'), reason: 'the journal refused them (ENOSPC) while 0 fact(s) waited in memory already (at most 0); they were in force in the daemon; 2 of them were a lock\'s loss or re-take that a later one of the same holding, journaled before this, stands for', superseded: 2, vouchedBy: { [ALPHA.uuid]: null } },
    } as FactRow,
  ]);
  return { live: j };
}

test('an old FactsDropped (superseded, no coalesced): --at inside its window is not an unmarked "alpha"', () => {
  const src = oldJournal();
  const a = holdersAnswer(src, DISK, t('10:02:00'));
  const names = a.holders.map((h) => h.owner.name).join(',');
  assert.ok(!(names === 'alpha' && a.incomplete === undefined && a.ambiguous === undefined), `audit --at 10:02 answered ${names} unmarked; the FactsDropped says 2 of alpha's loss/re-take facts were superseded between 10:00 and 10:15`);
});

test('an old FactsDropped: the timeline over its window is marked', () => {
  assert.ok((timeline(oldJournal(), DISK, t('09:30:00'), t('10:30:00')).incomplete?.length ?? 0) > 0);
});

test.run();
