// review27c F2b (MEDIUM): a clock step back seen while the journal refuses writes (a full state
// directory) went into the group commit (Engine.watchClock, or now() ahead of a command's facts);
// the refused flush aborted the batch and the ClockStepped was in neither the journal nor the waiting
// facts: `audit --at` a moment in its window answered by the labels alone. Now a refused batch's
// ClockStepped waits (EngineOptions.keep: the daemon's WaitingFacts.later) and is journaled once there
// is room, ahead of every fact stamped after it. Fails before: the journal never gets the ClockStepped.
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import type { FactRowLike, StoredRowLike } from '../../src/engine/journal-port.js';
import { JournalError } from '../../src/journal/errors.js';
import { WaitingFacts } from '../../src/daemon/waiting-facts.js';
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

const tick = () => new Promise((r) => setImmediate(r));

function setup() {
  const dir = tmpdir('vmlockd-r27c-f2b-');
  const j = journal();
  const logs: string[] = [];
  const said: string[] = [];
  const waiting = new WaitingFacts(j, { stageFile: 'x-stage', log: () => {}, remind: () => {}, stored: () => {}, lost: (f) => said.push(f.kind) });
  const c = { wall: Date.parse('2026-12-01T06:00:00.000Z'), mono: 1_000 };
  const clock = new FactClock({ wall: () => c.wall, mono: () => c.mono });
  const locker = new Locker('h', { fileLockspaceDir: path.join(dir, 'ls') });
  const engine = new Engine({
    host: 'h',
    journal: waiting,
    locker,
    rules: { fileLockspaceDir: path.join(dir, 'ls') } as never,
    state: initialState(),
    reload: () => {
      const s = initialState();
      return s;
    },
    keep: (facts, e) => waiting.later(facts, e),
    log: (_l, m) => logs.push(m),
    clock,
  });
  // 10 s pass, then the wall clock is stepped back 60 s (NTP, date -s).
  const step = () => {
    c.mono += 10_000;
    c.wall += 10_000 - 60_000;
  };
  const close = () => {
    waiting.stop();
    engine.stop();
    locker.closeAll();
  };
  return { j, waiting, engine, step, close, c, said };
}

const changed = (at: number) => fact('ConfigChanged', new Date(at).toISOString(), { changes: [], fingerprint: 'f', trigger: 'watch' }) as NewFact;

test("a step the clock watch sees while the disk is full waits and is journaled once there is room, before the facts stamped after it", async () => {
  const { j, waiting, engine, step, close, c, said } = setup();
  try {
    step();
    engine.watchClock();
    await tick();
    await tick();
    assert.is(waiting.pending, 1, 'the ClockStepped waits for room');
    assert.equal(said, ['ClockStepped'], 'the step is logged at once, not when the disk has room');
    j.full = false;
    // A fact made after the step: journaled behind it, labelled at the floor with its clock reading.
    const stored = engine.recordOrWait([changed(c.wall)], () => false);
    assert.equal(j.rows.map((r) => r.kind), ['ClockStepped', 'ConfigChanged']);
    assert.is(stored.length, 1);
    assert.is(stored[0]!.seq, 2);
    const p = j.rows[0]!.payload as { from: string; to: string; seenBy: string };
    assert.is(p.seenBy, 'monotonic');
    assert.ok(p.to < p.from);
    assert.is(j.rows[1]!.at, p.from, 'the fact after the step is labelled at the floor');
    assert.ok(typeof (j.rows[1]!.payload as { wallAt?: unknown }).wallAt === 'string');
  } finally {
    close();
  }
});

test("a step seen ahead of a command's fact whose group commit is refused waits (the command is refused)", async () => {
  const { j, waiting, engine, step, close } = setup();
  try {
    step();
    let reply: unknown;
    engine.rejectThen('json', new Error('bad line'), 'x', (r) => (reply = r));
    await tick();
    await tick();
    assert.is((reply as { code?: string }).code, 'VMLOCKD_ERR_JOURNAL', 'the command is refused with the journal\'s error');
    assert.is(waiting.pending, 1, 'the ClockStepped waits for room; the refused InputRejected does not');
    j.full = false;
    waiting.append([]);
    assert.equal(j.rows.map((r) => r.kind), ['ClockStepped']);
  } finally {
    close();
  }
});

// clock27 leftover (a): a start's facts refused by a full disk waited with their raw times (the
// engine's stamped copy was thrown away with the refusal), so after a clock set back across the
// restart they went back along seq, and the start's ClockStepped (made by monotone()) was lost.
// Fails before: the waiting DaemonStarted keeps the raw time and no ClockStepped is journaled.
test("a start's facts that wait on a full disk carry the fact clock's labels and the start's ClockStepped", () => {
  const dir = tmpdir('vmlockd-clock27a-');
  const j = journal();
  const waiting = new WaitingFacts(j, { stageFile: 'x-stage', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {} });
  // The journal's last fact at 06:05; the clock was set back to 06:02 while the daemon was stopped.
  const wall = Date.parse('2026-12-01T06:02:00.000Z');
  const clock = new FactClock({ last: { at: '2026-12-01T06:05:00.000Z' }, wall: () => wall, mono: () => 1_000 });
  const locker = new Locker('h', { fileLockspaceDir: path.join(dir, 'ls') });
  const engine = new Engine({ host: 'h', journal: waiting, locker, rules: { fileLockspaceDir: path.join(dir, 'ls') } as never, state: initialState(), reload: () => initialState(), clock });
  try {
    const at = new Date(wall).toISOString();
    const started = fact('DaemonStarted', at, { pid: 1, version: 'v', lockspace: null, held: 0 } as never) as NewFact;
    const folded: string[] = [];
    waiting.record([started], (f, wait) => engine.recordOrWait(f, wait), (f) => folded.push(f.kind));
    waiting.stop();
    assert.is(waiting.startPending, 2, 'the DaemonStarted and the start\'s ClockStepped wait');
    j.full = false;
    waiting.append([]);
    assert.equal(j.rows.map((r) => r.kind), ['DaemonStarted', 'ClockStepped']);
    assert.is(j.rows[0]!.at, '2026-12-01T06:05:00.000Z', 'labelled at the floor, not back along seq');
    assert.is((j.rows[0]!.payload as { wallAt?: string }).wallAt, at);
    assert.equal(j.rows[1]!.payload, { from: '2026-12-01T06:05:00.000Z', to: at, backMs: 180_000, seenBy: 'start' });
  } finally {
    waiting.stop();
    locker.closeAll();
  }
});

test.run();
