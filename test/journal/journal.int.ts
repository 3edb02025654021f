import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Journal, JournalError, MIGRATIONS, SCHEMA_VERSION, migrate, networkFsName } from '../../src/journal/journal.js';
import type { FactRow, StoredFact } from '../../src/journal/journal.js';
import { journalFiles } from '../helpers/journal-files.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/append-child.ts', import.meta.url));

const { tempFile, track } = journalFiles(test, 'vmlockd-journal-');
function openJournal(file: string, host = 'host-a', readonly = false): Journal {
  return track(Journal.open(file, { host, readonly }));
}

function throwsCode(fn: () => unknown, code: string, messagePart?: string | RegExp): JournalError {
  try {
    fn();
  } catch (err) {
    assert.instance(err, JournalError, `expected a JournalError, got ${String(err)}`);
    const e = err as JournalError;
    assert.is(e.code, code, e.message);
    if (typeof messagePart === 'string') assert.ok(e.message.includes(messagePart), `"${e.message}" should mention "${messagePart}"`);
    else if (messagePart) assert.match(e.message, messagePart);
    return e;
  }
  assert.unreachable(`expected ${code}`);
  throw new Error('unreachable');
}

const AT = (minute: number) => `2026-11-25T10:${String(minute).padStart(2, '0')}:00.000Z`;

test('given an empty journal, when appending two batches, then seqs run 1.. and readAfter returns every field as stored', () => {
  const file = tempFile();
  const j = openJournal(file);
  assert.is(j.schemaVersion, SCHEMA_VERSION);
  assert.is(j.lastSeq(), 0);
  assert.is(j.latestSnapshot(), undefined);

  const first = j.append([
    { kind: 'LockAcquired', at: AT(0), resource: '/ls/r1', disk: '/d/1', owner: 'uuid-1', ownerName: 'vm1', payload: { mode: 'exclusive', n: 1 } },
    { kind: 'DaemonStarted', at: AT(1), payload: { pid: 42, when: new Date(AT(1)) } },
  ]);
  const second = j.append([{ kind: 'LockReleased', at: AT(2), resource: '/ls/r1', payload: [1, 'two', null] }]);

  assert.equal(first.map((f) => f.seq), [1, 2]);
  assert.equal(second.map((f) => f.seq), [3]);
  assert.is(j.lastSeq(), 3);
  // The returned payload is the stored JSON (a Date becomes its string), so live folds equal replays.
  assert.is((first[1]!.payload as { when: unknown }).when, AT(1));

  const all = [...j.readAfter(0)];
  assert.equal(all, [...first, ...second]);
  assert.equal(all[0], {
    seq: 1, host: 'host-a', kind: 'LockAcquired', at: AT(0), resource: '/ls/r1', disk: '/d/1',
    owner: 'uuid-1', ownerName: 'vm1', payload: { mode: 'exclusive', n: 1 },
  } satisfies StoredFact);
  assert.equal(all[1], {
    seq: 2, host: 'host-a', kind: 'DaemonStarted', at: AT(1), resource: null, disk: null,
    owner: null, ownerName: null, payload: { pid: 42, when: AT(1) },
  } satisfies StoredFact);
  assert.equal([...j.readAfter(2)].map((f) => f.seq), [3]);
  assert.equal([...j.readAfter(3)], []);
  assert.equal(j.append([]), []);
});

test('given a fresh path, when opened, then the directories are created and the file is in WAL mode', () => {
  const file = join(tempFile('unused'), '..', 'a', 'b', 'journal.db');
  const j = openJournal(file);
  j.append([{ kind: 'K', at: AT(0), payload: {} }]);
  assert.ok(existsSync(`${file}-wal`), 'an uncheckpointed commit lives in the -wal file');
  const raw = new Database(file, { readonly: true });
  try {
    assert.is(raw.pragma('journal_mode', { simple: true }), 'wal');
    assert.is(raw.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), String(SCHEMA_VERSION));
  } finally {
    raw.close();
  }
});

