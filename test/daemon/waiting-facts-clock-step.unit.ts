// review27c F2 (fixed: a batch carrying a ClockStepped waits on a full disk; past the bound the step is kept, never dropped).
// review27c F2: a clock step back seen while the journal refuses writes (a full state directory)
// throws the verifier's facts away. Engine.recordOrWait() (pipeline.ts) runs the facts through
// monotone(), which puts a ClockStepped in front of them when the clock just stepped back; on the
// refused write WaitingFacts.later() (waiting-facts.ts) refuses to keep any batch holding a kind that
// is neither a holding kind nor a note kind, and ClockStepped is neither (NOTE_KINDS lacks it, though
// evolve treats it as a note: state.ts). So the error is thrown on and nothing is folded in: the
// verifier's LeaseLost is neither in the state nor waiting for the journal (decision 0026's "a
// LeaseLost never journaled" again), and the ClockStepped that marks the audit window is lost too.
// Fails on main (a8e3a22): recordOrWait throws.
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import type { FactRowLike, StoredRowLike } from '../../src/engine/journal-port.js';
import { JournalError } from '../../src/journal/errors.js';
import { STEPS_KEPT, WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { Engine } from '../../src/engine/pipeline.js';
import { FactClock } from '../../src/engine/fact-clock.js';
import { Locker } from '../../src/engine/locker.js';
import { initialState } from '../../src/engine/state.js';
import { tmpdir } from '../helpers/daemon.js';

function journal() {
  const rows: StoredRowLike[] = [];
  const j = {
    full: true,
    rows,
    append(r: readonly FactRowLike[]): StoredRowLike[] {
      if (j.full) throw new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
      const out = r.map((x, i) => ({ ...x, seq: rows.length + i + 1, host: 'h' }));
      rows.push(...out);
      return out;
    },
  };
  return j;
}

const owner = { uuid: '11111111-1111-4111-8111-111111111111', name: 'vm1' };

test('a verifier LeaseLost refused by a full journal right after a clock step back still waits (in force, journaled later)', () => {
  const dir = tmpdir('vmlockd-r27c-clk-');
  const j = journal();
  const waiting = new WaitingFacts(j, { stageFile: 'x-stage', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {} });
  let wall = Date.parse('2026-12-01T06:00:00.000Z');
  let mono = 1_000;
  const clock = new FactClock({ wall: () => wall, mono: () => mono });
  const locker = new Locker('h', { fileLockspaceDir: path.join(dir, 'ls') });
  const engine = new Engine({ host: 'h', journal: waiting, locker, rules: { fileLockspaceDir: path.join(dir, 'ls') } as never, state: initialState(), reload: () => initialState(), clock });
  try {
    // 10 s pass, then the wall clock is stepped back 60 s (NTP, date -s).
    mono += 10_000;
    wall += 10_000 - 60_000;
    const lost = fact('LeaseLost', new Date(wall).toISOString(), { resource: 'r', name: 'n', lockspace: '/ls', kind: 'file', disk: '/d', path: '/d', owner, mode: 'exclusive', holder: {}, reason: 'replaced' } as never) as NewFact;
    let thrown: unknown;
    try {
      engine.recordOrWait([lost], (timed, e) => waiting.later(timed, e));
    } catch (e) {
      thrown = e;
    }
    assert.is(thrown, undefined, `the verifier's facts were thrown away with the journal's refusal: ${String(thrown)}`);
    assert.ok(waiting.pending >= 2, `the LeaseLost and the ClockStepped wait for room: ${waiting.pending}`);
    // Room again: both reach the journal.
    j.full = false;
    waiting.append([]);
    assert.equal(j.rows.map((r) => r.kind).sort(), ['ClockStepped', 'LeaseLost']);
  } finally {
    waiting.stop();
    locker.closeAll();
  }
});

const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const changed = (at: string) => fact('ConfigChanged', at, { changes: [], fingerprint: 'f', trigger: 'watch' }) as NewFact;
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' }) as NewFact;
const t = (s: number) => new Date(Date.UTC(2026, 11, 1, 6) + s * 1000).toISOString();

// review27c F2 remainder: past the bound (10,000 waiting facts, a full disk) a ClockStepped was a note
// and was dropped (counted in the FactsDropped): `audit --at` a moment in its window then answered by
// the labels alone. Fails before (the ClockStepped is not journaled; the FactsDropped counts it).
test('past the bound a ClockStepped is kept in its place, never dropped', () => {
  const j = journal();
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 1 });
  assert.ok(sf.later([changed(t(1))], REFUSED));
  // Past the bound from here: the note is dropped, the step is kept.
  assert.ok(sf.later([changed(t(2))], REFUSED));
  assert.ok(sf.later([step(t(10), t(3))], REFUSED));
  assert.ok(sf.later([changed(t(10))], REFUSED));
  sf.stop();
  const folded: string[] = [];
  sf.foldInto((f) => folded.push(f.kind));
  assert.equal(folded, ['ConfigChanged', 'ClockStepped', 'FactsDropped']);
  assert.is(sf.status()?.kept, 1);
  assert.is(sf.status()?.dropped?.count, 2);
  j.full = false;
  sf.append([]);
  assert.equal(j.rows.map((r) => r.kind), ['ConfigChanged', 'ClockStepped', 'FactsDropped']);
  assert.equal(j.rows[1]!.payload, { from: t(10), to: t(3), backMs: 7000, seenBy: 'monotonic' });
  assert.equal((j.rows[2]!.payload as { kinds: unknown }).kinds, { ConfigChanged: 2 });
  assert.is(sf.pending, 0);
});

