// review31a LOW (bad journals, aud31 M2): coalescedOver() checks an entry of FactsDropped.coalesced
// for string `from`, `to` and a matching `disk` only; coalescedText() then reads `c.owner.slice(0, 8)`.
// An entry without `owner` (a damaged or hand-edited journal, or another writer) makes `audit --at`
// (boundaryNote) and the `--disk` list's note throw a TypeError: the audit dies instead of answering
// with the mark. Measured: "TypeError: Cannot read properties of undefined (reading 'slice') at
// coalescedText (src/cli/audit-format.ts:294)".
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { holdersAnswer, timeline } from '../../src/cli/audit-query.js';
import { formatHolders, formatTimeline } from '../../src/cli/audit-format.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const hold = (kind: string, at: string, extra: object): FactRow => ({ kind, at, disk: DISK, resource: RES, owner: ALPHA.uuid, ownerName: ALPHA.name, payload: { ...res, ...extra } }) as FactRow;

test('a coalesced entry without owner: audit --at answers (marked), no TypeError', () => {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-r31a-bad-')), 'journal.db'), { host: 'h' });
  j.append([
    { kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } },
    hold('LockAcquired', t('09:00:01'), { source: 'api' }),
    hold('LeaseLost', t('10:10:00'), { holder: {}, reason: 'replaced' }),
    hold('Reacquired', t('10:15:00'), { source: 'verifier' }),
    { kind: 'FactsDropped', at: t('10:15:00'), payload: { count: 2, kinds: {}, from: t('10:00:00'), to: t('10:15:00'), reason: 'r', superseded: 2, coalesced: [{ disk: DISK, from: t('10:00:00'), to: t('10:10:00') }] } } as FactRow,
  ]);
  const src = { live: j };
  const a = holdersAnswer(src, DISK, t('10:02:00'));
  assert.ok(a.incomplete !== undefined);
  let text = '';
  assert.not.throws(() => (text = formatHolders(a, 'table')), 'audit --at: formatHolders threw on the entry without owner');
  assert.match(text, /coalesced/);
  assert.not.throws(() => formatTimeline(timeline(src, DISK, t('09:30:00'), t('10:30:00')), 100), 'audit --timeline threw');
});

test.run();