test('given a batch whose second payload cannot be serialised, when appended, then nothing of the batch is written', () => {
  const j = openJournal(tempFile());
  j.append([{ kind: 'Before', at: AT(0), payload: {} }]);
  const batch: FactRow[] = [
    { kind: 'Ok', at: AT(1), payload: { fine: true } },
    { kind: 'Bad', at: AT(2), payload: { big: 10n } },
    { kind: 'Ok', at: AT(3), payload: {} },
  ];
  throwsCode(() => j.append(batch), 'VMLOCKD_ERR_BAD_INPUT', 'fact row 1 (Bad)');
  assert.is(j.lastSeq(), 1);
  assert.equal([...j.readAfter(0)].map((f) => f.kind), ['Before']);

  throwsCode(() => j.append([{ kind: 'Ok', at: AT(1), payload: {} }, { kind: 'BadAt', at: '2026-11-25 10:00', payload: {} }]), 'VMLOCKD_ERR_BAD_INPUT', 'at must be ISO-8601');
  throwsCode(() => j.append([{ kind: 'Ok', at: '2026-02-30T10:00:00.000Z', payload: {} }]), 'VMLOCKD_ERR_BAD_INPUT', 'fact row 0');
  throwsCode(() => j.append([{ kind: 'NoPayload', at: AT(1), payload: undefined }]), 'VMLOCKD_ERR_BAD_INPUT', 'payload');
  assert.is(j.lastSeq(), 1);

  // A rolled-back batch leaves no hole: the next fact is seq 2.
  assert.equal(j.append([{ kind: 'After', at: AT(4), payload: {} }]).map((f) => f.seq), [2]);
});

test('given journaled facts, when another connection tries UPDATE or DELETE, then the triggers refuse and the rows stay', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([{ kind: 'K', at: AT(0), payload: { v: 1 } }, { kind: 'K', at: AT(1), payload: { v: 2 } }]);
  const raw = new Database(file);
  try {
    assert.throws(() => raw.prepare(`UPDATE facts SET payload = '{"v":9}' WHERE seq = 1`).run(), /append-only: UPDATE/);
    assert.throws(() => raw.prepare(`DELETE FROM facts WHERE seq = 2`).run(), /append-only: DELETE/);
    assert.throws(() => raw.prepare(`DELETE FROM facts`).run(), /append-only: DELETE/);
  } finally {
    raw.close();
  }
  assert.equal([...j.readAfter(0)].map((f) => f.payload), [{ v: 1 }, { v: 2 }]);
  assert.ok(j.integrity().ok);
});

test('given five snapshots, when reading the latest, then the newest wins and only the newest three are kept', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([1, 2, 3, 4, 5, 6].map((i) => ({ kind: 'K', at: AT(i), payload: { i } })));
  for (const seq of [1, 2, 5, 3, 4]) j.writeSnapshot(seq, { folded: seq });
  assert.equal(j.latestSnapshot(), { seq: 5, state: { folded: 5 } });
  j.writeSnapshot(5, { folded: 'again' });
  assert.equal(j.latestSnapshot(), { seq: 5, state: { folded: 'again' } });

  const raw = new Database(file, { readonly: true });
  try {
    assert.equal(raw.prepare('SELECT seq FROM snapshots ORDER BY seq').pluck().all(), [3, 4, 5]);
  } finally {
    raw.close();
  }
  throwsCode(() => j.writeSnapshot(7, {}), 'VMLOCKD_ERR_BAD_INPUT', 'beyond the last fact seq 6');
  throwsCode(() => j.writeSnapshot(6, { big: 1n }), 'VMLOCKD_ERR_BAD_INPUT', 'not JSON-serialisable');
  assert.is(j.latestSnapshot()!.seq, 5);
});

function seedForQueries(file: string): { a: Journal; b: Journal } {
  const a = openJournal(file, 'host-a');
  // A second writer on the same file stamps its own host: two writers coexist under WAL + busy_timeout.
  const b = openJournal(file, 'host-b');
  a.append([
    { kind: 'LockAcquired', at: AT(0), resource: '/ls/r1', disk: '/d/1', owner: 'u1', ownerName: 'alpha', payload: { n: 1 } },
    { kind: 'LockAcquired', at: AT(1), resource: '/ls/r2', disk: '/d/2', owner: 'u2', ownerName: 'beta', payload: { n: 2 } },
    { kind: 'LockRefused', at: AT(2), resource: '/ls/r1', disk: '/d/1', owner: 'u2', ownerName: 'beta', payload: { n: 3 } },
  ]);
  b.append([
    { kind: 'LockReleased', at: AT(3), resource: '/ls/r1', disk: '/d/1', owner: 'u1', ownerName: 'alpha', payload: { n: 4 } },
    // An owner whose uuid equals another VM's name: `owner` must match either column.
    { kind: 'OwnerSeen', at: AT(4), owner: 'beta', ownerName: 'gamma', payload: { n: 5 } },
  ]);
  a.append([{ kind: 'DaemonStopped', at: AT(5), payload: { n: 6 } }]);
  return { a, b };
}
const ns = (facts: StoredFact[]) => facts.map((f) => (f.payload as { n: number }).n);

