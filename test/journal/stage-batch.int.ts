// The staged journal's SQLite batches (issue 13): with the default delay (20 ms) the facts of
// commands a few milliseconds apart move into SQLite in one transaction. With 2 ms, a lone client's
// every other call started a transaction of its own, each writing a page per index and key to the
// WAL (~16-20 KB per call, bench/README.md).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal } from '../../src/journal/journal.js';

const dirs: string[] = [];
test.after(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const at = (i: number) => new Date(Date.parse('2026-11-30T10:00:00.000Z') + i).toISOString();
const row = (i: number) => ({ kind: 'LockAcquired', at: at(i), disk: `/d/${i}`, owner: `vm-${i}`, payload: { i } });

test('given a staged journal with the default delay, when a second append comes 5 ms after the first, then both wait for one move into SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-stage-batch-'));
  dirs.push(dir);
  const j = Journal.open(join(dir, 'journal.db'), { host: 'h', staged: true });
  try {
    j.append([row(1), row(2)]);
    // A 5 ms timer runs before the stage's 20 ms one (timers run in expiry order, even after a stall).
    const pendingAt5 = await new Promise<number>((r) =>
      setTimeout(() => {
        const n = j.pendingCount;
        j.append([row(3)]);
        r(n);
      }, 5),
    );
    assert.is(pendingAt5, 2, 'the first append was not moved on its own');
    assert.is(j.pendingCount, 3);
    const deadline = Date.now() + 10_000;
    while (j.pendingCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.is(j.pendingCount, 0, 'moved by the timer');
    assert.is(j.lastSeq(), 3);
  } finally {
    j.close();
  }
});

test.run();
