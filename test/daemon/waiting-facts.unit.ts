// src/daemon/waiting-facts.ts: the start's facts and the running daemon's facts no client waits for
// (the verifier's, a reload's) that the journal refused wait, folded in, and every later append carries
// them first in the same write (nothing is journaled ahead of them); past the bound, a FactsDropped.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import type { FactRowLike, StoredRowLike } from '../../src/engine/journal-port.js';
import { JournalError } from '../../src/journal/errors.js';
import { WaitingFacts } from '../../src/daemon/waiting-facts.js';

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
  const sf = new WaitingFacts(j, { stageFile: 'x-stage', log: (_l, m) => logs.push(m), remind: () => {}, stored: (f) => stored.push(...f.map((x) => x.kind)), lost: () => {} });
  sf.record([started], (f) => j.append(f.map((x) => ({ kind: x.kind, at: x.at, payload: x.payload }))), (f) => folded.push(f.kind));
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
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {} });
  assert.throws(() => sf.record([started], () => { throw new JournalError('VMLOCKD_ERR_JOURNAL_FORKED', 'forked'); }, () => {}), /forked/);
  assert.is(sf.pending, 0);
});

const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const owner = { uuid: '11111111-1111-4111-8111-111111111111', name: 'vm1' };
const lost = (at: string) => fact('LeaseLost', at, { resource: 'r', name: 'n', lockspace: '/ls', kind: 'file', disk: '/d', path: '/d', owner, mode: 'exclusive', holder: {}, reason: 'replaced' } as never) as NewFact;
const retaken = (at: string) => fact('Reacquired', at, { resource: 'r', name: 'n', lockspace: '/ls', kind: 'file', disk: '/d', path: '/d', owner, mode: 'exclusive' } as never) as NewFact;
const changed = (at: string) => fact('ConfigChanged', at, { changes: [], fingerprint: 'f', trigger: 'watch' }) as NewFact;

test('a running daemon\'s refused facts wait in order behind the start\'s, and go first in the next append', () => {
  const j = journal();
  const logs: string[] = [];
  const lostLogged: string[] = [];
  const stored: string[] = [];
  const sf = new WaitingFacts(j, { stageFile: 'x-stage', log: (_l, m) => logs.push(m), remind: () => {}, stored: (f) => stored.push(...f.map((x) => x.kind)), lost: (f) => lostLogged.push(f.kind) });
  sf.record([started], () => { throw REFUSED; }, () => {});
  assert.ok(sf.later([lost('2026-01-01T00:00:01.000Z'), retaken('2026-01-01T00:00:01.000Z')], REFUSED));
  assert.ok(sf.later([changed('2026-01-01T00:00:02.000Z')], REFUSED));
  sf.stop();
  assert.equal(lostLogged, ['LeaseLost'], 'a LeaseLost is logged when it starts waiting');
  assert.ok(logs.some((l) => l.includes('JOURNAL FULL:') && l.includes('LeaseLost, Reacquired') && l.includes('x-stage')));
  assert.is(sf.pending, 4);
  const st = sf.status()!;
  assert.is(st.facts, 4);
  assert.is(st.start, 1);
  assert.equal(st.kinds, { DaemonStarted: 1, LeaseLost: 1, Reacquired: 1, ConfigChanged: 1 });
  assert.is(sf.startStatus()?.facts, 1);
  assert.equal(sf.gauges().journal_facts_waiting!.value, 4);
  // A state rebuilt from the journal (a failed group commit) gets them folded in again, in order.
  const folded: string[] = [];
  sf.foldInto((f) => folded.push(f.kind));
  assert.equal(folded, ['DaemonStarted', 'LeaseLost', 'Reacquired', 'ConfigChanged']);
  // Still full: a command is refused and nothing is written.
  assert.throws(() => sf.append([{ kind: 'LockAcquired', at: 'a', payload: {} }]));
  assert.is(j.rows.length, 0);
  j.full = false;
  const mine = sf.append([{ kind: 'LockAcquired', at: '2026-01-01T00:00:03.000Z', payload: {} }]);
  assert.equal(j.rows.map((r) => r.kind), ['DaemonStarted', 'LeaseLost', 'Reacquired', 'ConfigChanged', 'LockAcquired']);
  assert.equal(mine.map((r) => [r.kind, r.seq]), [['LockAcquired', 5]]);
  assert.equal(stored, ['DaemonStarted', 'LeaseLost', 'Reacquired', 'ConfigChanged']);
  assert.is(sf.pending, 0);
  assert.is(sf.status(), null);
});

