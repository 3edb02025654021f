// Staged appends (the daemon's mode): a fact is acknowledged once it is in the staging file, and is
// moved into SQLite by a timer. These tests kill a real process before the move and check that the
// next writer finds every acknowledged fact, whole appends only, with the hash chain intact.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Journal, JournalError, stageFileOf } from '../../src/journal/journal.js';
import { cli } from '../helpers/daemon.js';
import { journalFiles } from '../helpers/journal-files.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/append-child.ts', import.meta.url));

const { tempFile, track } = journalFiles(test, 'vmlockd-stage-');

const at = (i: number) => new Date(Date.parse('2026-11-25T10:00:00.000Z') + i).toISOString();
const row = (i: number) => ({ kind: 'LockAcquired', at: at(i), disk: `/d/${i}`, owner: `vm-${i}`, ownerName: `name-${i}`, payload: { i } });

/** Two appends (facts 1-2, then 3-5) in a staged journal whose timer never fires; returns the staging text. */
function stagedText(): string {
  const file = tempFile();
  const j = Journal.open(file, { host: 'h', staged: { flushMs: 3_600_000 } });
  j.append([row(1), row(2)]);
  j.append([row(3), row(4), row(5)]);
  assert.is(j.pendingCount, 5);
  const text = readFileSync(stageFileOf(file), 'utf8');
  j.close();
  return text;
}

/** A fresh journal file whose staging file holds `text`, opened as a writer. */
function recover(text: string): Journal {
  const file = tempFile();
  writeFileSync(stageFileOf(file), text);
  return track(Journal.open(file, { host: 'h' }));
}

test('given a staged append, when read back in the same process, then the fact is there before the timer moves it', () => {
  const j = track(Journal.open(tempFile(), { host: 'h', staged: { flushMs: 3_600_000 } }));
  const [f] = j.append([row(1)]);
  assert.is(f!.seq, 1);
  assert.is(j.pendingCount, 1);
  assert.equal(j.query({ disk: '/d/1' }).map((x) => x.seq), [1]);
  assert.is(j.pendingCount, 0);
});

test('given staged appends, when the timer fires, then they are in SQLite and another connection sees them', async () => {
  const file = tempFile();
  const j = track(Journal.open(file, { host: 'h', staged: { flushMs: 5 } }));
  j.append([row(1), row(2)]);
  const reader = track(Journal.open(file, { host: 'r', readonly: true }));
  await new Promise((r) => setTimeout(r, 50));
  assert.is(j.pendingCount, 0);
  assert.is(reader.lastSeq(), 2);
});

test('given a child that appended N staged facts, when it is killed with SIGKILL before the timer, then the next writer moves all N into SQLite with the chain intact', async () => {
  const file = tempFile();
  const N = 300;
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, VMLOCKD_TEST_JOURNAL: file, VMLOCKD_TEST_COUNT: String(N), VMLOCKD_TEST_STAGED: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, signal) => res(signal)));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`child did not print "done" within 30 s; stderr: ${stderr}`)), 30_000);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('done')) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then(() => rej(new Error(`child exited before "done"; stderr: ${stderr}`)));
  });
  child.kill('SIGKILL');
  assert.is(await exited, 'SIGKILL');

  // Before any writer opens it: SQLite has none of them, the staging file has them all.
  const before = track(Journal.open(file, { host: 'r', readonly: true }));
  assert.is(before.lastSeq(), 0, 'the facts were only staged');
  assert.is(readFileSync(stageFileOf(file), 'utf8').trim().split('\n').length, N);
  before.close();

  const j = track(Journal.open(file, { host: 'child-host' }));
  assert.is(j.lastSeq(), N);
  assert.equal(
    [...j.readAfter(0)].map((f) => (f.payload as { i: number }).i),
    Array.from({ length: N }, (_, i) => i + 1),
  );
  const chain = j.verifyChain();
  assert.ok(chain.ok, chain.problems.join('; '));
  assert.is(statSync(stageFileOf(file)).size, 0, 'the staging file is emptied once its facts are in SQLite');
});

