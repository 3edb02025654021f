// review31a LOW (aud31 LOW 4 after a reload): the publisher now starts from meta.published_through at
// construction, but a live reload that turns publication off sets `published = 0` and removes the meta
// key (releaseCompactionNow), and turning it on again starts from 0: until the worker's first progress
// (never, while the lockspace is away) publish_lag_facts is the whole journal, as LOW 4 read before
// the fix. Same journal, same lockspace as publish-lag-restart.unit.ts's LOW 4 case, plus off and on.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { Publication } from '../../src/daemon/publisher.js';

test('publication off then on (a reload): lag facts are not the whole journal', async () => {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-r31a-lag-')), 'journal.db'), { host: 'h' });
  const rows: FactRow[] = [];
  for (let i = 0; i < 100; i++) rows.push({ kind: 'ConfigChanged', at: new Date(Date.now() - 5 * 3_600_000 + i).toISOString(), payload: { changed: [], from: 'test' } as never });
  j.append(rows);
  j.db.prepare(`INSERT OR REPLACE INTO meta (key, value) VALUES ('published_through', ?)`).run('95');
  const p = new Publication(j, () => {});
  const ls = mkdtempSync(join(tmpdir(), 'vmlockd-r31a-lag-ls-'));
  const on = { enabled: true, lockspace: ls, host: 'h', segmentBytes: 1 << 20, retainDays: 0 };
  await p.configure(on);
  assert.is(p.lag(100).facts, 5, 'precondition: the aud31 LOW 4 fix');
  await p.configure({ ...on, enabled: false });
  await p.configure(on);
  const lag = p.lag(100);
  assert.ok(lag.facts <= 5, `after off and on, ${lag.facts} facts counted as waiting (the whole journal); 95 were published before`);
  await p.close();
  j.close();
});

test.run();
