import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChainBudget, freeFloor } from '../../src/cli/cluster-cache-bounds.js';

const seg = (j: string) => [{ name: `${j}-0000000000000001.seg`, journalId: j, firstSeq: 1 }];

test('freeFloor: 10% of the filesystem, at most 512 MiB', () => {
  assert.is(freeFloor(16 * 1024 * 1024), Math.floor((16 * 1024 * 1024) / 10));
  assert.is(freeFloor(100 * 1024 ** 3), 512 * 1024 * 1024);
});

test('ChainBudget: cached chains first, then by journal id, per host and in all', () => {
  const b = new ChainBudget(2, 3);
  const ids = ['0000000000000001', '0000000000000002', '0000000000000003'];
  // All "cached" (no segment read): the ones held win, in id order.
  const cached = new Set(['0000000000000003', '0000000000000002', '0000000000000001']);
  const a = b.plan('/nonexistent', new Map(ids.map((j) => [j, seg(j)])), (j) => cached.has(j));
  assert.equal([...a.admit].filter(([, v]) => v === 'read').map(([j]) => j).sort(), ['0000000000000001', '0000000000000002']);
  assert.match(a.over ?? '', /1 journal\(s\) not read .* 2 per host directory.*0000000000000003/);
  // The second host's new chains (not cached; unreadable here, so counted as holding facts) get what
  // is left of the total (3 - 2 = 1).
  const c = b.plan('/nonexistent', new Map(ids.map((j) => [j, seg(j)])), () => false);
  assert.is([...c.admit].filter(([, v]) => v === 'read').length, 1);
  assert.match(c.over ?? '', /2 journal\(s\) not read .* 3 in all/);
});

test('ChainBudget: a chain the cache holds is read even when new chains of hosts before it used the bound in all', () => {
  const b = new ChainBudget(5, 2);
  const ids = ['0000000000000001', '0000000000000002', '0000000000000003'];
  b.plan('/nonexistent', new Map(ids.map((j) => [j, seg(j)])), () => true);
  const c = b.plan('/nonexistent', new Map([['00000000000000bb', seg('00000000000000bb')]]), () => true);
  assert.is(c.admit.get('00000000000000bb'), 'read');
  assert.is(c.over, undefined);
});

test('ChainBudget: an unreadable chain not cached counts as holding facts (the loader names it)', () => {
  const b = new ChainBudget(1, 10);
  const a = b.plan('/nonexistent', new Map([['00000000000000aa', seg('00000000000000aa')]]), () => false);
  assert.is(a.admit.get('00000000000000aa'), 'read');
});

test.run();
