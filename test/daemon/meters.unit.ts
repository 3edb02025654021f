// Meters.factsSeen counts facts by kind with one increment per run of one kind (a start's 10,000
// Reacquired facts are one group): the counts must be those of one increment per fact.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Fact } from '../../src/engine/facts.js';
import { Meters } from '../../src/daemon/metrics.js';

const f = (kind: string, seq: number) => ({ kind, seq, at: '2026-11-30T10:00:00.000Z', host: 'h', payload: {} }) as unknown as Fact;

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('facts by kind: runs, interleaved kinds, LeaseLost also in its own counter, across calls', async () => {
  const m = new Meters({ version: 'test' });
  const kinds = ['Reacquired', 'Reacquired', 'Reacquired', 'LeaseLost', 'Reacquired', 'LeaseLost', 'LeaseLost', 'OwnerSeen'];
  m.factsSeen(kinds.map((k, i) => f(k, i + 1)));
  m.factsSeen([f('OwnerSeen', 9)]);
  m.factsSeen([]);
  const text = await m.registry.metrics();
  assert.is(sample(text, 'vmlockd_facts_total{kind="Reacquired"}'), 4);
  assert.is(sample(text, 'vmlockd_facts_total{kind="LeaseLost"}'), 3);
  assert.is(sample(text, 'vmlockd_facts_total{kind="OwnerSeen"}'), 2);
  assert.is(sample(text, 'vmlockd_lease_lost_total'), 3);
});

test.run();
