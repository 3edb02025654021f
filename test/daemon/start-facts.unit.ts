// src/daemon/start-facts.ts: the start's facts the journal refused wait, folded in, and every later
// append carries them first in the same write (nothing is journaled ahead of them).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import type { FactRowLike, StoredRowLike } from '../../src/engine/journal-port.js';
import { JournalError } from '../../src/journal/errors.js';
import { StartFacts } from '../../src/daemon/start-facts.js';

/** An in-memory journal that refuses writes while `full`. */
function journal() {
  const rows: StoredRowLike[] = [];
  const j = {
    full: true,
    rows,
    append(r: readonly FactRowLike[]): StoredRowLike[] {
      if (j.full) throw new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', 'cannot write to the journal\'s staging file x: ENOSPC');
      const out = r.map((x) => ({ ...x, seq: rows.length + 1, host: 'h' }));
      for (const o of out) rows.push(o);
      return out.map((o, i) => ({ ...o, seq: rows.length - out.length + i + 1 }));
    },
  };
  return j;
}

const started = fact('DaemonStarted', '2026-01-01T00:00:00.000Z', { pid: 1, version: 'v', lockspace: null, held: 0 } as never) as NewFact;

test('refused start facts are folded, wait, and go first in the next append', () => {
  const j = journal();
  const logs: string[] = [];
  const stored: string[] = [];
  const folded: string[] = [];
  const sf = new StartFacts(j, { stageFile: 'x-stage', log: (_l, m) => logs.push(m), remind: () => {}, stored: (f) => stored.push(...f.map((x) => x.kind)) });
  sf.record([started], (f) => j.append(f.map((x) => ({ kind: x.kind, at: x.at, payload: x.payload }))), (f) => folded.push(f.kind), () => {});
  sf.stop();
  assert.equal(folded, ['DaemonStarted']);
  assert.is(sf.pending, 1);
  assert.ok(logs[0]!.includes('JOURNAL FULL AT START') && logs[0]!.includes('x-stage'));
  assert.is(sf.status()?.facts, 1);
  // Still full: a command's append is refused and nothing is written.
  assert.throws(() => sf.append([{ kind: 'LockAcquired', at: 'a', payload: {} }]));
  assert.is(j.rows.length, 0);
  // Room again: the waiting fact goes first, the caller gets only its own rows.
  j.full = false;
  const mine = sf.append([{ kind: 'LockAcquired', at: 'a', payload: {} }]);
  assert.equal(j.rows.map((r) => r.kind), ['DaemonStarted', 'LockAcquired']);
  assert.equal(mine.map((r) => [r.kind, r.seq]), [['LockAcquired', 2]]);
  assert.equal(stored, ['DaemonStarted']);
  assert.is(sf.pending, 0);
  assert.is(sf.status(), null);
});

test('an error other than a refused write still fails the start', () => {
  const j = journal();
  const sf = new StartFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {} });
  assert.throws(() => sf.record([started], () => { throw new JournalError('VMLOCKD_ERR_JOURNAL_FORKED', 'forked'); }, () => {}, () => {}), /forked/);
  assert.is(sf.pending, 0);
});

test.run();