test('given facts of several owners, disks, kinds, times and hosts, when querying, then each filter selects exactly its facts', () => {
  const { a: j } = seedForQueries(tempFile());
  assert.equal(ns(j.query({})), [1, 2, 3, 4, 5, 6]);
  assert.equal(ns(j.query({ owner: 'u1' })), [1, 4], 'owner by uuid');
  assert.equal(ns(j.query({ owner: 'alpha' })), [1, 4], 'owner by name');
  assert.equal(ns(j.query({ owner: 'beta' })), [2, 3, 5], 'owner matches uuid OR name');
  assert.equal(ns(j.query({ ownerName: 'beta' })), [2, 3], 'ownerName matches the name column only');
  assert.equal(ns(j.query({ disk: '/d/1' })), [1, 3, 4]);
  assert.equal(ns(j.query({ resource: '/ls/r2' })), [2]);
  assert.equal(ns(j.query({ kinds: ['LockAcquired', 'DaemonStopped'] })), [1, 2, 6]);
  assert.equal(ns(j.query({ kinds: [] })), []);
  assert.equal(ns(j.query({ since: AT(2) })), [3, 4, 5, 6], 'since is inclusive');
  assert.equal(ns(j.query({ until: AT(2) })), [1, 2, 3], 'until is inclusive');
  assert.equal(ns(j.query({ since: '2026-11-25T11:01:00+01:00', until: AT(3) })), [2, 3, 4], 'offset times are normalised to UTC');
  assert.equal(ns(j.query({ host: 'host-b' })), [4, 5]);
  assert.equal(ns(j.query({ limit: 2 })), [1, 2], 'limit keeps the oldest');
  assert.equal(ns(j.query({ afterSeq: 4 })), [5, 6]);
  assert.equal(ns(j.query({ afterSeq: 2, limit: 2 })), [3, 4], 'afterSeq + limit pages forward');
  assert.equal(ns(j.query({ disk: '/d/1', owner: 'u2', kinds: ['LockRefused'], host: 'host-a' })), [3], 'filters are ANDed');
  assert.equal(ns(j.query({ disk: '/d/1', host: 'host-b', owner: 'beta' })), []);
  assert.equal(j.query({ disk: '/d/2' })[0], {
    seq: 2, host: 'host-a', kind: 'LockAcquired', at: AT(1), resource: '/ls/r2', disk: '/d/2', owner: 'u2', ownerName: 'beta', payload: { n: 2 },
  });
  // The same shape again comes from the statement cache and must still bind the new values.
  assert.equal(ns(j.query({ owner: 'u2' })), [2, 3]);

  throwsCode(() => j.query({ since: 'yesterday' }), 'VMLOCKD_ERR_BAD_INPUT', 'query.since');
  throwsCode(() => j.query({ limit: 0 }), 'VMLOCKD_ERR_BAD_INPUT', 'query.limit');
  throwsCode(() => j.query({ afterSeq: -1 }), 'VMLOCKD_ERR_BAD_INPUT', 'query.afterSeq');
});

test('given combined filters, when planned, then the most selective filter drives through its index', () => {
  const { a: j } = seedForQueries(tempFile());
  const since = '2026-01-01T00:00:00.000Z';
  assert.match(j.queryPlan({ disk: '/d/1', kinds: ['LockAcquired'], since }), /USING INDEX facts_disk_at \(disk=\? AND at>\?\)/);
  assert.match(j.queryPlan({ resource: '/ls/r1', disk: '/d/1', owner: 'u1' }), /^SEARCH facts USING INDEX facts_disk_at \(disk=\?\)/);
  assert.match(j.queryPlan({ owner: 'u1', kinds: ['K'], since }), /^SEARCH facts USING INDEX facts_owner_at \(owner=\? AND at>\?\).*SEARCH owners USING PRIMARY KEY \(name=\?\)/);
  assert.match(j.queryPlan({ ownerName: 'beta', since }), /^SEARCH facts USING INDEX facts_owner_at \(owner=\? AND at>\?\)/);
  assert.match(j.queryPlan({ kinds: ['K'], since, until: since, limit: 5 }), /USING INDEX facts_kind_at \(kind=\? AND at>\? AND at<\?\)/);
  assert.match(j.queryPlan({ since }), /USING INDEX facts_at \(at>\?\)/);
  assert.match(j.queryPlan({ kinds: ['K'], limit: 5 }), /USING INDEX facts_kind_at/);
  assert.match(j.queryPlan({ disk: '/d/1', afterSeq: 2 }), /USING INTEGER PRIMARY KEY \(rowid>\?\)/);
});

