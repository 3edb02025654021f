// The control API's pages (GET /v1/audit: limit, then after_seq) read a disk's or VM's facts through
// that filter's own index (review25c F4: the rowid range from after_seq, with the disk and owner
// indexes switched off, scanned every later fact: 0.2-0.35 s a page at 238k facts, on the event
// loop); an unfiltered page reads the rowid range; a follow-up read (afterSeq without page) keeps the range.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_AUDIT_LIMIT } from '../../src/daemon/api-server.js';
import { Journal } from '../../src/journal/journal.js';

test('a page of a disk or VM is read through its index, in seq order', () => {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-page-')), 'journal.db'), { host: 'h' });
  try {
    const page = { limit: DEFAULT_AUDIT_LIMIT, page: true };
    for (const afterSeq of [undefined, 5000]) {
      const at = afterSeq === undefined ? {} : { afterSeq };
      const disk = j.queryPlan({ disk: '/d/1', ...page, ...at });
      assert.match(disk, /USING INDEX facts_disk_at/, disk);
      assert.match(disk, /TEMP B-TREE FOR ORDER BY/, `seq order: ${disk}`);
      const vm = j.queryPlan({ owner: 'web1', ...page, ...at });
      assert.match(vm, /USING INDEX facts_owner_at/, vm);
    }
    const all = j.queryPlan({ ...page, afterSeq: 5000 });
    assert.match(all, /SEARCH facts USING INTEGER PRIMARY KEY \(rowid>\?\)/, all);
    assert.not.match(all, /TEMP B-TREE/, all);
    const first = j.queryPlan(page);
    assert.not.match(first, /TEMP B-TREE/, `the first unfiltered page reads the rowid range: ${first}`);
    // A follow-up window (audit --follow) is not a page: the range drives.
    const follow = j.queryPlan({ disk: '/d/1', afterSeq: 5000 });
    assert.match(follow, /rowid>\?/, follow);
  } finally {
    j.close();
  }
});

test.run();
