// src/events/virtlockd/buffer-budget.ts: the protocol server's buffers, bounded in total across
// connections; past the bound the largest holders are named, largest first, until the rest fits.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BUFFERED_BYTES_MAX, BufferBudget } from '../../src/events/virtlockd/buffer-budget.js';

test('within the bound nobody is named; the total follows every change', () => {
  const b = new BufferBudget<string>(100);
  b.set('a', 40);
  b.set('b', 60);
  assert.is(b.total, 100);
  assert.equal(b.over(), []);
  b.set('a', 10);
  assert.is(b.total, 70);
  b.set('b', 0);
  assert.is(b.total, 10);
  assert.is(b.get('b'), 0);
});

test('past the bound the largest go first, only as many as needed; a small one is never named while a larger stands', () => {
  const b = new BufferBudget<string>(100);
  b.set('small', 5);
  b.set('big', 80);
  b.set('mid', 30);
  assert.equal(b.over(), ['big']);
  b.set('huge', 90);
  assert.equal(b.over(), ['huge', 'big']);
  b.set('huge', 0);
  b.set('big', 0);
  assert.equal(b.over(), []);
  assert.is(b.total, 35);
});

test('the default bound is two frames of the largest size (32 MiB each)', () => {
  assert.is(new BufferBudget<number>().max, BUFFERED_BYTES_MAX);
  assert.is(BUFFERED_BYTES_MAX, 64 * 1024 * 1024);
});

test.run();
