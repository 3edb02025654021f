import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal } from '../../src/journal/journal.js';
import { ensureJournalId, journalIdOf } from '../../src/journal/journal-id.js';
import { isJournalId } from '../../src/journal/segment.js';

test('journal_id: none until made, made once and kept across opens, a new journal gets another, readers see it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-jid-'));
  try {
    const file = join(dir, 'journal.db');
    const a = Journal.open(file, { host: 'h1' });
    assert.is(journalIdOf(a), undefined);
    const id = ensureJournalId(a);
    assert.ok(isJournalId(id));
    assert.is(ensureJournalId(a), id);
    a.close();
    const r = Journal.open(file, { host: 'h1', readonly: true });
    assert.is(journalIdOf(r), id);
    r.close();
    const b = Journal.open(file, { host: 'h1' });
    assert.is(ensureJournalId(b), id);
    b.close();
    const other = Journal.open(join(dir, 'other.db'), { host: 'h1' });
    assert.is.not(ensureJournalId(other), id);
    other.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
