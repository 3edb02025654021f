// The deliberate collection after a burst (src/daemon/collect.ts, decision 0007).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectGarbage, collectWhenSettled } from '../../src/daemon/collect.js';

test('collectGarbage: a full collection is available and gives the garbage back', () => {
  const before = process.memoryUsage().heapUsed;
  let junk: unknown[] | undefined = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `fact ${i}` }));
  assert.ok((junk as unknown[]).length > 0);
  junk = undefined;
  assert.ok(collectGarbage());
  assert.ok(collectGarbage(), 'a second call works too');
  assert.ok(process.memoryUsage().heapUsed < before + 8 * 1024 * 1024, 'the 200k objects are gone');
});

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('collectWhenSettled: not while busy, once when busy() first says false, never again', async () => {
  let busy = true;
  let calls = 0;
  collectWhenSettled(() => busy, { afterMs: 0, everyMs: 5, maxMs: 60_000 }, () => calls++);
  await wait(60);
  assert.is(calls, 0);
  busy = false;
  await wait(60);
  assert.is(calls, 1);
  busy = true;
  busy = false;
  await wait(60);
  assert.is(calls, 1);
});

test('collectWhenSettled: waits afterMs, collects at maxMs even if still busy, and a cancel stops it', async () => {
  let calls = 0;
  const t0 = Date.now();
  let at = 0;
  collectWhenSettled(() => false, { afterMs: 300, everyMs: 5, maxMs: 60_000 }, () => ((at = Date.now() - t0), calls++));
  while (calls === 0 && Date.now() - t0 < 10_000) await wait(10);
  assert.is(calls, 1);
  assert.ok(at >= 300, `not before afterMs (called after ${at} ms)`);
  let busyCalls = 0;
  collectWhenSettled(() => true, { afterMs: 0, everyMs: 5, maxMs: 50 }, () => busyCalls++);
  for (let i = 0; i < 1000 && busyCalls === 0; i++) await wait(10);
  assert.is(busyCalls, 1, 'maxMs bounds the wait');
  let cancelled = 0;
  const cancel = collectWhenSettled(() => false, { afterMs: 50, everyMs: 5, maxMs: 60_000 }, () => cancelled++);
  cancel();
  await wait(150);
  assert.is(cancelled, 0);
});

test.run();