test('past the bound the steps kept are bounded: a step past STEPS_KEPT is merged into the last kept (earliest to, latest from)', () => {
  const j = journal();
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  for (let i = 0; i < STEPS_KEPT + 10; i++) assert.ok(sf.later([step(t(1000 + i), t(100 + i))], REFUSED));
  sf.stop();
  assert.is(sf.status()?.kept, STEPS_KEPT);
  assert.is(sf.status()?.dropped, null, 'no step is dropped');
  j.full = false;
  sf.append([]);
  assert.is(j.rows.length, STEPS_KEPT);
  assert.ok(j.rows.every((r) => r.kind === 'ClockStepped'));
  const last = j.rows[STEPS_KEPT - 1]!;
  const p = last.payload as { from: string; to: string; merged?: number };
  assert.is(p.to, t(100 + STEPS_KEPT - 1), 'the earliest to of the merged steps');
  assert.is(p.from, t(1000 + STEPS_KEPT + 9), 'the latest from of the merged steps');
  assert.is(last.at, p.from);
  assert.is(p.merged, 11);
});

// engine29 (review28c): the merged step keeps the EARLIER step's place, so the loss made after that step
// stays in its pass (test/daemon/waiting-facts-merged-step-audit.unit.ts); the loss is relabelled to the
// merged step's `from` (its own label kept as wallAt), so still no label goes back along seq.
test('a merged step keeps the earlier step\'s place: no label goes back along seq', () => {
  const j = journal();
  const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  for (let i = 0; i < STEPS_KEPT; i++) assert.ok(sf.later([step(t(1000 + i), t(100 + i))], REFUSED));
  // A lock's loss after the last kept step, labelled at the floor then; then a step that raises it.
  const lostAt = t(1000 + STEPS_KEPT);
  const lostFact = fact('LeaseLost', lostAt, { resource: 'r', name: 'n', lockspace: '/ls', kind: 'file', disk: '/d', path: '/d', owner, mode: 'exclusive', holder: {}, reason: 'replaced' } as never) as NewFact;
  assert.ok(sf.later([lostFact], REFUSED));
  assert.ok(sf.later([step(t(2000), t(500))], REFUSED));
  sf.stop();
  j.full = false;
  sf.append([]);
  const kinds = j.rows.map((r) => r.kind);
  assert.is(kinds[kinds.length - 2], 'ClockStepped');
  assert.is(kinds[kinds.length - 1], 'LeaseLost');
  assert.is(j.rows[kinds.length - 1]!.at, t(2000));
  assert.is((j.rows[kinds.length - 1]!.payload as { wallAt?: string }).wallAt, lostAt);
  for (let i = 1; i < j.rows.length; i++) assert.ok(j.rows[i]!.at >= j.rows[i - 1]!.at, `seq ${i + 1} at ${j.rows[i]!.at} before ${j.rows[i - 1]!.at}`);
});

test.run();
