// review31b (fix31's CSV state/reading/note columns, review31a HIGH 2): a journal from before 0029
// whose times go back across a restart (no ClockStepped journaled: the clock set back while the daemon
// was stopped). audit --at inside the repeated span: the table says 'the journal goes back in time at
// seq 5 ... this answer may be the other pass's', JSON carries unmarkedStep; the CSV prints the holder
// with state 'agreed' and an empty note (answerRows knows ambiguous and incomplete only), a plain
// agreed answer though alpha held the disk at that time on the first pass and beta on the second.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { holdersAnswer, type AuditSources } from '../../src/cli/audit-query.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { formatHolders } from '../../src/cli/audit-format.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const BETA = { uuid: '22222222-2222-4222-8222-222222222222', name: 'beta' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;

function lock(kind: 'LockAcquired' | 'LockReleased', at: string, owner: typeof ALPHA, wallAt?: string): FactRow {
  const payload = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner, mode: 'exclusive', source: 'api', ...(kind === 'LockReleased' ? { reason: 'released' } : {}), ...(wallAt ? { wallAt } : {}) };
  return { kind, at, disk: DISK, resource: RES, owner: owner.uuid, ownerName: owner.name, payload };
}
const daemon = (kind: 'DaemonStarted' | 'DaemonStopped', at: string, wallAt?: string): FactRow => ({ kind, at, payload: { pid: 1, held: 0, version: 't', lockspace: '/ls', ...(wallAt ? { wallAt } : {}) } });

function journal(rows: FactRow[]): AuditSources {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-clock-step-')), 'journal.db'), { host: 'h' });
  j.append(rows);
  return { live: j };
}


test('an old journal whose times go back across a restart: audit --at --csv inside the repeated span is not a plain agreed row', () => {
  const src = journal([
    daemon('DaemonStarted', t('10:00:00')), // 1
    lock('LockAcquired', t('10:00:01'), ALPHA), // 2
    lock('LockReleased', t('10:05:00'), ALPHA), // 3
    daemon('DaemonStopped', t('10:05:00')), // 4
    daemon('DaemonStarted', t('10:02:00')), // 5: the clock set back, not journaled
    lock('LockAcquired', t('10:03:00'), BETA), // 6
  ]);
  const a = holdersAnswer(src, DISK, t('10:04:00'));
  assert.ok(a.unmarkedStep !== undefined, 'the answer knows the moment came twice');
  assert.match(formatHolders(a, 'table'), /goes back in time at seq 5/);
  const csv = formatHolders(a, 'csv').trim().split(/\r?\n/);
  assert.ok(csv.length > 1, csv.join('\n'));
  for (const row of csv.slice(1)) {
    // The table's caveat must reach the CSV: a state other than agreed, or a note naming seq 5.
    assert.ok(!/,agreed,[^,]*,$/.test(row), `a plain agreed row with no note, though the table says the answer may be the other pass's:\n${csv.join('\n')}`);
  }
});

test.run();
