// The start's proof that another host held a disk in the gap (locker.ts gapIntruder): which records a
// re-take found are another VM's grant since this host's journaled one, and which are not.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ExclusiveRecord } from '../../src/engine/holder-record.js';
import { gapIntruder } from '../../src/engine/locker.js';

const VM1 = { uuid: '11111111-1111-4111-8111-111111111111', name: 'web1' };
const VM2 = { uuid: '22222222-2222-4222-8222-222222222222', name: 'intruder' };
const rec = (o: Partial<ExclusiveRecord>): ExclusiveRecord => ({ v: 1, mode: 'free', gen: 8, host: 'hv-b', pid: 42, since: '2026-11-30T17:00:00.000Z', disk: '/images/a.img', vm: VM2, ...o });
const held = [{ owner: VM1, generation: 7 }];

test('another host granted another VM a generation above ours, and released it: the intruder, named', () => {
  assert.equal(gapIntruder(rec({}), 'hv-a', held), { host: 'hv-b', mode: 'exclusive', since: '2026-11-30T17:00:00.000Z', generation: 8, pid: 42, owner: VM2 });
  assert.is(gapIntruder(rec({ mode: 'exclusive', gen: 12 }), 'hv-a', held)?.generation, 12);
});

test('no proof, no intruder: no record, our own record, a generation not above ours, no journaled generation', () => {
  assert.is(gapIntruder(undefined, 'hv-a', held), undefined);
  assert.is(gapIntruder(rec({ host: 'hv-a', gen: 9 }), 'hv-a', held), undefined);
  assert.is(gapIntruder(rec({ gen: 7 }), 'hv-a', held), undefined);
  assert.is(gapIntruder(rec({ gen: 3 }), 'hv-a', held), undefined);
  assert.is(gapIntruder(rec({}), 'hv-a', [{}]), undefined);
});

// review23c: the record cannot tell a migration from the same VM started again on another host (an
// HA restart, split brain), and a later grant to the same VM hides an earlier one to another VM.
test('the same VM granted on another host in the gap is named too: a migration and a split brain look alike', () => {
  assert.is(gapIntruder(rec({ vm: VM1 }), 'hv-a', held)?.owner?.uuid, VM1.uuid);
});

test.run();