test('any error but a refused write is not kept (the caller throws it on)', () => {
  const sf = new WaitingFacts(journal(), { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {} });
  assert.not.ok(sf.later([changed('t')], new JournalError('VMLOCKD_ERR_JOURNAL_FORKED', 'forked')));
  assert.not.ok(sf.later([changed('t')], new Error('bug')));
  assert.is(sf.pending, 0);
  assert.is(sf.status(), null);
});

test('past the bound: notes are dropped (what waits stays a prefix), counted, and a FactsDropped follows the kept ones', () => {
  const j = journal();
  const reminded: string[] = [];
  const stored: string[] = [];
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: (m) => reminded.push(m), stored: (f) => stored.push(...f.map((x) => x.kind)), lost: () => {}, max: 3 });
  assert.ok(sf.later([lost('2026-01-01T00:00:01.000Z'), retaken('2026-01-01T00:00:01.000Z')], REFUSED));
  // Two more would pass the bound of 3: dropped, not one of them.
  assert.ok(sf.later([changed('2026-01-01T00:00:02.000Z'), changed('2026-01-01T00:00:02.000Z')], REFUSED));
  // One would fit, but something was dropped before it: dropped too.
  assert.ok(sf.later([changed('2026-01-01T00:00:03.000Z')], REFUSED));
  sf.stop();
  assert.is(sf.pending, 3, 'the two that wait and the FactsDropped to come');
  assert.equal(sf.status()?.dropped, { count: 3, kinds: { ConfigChanged: 3 }, from: '2026-01-01T00:00:02.000Z', to: '2026-01-01T00:00:03.000Z', superseded: 0 });
  assert.is(sf.gauges().journal_facts_dropped_total!.value, 3);
  assert.ok(reminded.some((m) => m.includes('FACTS DROPPED')));
  j.full = false;
  sf.append([{ kind: 'LockAcquired', at: '2026-01-01T00:00:04.000Z', payload: {} }]);
  assert.equal(j.rows.map((r) => r.kind), ['LeaseLost', 'Reacquired', 'FactsDropped', 'LockAcquired']);
  const d = j.rows[2]!.payload as { count: number; kinds: Record<string, number>; from: string; to: string; superseded?: number };
  assert.is(d.count, 3);
  assert.equal(d.kinds, { ConfigChanged: 3 });
  assert.is(d.superseded, undefined);
  assert.is(j.rows[2]!.at, '2026-01-01T00:00:03.000Z');
  assert.equal(stored, ['LeaseLost', 'Reacquired', 'FactsDropped']);
  assert.is(sf.status(), null);
  // The count of the metric stays (a total since start).
  assert.is(sf.gauges().journal_facts_dropped_total!.value, 3);
});

test('past the bound: a Reacquired after a kept LeaseLost is kept, never dropped (review26d F2)', () => {
  const j = journal();
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 1 });
  assert.ok(sf.later([lost('2026-01-01T00:00:01.000Z')], REFUSED));
  assert.ok(sf.later([changed('2026-01-01T00:00:02.000Z')], REFUSED));
  assert.ok(sf.later([retaken('2026-01-01T00:00:03.000Z')], REFUSED));
  sf.stop();
  const folded: string[] = [];
  sf.foldInto((f) => folded.push(f.kind));
  assert.equal(folded, ['LeaseLost', 'Reacquired', 'FactsDropped']);
  assert.is(sf.status()?.kept, 1);
  j.full = false;
  sf.append([]);
  assert.equal(j.rows.map((r) => r.kind), ['LeaseLost', 'Reacquired', 'FactsDropped']);
  assert.equal((j.rows[2]!.payload as { kinds: unknown }).kinds, { ConfigChanged: 1 });
});