test('given no file, when opening read-only, then the error names the file and nothing is created', () => {
  const file = tempFile('missing.db');
  throwsCode(() => Journal.open(file, { host: 'h', readonly: true }), 'VMLOCKD_ERR_JOURNAL_MISSING', file);
  assert.not.ok(existsSync(file));
});

test('given a writer holding the journal open, when a reader opens read-only, then it sees the writer\'s facts, old and new', () => {
  const file = tempFile();
  const w = openJournal(file, 'host-a');
  w.append([{ kind: 'K', at: AT(0), owner: 'u1', payload: { n: 1 } }]);
  const r = openJournal(file, 'host-a', true);
  assert.is(r.lastSeq(), 1);
  w.append([{ kind: 'K', at: AT(1), owner: 'u1', payload: { n: 2 } }]);
  assert.equal(ns([...r.readAfter(0)]), [1, 2]);
  assert.equal(ns(r.query({ owner: 'u1' })), [1, 2]);
  assert.ok(r.integrity().ok, JSON.stringify(r.integrity()));
  throwsCode(() => r.append([{ kind: 'K', at: AT(2), payload: {} }]), 'VMLOCKD_ERR_JOURNAL_READONLY', file);
  throwsCode(() => r.writeSnapshot(1, {}), 'VMLOCKD_ERR_JOURNAL_READONLY');

  w.close();
  r.close();
  // With no daemon running (WAL files checkpointed away), a read-only open still works.
  const again = openJournal(file, 'host-a', true);
  assert.is(again.lastSeq(), 2);
  again.close();
  throwsCode(() => again.lastSeq(), 'VMLOCKD_ERR_JOURNAL_CLOSED');
});

test('given a healthy journal, when checked, then integrity is ok', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([1, 2, 3].map((i) => ({ kind: 'K', at: AT(i), payload: { i } })));
  j.writeSnapshot(2, { s: 1 });
  assert.equal(j.integrity(), { ok: true, problems: [] });
});

test('given rows corrupted behind the triggers\' back, when checked, then integrity names the first bad seq', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([1, 2, 3, 4, 5].map((i) => ({ kind: 'K', at: AT(i), payload: { i } })));
  const raw = new Database(file);
  try {
    raw.exec('DROP TRIGGER facts_no_update');
    raw.prepare(`UPDATE facts SET at = 'last tuesday' WHERE seq = 5`).run();
    raw.prepare(`UPDATE facts SET payload = 'not json' WHERE seq = 3`).run();
  } finally {
    raw.close();
  }
  const report = j.integrity();
  assert.is(report.ok, false);
  assert.is(report.firstBadSeq, 3);
  assert.ok(report.problems.some((p) => p.startsWith('first bad seq 3: payload is not valid JSON')), report.problems.join('\n'));
  assert.ok(report.problems.includes('2 facts fail checks in total'), report.problems.join('\n'));
  assert.ok(report.problems.some((p) => p.includes('facts_no_update is missing')), report.problems.join('\n'));
});

test('given a hole in the seq numbers, when checked, then integrity reports the fact after the hole', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([1, 2, 3].map((i) => ({ kind: 'K', at: AT(i), payload: { i } })));
  const raw = new Database(file);
  try {
    raw.exec('DROP TRIGGER facts_no_delete');
    raw.prepare('DELETE FROM facts WHERE seq = 2').run();
    raw.exec(MIGRATIONS[0]!.up.toString().match(/CREATE TRIGGER facts_no_delete[\s\S]*?END;/)![0]);
  } finally {
    raw.close();
  }
  const report = j.integrity();
  assert.is(report.firstBadSeq, 3);
  assert.equal(report.problems, ['first bad seq 3: seq gap: follows seq 1']);
});

