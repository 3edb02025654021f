import { Subject, from, map, of, take, throwError, type Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SYNC_DONE, inLanes } from '../../src/engine/pipeline.js';

interface Item {
  key: string;
  n: number;
}

test('given synchronous work, when items arrive, then each is handled at once and in arrival order', () => {
  const seen: number[] = [];
  from([{ key: 'a', n: 1 }, { key: 'b', n: 2 }, { key: 'a', n: 3 }])
    .pipe(inLanes((i: Item) => i.key, (i) => of(i.n)))
    .subscribe((n) => seen.push(n));
  assert.equal(seen, [1, 2, 3]);
});

test('given slow work, when one lane is busy, then its next item waits while other lanes run (marbles)', () => {
  const scheduler = new TestScheduler((a, b) => assert.equal(a, b));
  scheduler.run(({ cold, hot, expectObservable }) => {
    // Each item takes 3 frames; a1 and a2 share lane "a", b1 runs beside them.
    const input = hot<string>('-x-y-z|', { x: 'a1', y: 'b1', z: 'a2' } as never);
    const work = (id: string): Observable<string> => cold('---(r|)', { r: id });
    const out = input.pipe(inLanes((id) => id[0]!, work));
    // a1: frames 1..4; b1: 3..6; a2 arrives at 5, waits for nothing (a1 done at 4): 5..8.
    expectObservable(out).toBe('----x-y-(z|)', { x: 'a1', y: 'b1', z: 'a2' });
  });
});

test('given slow work, when two items of one lane overlap, then the second starts only after the first ends', () => {
  const scheduler = new TestScheduler((a, b) => assert.equal(a, b));
  scheduler.run(({ cold, hot, expectObservable }) => {
    const input = hot<string>('-xy|', { x: 'a1', y: 'a2' } as never);
    const out = input.pipe(inLanes((id) => id[0]!, (id) => cold('----(r|)', { r: id })));
    expectObservable(out).toBe('-----x---(y|)', { x: 'a1', y: 'a2' });
  });
});

test('given many queued items in one lane with synchronous work, then none is lost and order holds (no recursion blow-up)', () => {
  const input = new Subject<Item>();
  const gate = new Subject<void>();
  const seen: number[] = [];
  let first = true;
  input
    .pipe(
      inLanes(
        (i) => i.key,
        (i) => {
          if (first) {
            first = false;
            return gate.pipe(take(1), map(() => i.n));
          }
          return of(i.n);
        },
      ),
    )
    .subscribe((n) => seen.push(n));
  for (let n = 0; n < 50_000; n++) input.next({ key: 'a', n });
  assert.is(seen.length, 0);
  gate.next();
  assert.is(seen.length, 50_000);
  assert.ok(seen.every((n, i) => n === i));
});

test('completes once the source completes and every lane has drained', () => {
  let done = false;
  from([{ key: 'a', n: 1 }])
    .pipe(inLanes((i: Item) => i.key, (i) => of(i.n)))
    .subscribe({ complete: () => (done = true) });
  assert.ok(done);
});

test('an error from the work reaches the subscriber (the engine catches per command before that)', () => {
  let error: unknown;
  from([{ key: 'a', n: 1 }])
    .pipe(inLanes((i: Item) => i.key, () => throwError(() => new Error('boom'))))
    .subscribe({ error: (e: unknown) => (error = e) });
  assert.match(String(error), 'boom');
});

test('work handled synchronously (SYNC_DONE) runs at once, keeps each lane in order, and waits behind an asynchronous item of its lane', () => {
  const input = new Subject<Item>();
  const gate = new Subject<number>();
  const done: number[] = [];
  let completed = false;
  input
    .pipe(
      inLanes(
        (i) => i.key,
        (i) => {
          if (i.n === 2) return gate.pipe(take(1), map(() => (done.push(i.n), i.n)));
          done.push(i.n);
          return SYNC_DONE;
        },
      ),
    )
    .subscribe({ complete: () => (completed = true) });
  input.next({ key: 'a', n: 1 });
  input.next({ key: 'a', n: 2 });
  input.next({ key: 'a', n: 3 });
  input.next({ key: 'b', n: 4 });
  // 3 waits behind 2 in lane a; 4 (lane b) runs at once.
  assert.equal(done, [1, 4]);
  gate.next(0);
  assert.equal(done, [1, 4, 2, 3]);
  input.complete();
  assert.ok(completed);
});

test('work that throws synchronously is an error for the subscriber, as a failing Observable is', () => {
  let error: unknown;
  from([{ key: 'a', n: 1 }])
    .pipe(
      inLanes(
        (i: Item) => i.key,
        (): typeof SYNC_DONE => {
          throw new Error('boom');
        },
      ),
    )
    .subscribe({ error: (e: unknown) => (error = e) });
  assert.match(String(error), 'boom');
});

test.run();
