// The facts' clock (decision 0029): times never go back along the journal; a step back of the wall
// clock (seen against the monotonic clock while running, against the journal's last fact at a start)
// is reported once with its window, and facts made while the clock is behind keep its reading.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FactClock } from '../../src/engine/fact-clock.js';

const T0 = Date.parse('2026-11-25T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

/** A wall clock and a monotonic clock that the test moves: `run` moves both, `step` the wall clock alone. */
function clocks(wall0 = T0) {
  let wall = wall0;
  let mono = 1000;
  return {
    wall: () => wall,
    mono: () => mono,
    run: (ms: number) => {
      wall += ms;
      mono += ms;
    },
    step: (ms: number) => {
      wall += ms;
    },
  };
}

test('without a step the wall clock is the time, and no step is reported', () => {
  const c = clocks();
  const fc = new FactClock({ wall: c.wall, mono: c.mono });
  assert.equal(fc.now(), { at: iso(T0) });
  c.run(1500);
  assert.equal(fc.now(), { at: iso(T0 + 1500) });
  assert.equal(fc.steps(), []);
});

test('a step back while running: reported once with its window, facts held at the floor with the clock reading, until the clock passes it', () => {
  const c = clocks();
  const fc = new FactClock({ wall: c.wall, mono: c.mono });
  c.run(300_000); // 10:05
  assert.is(fc.now().at, '2026-11-25T10:05:00.000Z');
  c.run(500);
  c.step(-180_000); // set back to 10:02:00.5
  fc.look();
  const steps = fc.steps();
  assert.is(steps.length, 1);
  assert.equal(steps[0], { from: '2026-11-25T10:05:00.500Z', to: '2026-11-25T10:02:00.000Z', backMs: 180_000, seenBy: 'monotonic' });
  assert.equal(fc.steps(), [], 'reported once');
  c.run(60_000); // 10:03:00.5 on the stepped clock
  assert.equal(fc.now(), { at: '2026-11-25T10:05:00.500Z', wall: '2026-11-25T10:03:00.500Z' });
  // A fact made elsewhere with its maker's reading: the same.
  assert.equal(fc.stamp('2026-11-25T10:03:00.700Z'), { at: '2026-11-25T10:05:00.500Z', wall: '2026-11-25T10:03:00.700Z' });
  c.run(121_000); // 10:05:01.5: past the floor again
  assert.equal(fc.now(), { at: '2026-11-25T10:05:01.500Z' });
  c.run(10);
  assert.equal(fc.now(), { at: '2026-11-25T10:05:01.510Z' });
  assert.equal(fc.steps(), []);
});

test('a step back smaller than the tolerance is only clamped: no step, no wall reading', () => {
  const c = clocks();
  const fc = new FactClock({ wall: c.wall, mono: c.mono });
  c.run(10_000);
  fc.now();
  c.step(-400);
  assert.equal(fc.now(), { at: iso(T0 + 10_000) });
  assert.equal(fc.steps(), []);
});

test('a look whose clock reads were far apart (the thread preempted between them) is no step', () => {
  const c = clocks();
  let stall = 0;
  // The monotonic clock moves 2 s between the two reads of one look; the wall clock was read in between.
  const fc = new FactClock({ wall: c.wall, mono: () => c.mono() + (stall++ === 1 ? 2000 : 0) });
  stall = 0;
  fc.look();
  assert.equal(fc.steps(), []);
  c.run(1000);
  fc.look();
  assert.equal(fc.steps(), []);
});

test('a forward step moves the baseline: only a later step back counts, by its own size', () => {
  const c = clocks();
  const fc = new FactClock({ wall: c.wall, mono: c.mono });
  c.step(3_600_000);
  assert.is(fc.now().at, iso(T0 + 3_600_000));
  assert.equal(fc.steps(), []);
  c.run(1000);
  c.step(-3_600_000);
  fc.look();
  const [s] = fc.steps();
  assert.is(s?.backMs, 3_600_000);
  assert.is(s?.seenBy, 'monotonic');
});

test('at a start: the clock behind the journal\'s last fact is a step, and the start\'s facts are held at that fact\'s time', () => {
  const c = clocks(T0 + 120_000); // 10:02 now, the last fact at 10:05
  const fc = new FactClock({ wall: c.wall, mono: c.mono, last: { at: '2026-11-25T10:05:00.000Z' } });
  assert.equal(fc.steps(), [{ from: '2026-11-25T10:05:00.000Z', to: '2026-11-25T10:02:00.000Z', backMs: 180_000, seenBy: 'start' }]);
  assert.equal(fc.stamp('2026-11-25T10:02:00.000Z'), { at: '2026-11-25T10:05:00.000Z', wall: '2026-11-25T10:02:00.000Z' });
});

test('at a start inside a stretch the last run left (its last fact labelled ahead of its clock): no new step, still held', () => {
  const c = clocks(T0 + 200_000); // 10:03:20; the last fact was made at 10:03 and labelled 10:05
  const fc = new FactClock({ wall: c.wall, mono: c.mono, last: { at: '2026-11-25T10:05:00.000Z', wallAt: '2026-11-25T10:03:00.000Z' } });
  assert.equal(fc.steps(), []);
  assert.equal(fc.now(), { at: '2026-11-25T10:05:00.000Z', wall: '2026-11-25T10:03:20.000Z' });
  // Stepped back again below that fact's own clock reading: a new step.
  const d = clocks(T0 + 60_000);
  const fd = new FactClock({ wall: d.wall, mono: d.mono, last: { at: '2026-11-25T10:05:00.000Z', wallAt: '2026-11-25T10:03:00.000Z' } });
  assert.equal(fd.steps().map((s) => [s.from, s.to, s.backMs]), [['2026-11-25T10:05:00.000Z', '2026-11-25T10:01:00.000Z', 120_000]]);
});

test('at a start with the clock ahead of the journal: nothing to say', () => {
  const c = clocks();
  const fc = new FactClock({ wall: c.wall, mono: c.mono, last: { at: '2026-11-25T09:00:00.000Z' } });
  assert.equal(fc.steps(), []);
  assert.equal(fc.now(), { at: iso(T0) });
});

test.run();