test('given a journal written by a newer vmlockd, when opened, then it is refused with both versions named', () => {
  const file = tempFile();
  openJournal(file).close();
  const raw = new Database(file);
  raw.prepare(`UPDATE meta SET value = '999' WHERE key = 'schema_version'`).run();
  raw.close();
  throwsCode(() => Journal.open(file, { host: 'h' }), 'VMLOCKD_ERR_JOURNAL_TOO_NEW', `schema version 999, newer than the ${SCHEMA_VERSION}`);
  throwsCode(() => Journal.open(file, { host: 'h', readonly: true }), 'VMLOCKD_ERR_JOURNAL_TOO_NEW', '999');
  const check = new Database(file, { readonly: true });
  assert.is(check.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), '999', 'a refused open changes nothing');
  check.close();
});

test('given a current file, when migrated with a later step, then it moves forward; a failing step leaves it at its old version', () => {
  const file = tempFile();
  openJournal(file).close();
  const db = new Database(file);
  try {
    const failing = [...MIGRATIONS, { description: 'boom', up: 'CREATE TABLE half (x); SELECT no_such_function();' }];
    assert.throws(() => migrate(db, file, failing), /no_such_function/);
    assert.is(db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), String(SCHEMA_VERSION));
    assert.is(db.prepare(`SELECT name FROM sqlite_master WHERE name = 'half'`).get(), undefined, 'the half-done step was rolled back');

    const next = [...MIGRATIONS, { description: 'add a table', up: (d: Database.Database) => void d.exec('CREATE TABLE later (x)') }];
    assert.is(migrate(db, file, next), SCHEMA_VERSION + 1);
    assert.is(db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), String(SCHEMA_VERSION + 1));
    assert.ok(db.prepare(`SELECT name FROM sqlite_master WHERE name = 'later'`).get());
    assert.is(migrate(db, file, next), SCHEMA_VERSION + 1, 'a second run is a no-op');
  } finally {
    db.close();
  }
});

test('given a SQLite file of someone else, when opened, then it is refused and left alone', () => {
  const file = tempFile('other.db');
  const other = new Database(file);
  other.exec('CREATE TABLE accounts (id)');
  other.close();
  throwsCode(() => Journal.open(file, { host: 'h' }), 'VMLOCKD_ERR_JOURNAL_NOT_OURS', 'accounts');
  const garbage = tempFile('garbage.db');
  writeFileSync(garbage, 'this is not sqlite at all, not even close to a header of one');
  assert.throws(() => Journal.open(garbage, { host: 'h' }), /not a database/);
});

test('given statfs types, when classified, then network and cluster filesystems are named and local ones are not', () => {
  assert.is(networkFsName(0x6969), 'nfs');
  assert.is(networkFsName(0x65735546), 'fuse (e.g. glusterfs, sshfs)');
  assert.is(networkFsName(0xff534d42), 'cifs');
  assert.is(networkFsName(0xef53), undefined, 'ext4');
  assert.is(networkFsName(0x58465342), undefined, 'xfs');
  assert.is(networkFsName(0x01021994), undefined, 'tmpfs');
});

test('given a child that appended N facts one commit each, when it is killed with SIGKILL, then a reopen finds all N', async () => {
  const file = tempFile();
  const N = 500;
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, VMLOCKD_TEST_JOURNAL: file, VMLOCKD_TEST_COUNT: String(N) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on('exit', (code, signal) => res({ code, signal })),
  );
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
    void exited.then(({ code }) => {
      clearTimeout(timer);
      rej(new Error(`child exited (${code}) before "done"; stderr: ${stderr}`));
    });
  });
  child.kill('SIGKILL');
  const { signal } = await exited;
  assert.is(signal, 'SIGKILL');
  assert.ok(existsSync(`${file}-wal`) && statSync(`${file}-wal`).size > 0, 'the commits were still in the WAL: no clean close happened');

  const j = openJournal(file, 'host-a');
  const facts = [...j.readAfter(0)];
  assert.is(facts.length, N);
  assert.equal(facts.map((f) => (f.payload as { i: number }).i), Array.from({ length: N }, (_, k) => k + 1));
  assert.ok(facts.every((f) => f.host === 'child-host'));
  assert.ok(j.integrity().ok, JSON.stringify(j.integrity()));
  assert.equal(j.append([{ kind: 'K', at: AT(0), payload: {} }]).map((f) => f.seq), [N + 1]);
});

test.run();