test('given a complete staging file, when a writer opens the journal, then every staged fact is recovered in order', () => {
  const j = recover(stagedText());
  assert.is(j.lastSeq(), 5);
  assert.equal([...j.readAfter(0)].map((f) => f.disk), ['/d/1', '/d/2', '/d/3', '/d/4', '/d/5']);
  assert.equal(j.query({ owner: 'name-3' }).map((f) => f.seq), [3], 'owner names are recorded as on a direct append');
  assert.ok(j.verifyChain().ok);
});

test('given a staging file whose last line was torn by a crash, when recovered, then that whole append is dropped and the earlier one kept', () => {
  const text = stagedText();
  const j = recover(text.slice(0, text.length - 12));
  assert.is(j.lastSeq(), 2, 'facts 3-5 were one append that never returned');
});

test('given a staging file that lost the last lines of an append, when recovered, then that append is dropped whole', () => {
  const lines = stagedText().split('\n');
  const j = recover(lines.slice(0, 4).join('\n') + '\n');
  assert.is(j.lastSeq(), 2);
});

test('given a staging file damaged before its last line, when a writer opens the journal, then it refuses and names the line', () => {
  const lines = stagedText().split('\n');
  lines[0] = lines[0]!.replace('"/d/1"', '"/d/X"');
  const file = tempFile();
  writeFileSync(stageFileOf(file), lines.join('\n'));
  try {
    Journal.open(file, { host: 'h' }).close();
    assert.unreachable('a damaged staging file must not be accepted');
  } catch (e) {
    assert.instance(e, JournalError);
    assert.is((e as JournalError).code, 'VMLOCKD_ERR_JOURNAL_CORRUPT');
    assert.match((e as Error).message, /line 1: seq 1: its hash does not match/);
  }
  assert.ok(existsSync(stageFileOf(file)) && statSync(stageFileOf(file)).size > 0, 'the damaged staging file is left for the operator');
});

test('given a staged journal, when closed, then every pending fact is in SQLite and the staging file is empty', () => {
  const file = tempFile();
  const j = Journal.open(file, { host: 'h', staged: { flushMs: 3_600_000 } });
  j.append([row(1)]);
  j.close();
  const r = track(Journal.open(file, { host: 'r', readonly: true }));
  assert.is(r.lastSeq(), 1);
  assert.ok(statSync(stageFileOf(file)).size < 1 << 20);
});

test('given a running staged writer, when a second writer (journal compact) opens the journal, then it leaves the staged facts to their owner', () => {
  const file = tempFile();
  const daemon = track(Journal.open(file, { host: 'h', staged: { flushMs: 3_600_000 } }));
  daemon.append([row(1), row(2)]);
  const second = Journal.open(file, { host: 'compact' });
  assert.is(second.lastSeq(), 0, 'the second writer did not move the daemon\'s staged facts');
  second.close();
  daemon.flushStaged();
  assert.is(daemon.lastSeq(), 2);
  try {
    Journal.open(file, { host: 'h2', staged: true }).close();
    assert.unreachable('two staged writers on one journal');
  } catch (e) {
    assert.is((e as JournalError).code, 'VMLOCKD_ERR_JOURNAL_FORKED');
  }
});

test('given acknowledged facts only in the staging file (a crashed daemon), when vmlockd audit reads the journal, then it warns which are not shown', () => {
  const text = stagedText();
  const file = tempFile();
  Journal.open(file, { host: 'h' }).close();
  writeFileSync(stageFileOf(file), text);
  const r = cli(['audit', '--journal', file, '--conflicts', '--json']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, `5 acknowledged fact(s) (seq 1-5) are in ${stageFileOf(file)} but not yet in the journal`);
  assert.is(readFileSync(stageFileOf(file), 'utf8'), text, 'a reader moves nothing');
});

test.run();
