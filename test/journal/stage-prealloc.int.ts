// The synced staging file (journal_sync = fdatasync) is preallocated with zeros and its lines
// overwrite them in place, so an fdatasync carries no size change (decision 0018). These tests check
// the file's shape on disk and that recovery reads the lines up to the zeros: whole appends only,
// nothing from before a reset.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Journal, stageFileOf } from '../../src/journal/journal.js';
import { STAGE_PREALLOC_BYTES } from '../../src/journal/stage.js';
import { journalFiles } from '../helpers/journal-files.js';

const { tempFile, track } = journalFiles(test, 'vmlockd-prealloc-');

const at = (i: number) => new Date(Date.parse('2026-11-30T10:00:00.000Z') + i).toISOString();
const row = (i: number) => ({ kind: 'LockAcquired', at: at(i), disk: `/d/${i}`, owner: `vm-${i}`, ownerName: `name-${i}`, payload: { i } });
const synced = (flushMs = 3_600_000) => ({ staged: { flushMs, sync: true } });

/** The staging file's bytes up to the first NUL, and whether everything after it is NUL. */
function shape(file: string): { text: string; zerosAfter: boolean; length: number } {
  const b = readFileSync(stageFileOf(file));
  const nul = b.indexOf(0);
  const end = nul === -1 ? b.length : nul;
  return { text: b.subarray(0, end).toString('utf8'), zerosAfter: b.subarray(end).every((x) => x === 0), length: b.length };
}

/** What a crash would leave: a copy of the journal and its staging file, taken while the writer runs. */
function crashImage(file: string, stage: Buffer = readFileSync(stageFileOf(file))): string {
  const copy = tempFile();
  copyFileSync(file, copy);
  try {
    copyFileSync(`${file}-wal`, `${copy}-wal`);
  } catch {
    // no WAL yet
  }
  writeFileSync(stageFileOf(copy), stage);
  return copy;
}

test('given a synced staged journal, when facts are appended, then the staging file keeps its preallocated length and the lines overwrite its zeros', () => {
  const file = tempFile();
  const j = track(Journal.open(file, { host: 'h', ...synced() }));
  assert.is(statSync(stageFileOf(file)).size, STAGE_PREALLOC_BYTES, 'preallocated at open');
  j.append([row(1), row(2)]);
  j.append([row(3)]);
  const s = shape(file);
  assert.is(s.length, STAGE_PREALLOC_BYTES, 'no append changed the size');
  assert.is(s.text.split('\n').filter((l) => l !== '').length, 3);
  assert.ok(s.zerosAfter, 'only zeros after the last line');
});

test('given a synced staging file left by a crash, when a writer opens the journal, then it recovers every whole append and ignores the zeros', () => {
  const file = tempFile();
  const j = track(Journal.open(file, { host: 'h', ...synced() }));
  j.append([row(1), row(2)]);
  j.append([row(3), row(4), row(5)]);
  const r = track(Journal.open(crashImage(file), { host: 'h' }));
  assert.is(r.lastSeq(), 5);
  assert.equal([...r.readAfter(0)].map((f) => f.disk), ['/d/1', '/d/2', '/d/3', '/d/4', '/d/5']);
  assert.ok(r.verifyChain().ok);
});

test('given a synced staging file whose last append was torn before the zeros, when recovered, then that append is dropped whole', () => {
  const file = tempFile();
  const j = track(Journal.open(file, { host: 'h', ...synced() }));
  j.append([row(1), row(2)]);
  j.append([row(3), row(4), row(5)]);
  const b = readFileSync(stageFileOf(file));
  const end = b.indexOf(0);
  b.fill(0, end - 12, end); // the last 12 bytes never reached the file
  const r = track(Journal.open(crashImage(file, b), { host: 'h' }));
  assert.is(r.lastSeq(), 2, 'facts 3-5 were one append that never returned');
});

test('given a synced stage past its reset size, when its facts are in SQLite, then the file is zeros again at the same length and new lines start at its beginning', () => {
  const file = tempFile();
  const j = track(Journal.open(file, { host: 'h', ...synced() }));
  let i = 0;
  // ~1.2 MB of lines in appends of 200 facts
  while (statSync(stageFileOf(file)).size === STAGE_PREALLOC_BYTES && shape(file).text.length < (1 << 20) + 4096) {
    j.append(Array.from({ length: 200 }, () => row(++i)));
  }
  j.flushStaged();
  const reset = shape(file);
  assert.is(reset.text, '', 'nothing before the zeros once everything moved');
  assert.ok(reset.zerosAfter);
  assert.ok(reset.length >= STAGE_PREALLOC_BYTES);
  j.append([row(++i)]);
  const after = shape(file);
  assert.is(after.text.split('\n').filter((l) => l !== '').length, 1, 'the new line is at offset 0, no old line after it');
  assert.ok(after.zerosAfter);
  // A crash now: the new fact is recovered, the moved ones are not staged twice.
  const r = track(Journal.open(crashImage(file), { host: 'h' }));
  assert.is(r.lastSeq(), i);
  assert.ok(r.verifyChain().ok);
});

test('given a synced staged journal, when closed and opened again, then the leftover zeros are no facts and the file is preallocated again', () => {
  const file = tempFile();
  const j = Journal.open(file, { host: 'h', ...synced() });
  j.append([row(1)]);
  j.close();
  const again = track(Journal.open(file, { host: 'h', ...synced() }));
  assert.is(again.lastSeq(), 1);
  assert.is(statSync(stageFileOf(file)).size, STAGE_PREALLOC_BYTES);
  assert.is(shape(file).text, '');
});

test.run();
