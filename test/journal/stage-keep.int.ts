// A staged writer's open (the daemon's start) while SQLite cannot take the facts a crashed process
// left staged (review24d: another process holding journal.db's write lock made the start fail after
// the busy timeout). The facts stay staged in the same file, appends continue after the last whole
// append (a torn tail, never acknowledged, is zeroed or cut; a last line without its newline is
// ended), and everything reaches SQLite, chain intact, once the lock is free. Real files, a real
// second SQLite connection holding the write lock.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Journal, stageFileOf } from '../../src/journal/journal.js';
import { journalFiles } from '../helpers/journal-files.js';

const { tempFile, track } = journalFiles(test, 'vmlockd-stage-keep-');

const at = (i: number) => new Date(Date.parse('2026-11-25T10:00:00.000Z') + i).toISOString();
const row = (i: number) => ({ kind: 'LockAcquired', at: at(i), disk: `/d/${i}`, owner: `vm-${i}`, ownerName: `name-${i}`, payload: { i } });

/** Facts 1-5 (two appends) as a staged journal writes them, the timer never firing. */
function stagedText(): string {
  const file = tempFile();
  const j = Journal.open(file, { host: 'h', staged: { flushMs: 3_600_000 } });
  j.append([row(1), row(2)]);
  j.append([row(3), row(4), row(5)]);
  const text = readFileSync(stageFileOf(file), 'utf8');
  j.close();
  return text;
}

const cases: Array<[string, (t: string) => string]> = [
  ['whole lines only', (t) => t],
  ['a torn append at the end of the file (cut)', (t) => `${t}[6,"2026-11-25T10:00:00.0`],
  ['a torn append before preallocated zeros (zeroed in place)', (t) => `${t}[6,"2026-11-25T10:00:00.006Z","h","LockAcq${'\0'.repeat(8192)}`],
  ['a last line without its newline', (t) => t.slice(0, -1)],
];

for (const [name, shape] of cases) {
  test(`a staged open while another connection holds the write lock keeps staged facts (${name}): appends continue, a reader sees every fact staged, all reach SQLite once the lock is free`, () => {
    const text = stagedText();
    const file = tempFile();
    Journal.open(file, { host: 'h' }).close();
    writeFileSync(stageFileOf(file), shape(text));
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    let j: Journal;
    try {
      const t0 = Date.now();
      j = track(Journal.open(file, { host: 'h', staged: { flushMs: 3_600_000, sync: true } }));
      // No wait for the lock (the busy timeout is 5 s).
      assert.ok(Date.now() - t0 < 2000, `the open waited ${Date.now() - t0} ms`);
      assert.is(j.pendingCount, 5);
      assert.is(j.health().sqlite?.errno, 'SQLITE_BUSY');
      assert.equal(j.append([row(6)]).map((f) => f.seq), [6]);
      assert.equal(j.append([row(7), row(8)]).map((f) => f.seq), [7, 8]);
      // The staging file reads whole: what a crash now would leave to the next writer.
      const reader = track(Journal.open(file, { host: 'r', readonly: true }));
      assert.equal(reader.stagedTail(), { count: 8, firstSeq: 1, lastSeq: 8 });
    } finally {
      other.exec('COMMIT');
      other.close();
    }
    j.flushStaged();
    assert.is(j.pendingCount, 0);
    assert.is(j.health().sqlite, null);
    j.close();
    const r = track(Journal.open(file, { host: 'r', readonly: true }));
    assert.is(r.lastSeq(), 8);
    assert.equal(r.query({}).map((f) => f.payload), [1, 2, 3, 4, 5, 6, 7, 8].map((i) => ({ i })));
    assert.ok(r.verifyChain().ok, JSON.stringify(r.verifyChain()));
  });
}

test('a writer that is not staged (a journal CLI) still moves staged facts into SQLite at its open, waiting for the lock as before', () => {
  const text = stagedText();
  const file = tempFile();
  Journal.open(file, { host: 'h' }).close();
  writeFileSync(stageFileOf(file), text);
  const j = track(Journal.open(file, { host: 'h' }));
  assert.is(j.lastSeq(), 5);
  assert.is(j.pendingCount, 0);
});

test.run();
