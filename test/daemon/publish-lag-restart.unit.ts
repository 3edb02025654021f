// aud31 LOW 3 and LOW 4 (review30): `publish_lag_seconds` (and status.publication.lagSeconds) for the
// facts journaled before this process started. Both used to be timed by the fact's stored label
// against the wall clock: after a restart with the clock set back (the labels then lie in the clock's
// future) the gauge read 0 while the facts waited (LOW 3); and before the publish worker's first
// progress `published` was 0, so the oldest "unpublished" fact was the journal's first, and the gauge
// read the journal's age, hours, though meta.published_through said all but a few were published
// (LOW 4). Now such facts count from this process's start (a monotonic mark at the process's time
// origin), and the publisher starts from meta.published_through. A real Journal and a Publication
// switched on for a lockspace with no id file (so no worker thread starts: it waits, as the daemon
// does when the lockspace is away).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { Publication } from '../../src/daemon/publisher.js';

const HOUR = 3_600_000;

/** A journal of `n` facts labelled from `at` on, one ms apart, with meta.published_through `through` (none: unset). */
function journal(n: number, at: number, through?: number): Journal {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-lag-restart-')), 'journal.db'), { host: 'h' });
  const rows: FactRow[] = [];
  for (let i = 0; i < n; i++) rows.push({ kind: 'ConfigChanged', at: new Date(at + i).toISOString(), payload: { changed: [], from: 'test' } as never });
  j.append(rows);
  if (through !== undefined) j.db.prepare(`INSERT OR REPLACE INTO meta (key, value) VALUES ('published_through', ?)`).run(String(through));
  return j;
}

async function publication(j: Journal): Promise<Publication> {
  const p = new Publication(j, () => {});
  // A lockspace with no id file: publication is on, its worker waits (no thread), nothing is published.
  await p.configure({ enabled: true, lockspace: mkdtempSync(join(tmpdir(), 'vmlockd-lag-ls-')), host: 'h', segmentBytes: 1 << 20, retainDays: 0 });
  return p;
}

test('LOW 3: facts journaled before a restart with the clock set back are not "waited 0 s"', async () => {
  // The previous run's clock was an hour ahead: its facts are labelled in this clock's future.
  const j = journal(50, Date.now() + HOUR);
  const p = await publication(j);
  await new Promise((r) => setTimeout(r, 30));
  const lag = p.lag(50);
  assert.is(lag.facts, 50);
  const up = performance.now() / 1000;
  assert.ok(lag.seconds > 0, `publish_lag_seconds read ${lag.seconds} while 50 facts wait (the labels lie in the clock's future)`);
  assert.ok(lag.seconds <= up, `lag ${lag.seconds} s, longer than this process has run (${up} s)`);
  await p.close();
  j.close();
});

test('LOW 4: right after a restart the gauge is not the journal\'s age', async () => {
  // Facts from 5 hours ago; the previous run published through seq 95 of 100 (meta.published_through).
  const j = journal(100, Date.now() - 5 * HOUR, 95);
  const p = await publication(j);
  const lag = p.lag(100);
  const up = performance.now() / 1000;
  assert.is(lag.facts, 5, `${lag.facts} facts counted as waiting; meta.published_through says 5`);
  assert.ok(lag.seconds <= up, `publish_lag_seconds read ${lag.seconds} s (the journal's age), longer than this process has run (${up} s)`);
  await p.close();
  j.close();
});

test('facts this process journals count from when it noted them', async () => {
  const j = journal(10, Date.now(), 10);
  const p = await publication(j);
  assert.equal(p.lag(10), { facts: 0, seconds: 0 });
  await new Promise((r) => setTimeout(r, 20));
  p.notify(12, 11);
  const lag = p.lag(12);
  assert.is(lag.facts, 2);
  assert.ok(lag.seconds < 0.015, `waited ${lag.seconds} s, noted just now`);
  await p.close();
  j.close();
});

test.run();