test('a LibvirtVouched never waits: refused, the caller throws it on and folds nothing', () => {
  const sf = new WaitingFacts(journal(), { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {} });
  const v = fact('LibvirtVouched', '2026-01-01T00:00:01.000Z', { owner, libvirt: { uri: 'qemu:///system', host: 'h' }, source: 'virsh' }) as NewFact;
  assert.not.ok(sf.later([v], REFUSED));
  assert.is(sf.pending, 0);
});

test('the retry timer journals waiting facts alone once there is room', async () => {
  const j = journal();
  const stored: string[] = [];
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: (f) => stored.push(...f.map((x) => x.kind)), lost: () => {} });
  sf.later([changed('2026-01-01T00:00:01.000Z')], REFUSED);
  j.full = false;
  const t0 = Date.now();
  while (sf.pending > 0 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
  sf.stop();
  assert.equal(stored, ['ConfigChanged']);
  assert.equal(j.rows.map((r) => r.kind), ['ConfigChanged']);
});

test('a retry journals what the disk has room for, in order, in chunks; the rest waits (review26d F3)', async () => {
  // A journal with room for `room` more rows: an append that does not fit is refused whole (as the
  // staging file's write is), one that fits is written.
  const rows: StoredRowLike[] = [];
  let room = 0;
  let appends = 0;
  const j = {
    append(r: readonly FactRowLike[]): StoredRowLike[] {
      appends++;
      if (r.length > room) throw REFUSED;
      room -= r.length;
      const out = r.map((x, i) => ({ ...x, seq: rows.length + i + 1, host: 'h' }));
      rows.push(...out);
      return out;
    },
  };
  const stored: number[] = [];
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: (f) => stored.push(...f.map((x) => x.seq)), lost: () => {} });
  const at = (i: number) => new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  sf.record([started], () => { throw REFUSED; }, () => {});
  for (let i = 0; i < 2500; i++) assert.ok(sf.later([changed(at(i))], REFUSED));
  assert.is(sf.pending, 2501);
  // Room for 1,200 of them: the retry journals 1,200, oldest first; 1,301 still wait.
  room = 1200;
  const t0 = Date.now();
  while (rows.length < 1200 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
  assert.is(rows.length, 1200, 'nothing was journaled though the disk had room for part of the waiting facts');
  assert.is(sf.pending, 1301);
  assert.is(sf.startPending, 0);
  assert.is(rows[0]!.kind, 'DaemonStarted');
  // Still full: a command's append (which carries every waiting fact first) is refused.
  assert.throws(() => sf.append([{ kind: 'LockAcquired', at: at(3000), payload: {} }]));
  // Room for the rest: journaled in order behind the first ones.
  room = 5000;
  const t1 = Date.now();
  while (sf.pending > 0 && Date.now() - t1 < 10_000) await new Promise((r) => setTimeout(r, 50));
  sf.stop();
  assert.is(sf.pending, 0);
  assert.is(rows.length, 2501);
  assert.equal(rows.map((r) => r.seq), rows.map((_r, i) => i + 1));
  for (let i = 1; i < rows.length; i++) assert.is(rows[i]!.at, at(i - 1), `row ${i} out of order`);
  assert.equal(stored, rows.map((r) => r.seq), 'stored() was told every journaled fact once, in order');
  assert.is(sf.status(), null);
  assert.ok(appends < 100, `${appends} appends`);
});

test.run();
