// A staging file whose first new fact does not follow the database's last one (facts lost from both
// files: journal.db or its WAL removed or restored from an older copy while a daemon ran, review26b
// F6): the refusal names the missing seqs and the likely cause (decision 0028).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseStage, stageLine } from '../../src/journal/stage.js';
import { chainRows } from '../../src/journal/rows.js';
import { GENESIS_HASH } from '../../src/journal/schema.js';

const rows = chainRows([1, 2, 3, 4, 5, 6].map((n) => ({ kind: 'Test', at: '2026-12-01T00:00:00.000Z', payload: { n } })), { seq: 0, hash: GENESIS_HASH }, 'h');

test('a staging file starting past the database head: the refusal names the facts in neither file', () => {
  const text = rows.slice(4).map((r, i, a) => stageLine(r, a.length - 1 - i)).join('');
  const head = { seq: rows[1]!.seq, hash: rows[1]!.hash };
  assert.throws(() => parseStage(text, head, '/x/journal.db-stage'), (e: Error) => /line 1: seq 5 does not follow seq 2: acknowledged facts seq 3-4 are in neither the database nor its staging file \(journal\.db or journal\.db-wal removed/.test(e.message));
});

test('a staging file that follows the head, or overlaps it: read as before', () => {
  const text = rows.slice(1).map((r, i, a) => stageLine(r, a.length - 1 - i)).join('');
  const got = parseStage(text, { seq: rows[2]!.seq, hash: rows[2]!.hash }, '/x/journal.db-stage');
  assert.equal(got.map((r) => r.seq), [4, 5, 6]);
});

test('a gap inside the staged lines: damage, not a lost database (no such hint)', () => {
  const lines = [rows[2]!, rows[4]!].map((r) => stageLine(r, 0)).join('');
  assert.throws(() => parseStage(lines, { seq: rows[1]!.seq, hash: rows[1]!.hash }, '/x/s'), (e: Error) => /line 2: seq 5 does not follow seq 3$/.test(e.message));
});

test.run();
