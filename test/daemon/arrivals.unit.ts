// src/daemon/arrivals.ts: how long the oldest unpublished fact has waited, from marks of when facts
// became durable. Before, a fact still staged was timed from when publication last had nothing to do,
// and under a steady stream `publish_lag_seconds` read 5-15 s for facts ~0.2 s old.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Arrivals } from '../../src/daemon/arrivals.js';

function clock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

test('a steady stream: the oldest unpublished fact waited about one publication interval, not the stream\'s length', () => {
  const c = clock();
  const a = new Arrivals(100, 4096, c.now);
  // 20 s of facts, 10 every 5 ms; publication 200 facts behind the head.
  let head = 0;
  for (let i = 0; i < 4000; i++) {
    a.note(head + 1);
    head += 10;
    c.advance(5);
  }
  const waited = a.waited(head - 200 + 1)!;
  assert.ok(waited >= 100 && waited <= 200, `waited ${waited} ms`);
});

test('over-states by less than one grain, never under-states', () => {
  const c = clock();
  const a = new Arrivals(100, 4096, c.now);
  a.note(1); // facts 1.. at t=0
  c.advance(60);
  a.note(5); // inside the grain: no mark, counted from t=0
  c.advance(60);
  a.note(9); // t=120: a mark
  c.advance(30);
  assert.is(a.waited(1), 150);
  assert.is(a.waited(5), 150); // really 90: over by less than the grain
  assert.is(a.waited(9), 30);
});

test('facts from before the first mark have no time here (the caller reads their stored time)', () => {
  const c = clock();
  const a = new Arrivals(100, 4096, c.now);
  assert.is(a.waited(1), undefined);
  a.note(500);
  assert.is(a.waited(499), undefined);
  assert.is(a.waited(500), 0);
});

test('past the cap the marks are thinned: waits grow, never shrink, and the newest mark stays', () => {
  const c = clock();
  const a = new Arrivals(1, 64, c.now);
  for (let i = 0; i < 1000; i++) {
    a.note(i * 10 + 1);
    c.advance(1);
  }
  assert.ok(a.size <= 65, `size ${a.size}`);
  // Fact 5001 became durable at t=500; thinned, its wait is at least that.
  assert.ok(a.waited(5001)! >= 500, `waited ${a.waited(5001)}`);
  assert.ok(a.waited(9991)! >= 0 && a.waited(9991)! < 5);
});

test('marks wholly published are let go', () => {
  const c = clock();
  const a = new Arrivals(1, 1 << 20, c.now);
  for (let i = 0; i < 5000; i++) {
    a.note(i + 1);
    c.advance(1);
  }
  a.waited(4990);
  assert.ok(a.size <= 11, `size ${a.size}`);
  assert.is(a.waited(4995), 5000 - 4994); // fact 4995 was noted at t=4994
});

test.run();
