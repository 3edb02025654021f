import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { Journal, MIGRATIONS, SCHEMA_VERSION, migrate } from '../../src/journal/journal.js';
import { journalFiles } from '../helpers/journal-files.js';

const { tempFile, track } = journalFiles(test, 'vmlockd-chain-');
function openJournal(file: string, host = 'host-a', readonly = false): Journal {
  return track(Journal.open(file, { host, readonly }));
}

const AT = (minute: number) => `2026-11-25T10:${String(minute).padStart(2, '0')}:00.000Z`;

/** The chain as docs/audit.md defines it, written out independently of src/journal/schema.ts. */
function expectedHashes(raw: Database.Database): Buffer[] {
  const rows = raw.prepare('SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload FROM facts ORDER BY seq').all() as Array<Record<string, unknown>>;
  let prev = Buffer.alloc(32);
  return rows.map((r) => {
    const head = JSON.stringify([r.seq, r.at, r.host, r.kind, r.resource, r.disk, r.owner, r.owner_name]);
    prev = createHash('sha256').update(Buffer.concat([prev, Buffer.from(`${head}\n${r.payload as string}`, 'utf8')])).digest();
    return prev;
  });
}

/** Runs `sql` with the append-only triggers lifted, then puts them back as they were. */
function edit(file: string, sql: string): void {
  const raw = new Database(file);
  try {
    const triggers = raw.prepare(`SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'facts'`).all() as Array<{ name: string; sql: string }>;
    for (const t of triggers) raw.exec(`DROP TRIGGER ${t.name}`);
    raw.exec(sql);
    for (const t of triggers) raw.exec(t.sql);
  } finally {
    raw.close();
  }
}

test('given facts appended in batches by two writers, when the chain is walked, then every stored hash is sha256(previous hash || row)', () => {
  const file = tempFile();
  const a = openJournal(file, 'host-a');
  const b = openJournal(file, 'host-b');
  a.append([{ kind: 'LockAcquired', at: AT(0), resource: '/ls/r1', disk: '/d/1', owner: 'u1', ownerName: 'vm1', payload: { mode: 'exclusive' } }]);
  // The second writer must chain from the first writer's last fact, not from a head it cached.
  b.append([{ kind: 'LockReleased', at: AT(1), resource: '/ls/r1', disk: '/d/1', owner: 'u1', payload: { reason: 'x' } }, { kind: 'K', at: AT(2), payload: null }]);
  a.append([{ kind: 'K', at: AT(3), resource: '', payload: 'empty resource is not null' }]);

  const raw = new Database(file, { readonly: true });
  try {
    const stored = raw.prepare('SELECT hash FROM facts ORDER BY seq').pluck().all() as Buffer[];
    assert.equal(stored.map((h) => h.toString('hex')), expectedHashes(raw).map((h) => h.toString('hex')));
  } finally {
    raw.close();
  }
  const report = a.verifyChain();
  assert.is(report.ok, true, report.problems.join('\n'));
  assert.is(report.checked, 4);
  assert.equal(report.base, { seq: 0, hash: '0'.repeat(64) });
  assert.is(report.head.seq, 4);
});

test('given a payload rewritten behind the triggers\' back, when verified, then the chain names that seq though integrity sees valid JSON', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([1, 2, 3, 4, 5].map((i) => ({ kind: 'K', at: AT(i), payload: { i } })));
  edit(file, `UPDATE facts SET payload = '{"i":33}' WHERE seq = 3`);
  assert.is(j.integrity().ok, true, 'the rewrite is well-formed: only the chain can see it');
  const r = j.verifyChain();
  assert.is(r.ok, false);
  assert.is(r.firstBadSeq, 3);
  assert.equal(r.problems, ['hash chain: first bad seq 3: hash does not match the fact: it, or the hash stored with it, was changed after it was written']);
});

test('given a fact and its hash both rewritten, when verified, then the fact after it is the first bad seq', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([1, 2, 3, 4].map((i) => ({ kind: 'K', at: AT(i), payload: { i } })));
  // Forge seq 2: new content and the hash that content would have had. Seq 3 still chains from the old hash.
  const raw = new Database(file);
  try {
    const prev = raw.prepare('SELECT hash FROM facts WHERE seq = 1').pluck().get() as Buffer;
    const head = JSON.stringify([2, AT(2), 'host-a', 'K', null, null, null, null]);
    const forged = createHash('sha256').update(prev).update(`${head}\n{"i":22}`).digest();
    raw.exec('DROP TRIGGER facts_no_update');
    raw.prepare(`UPDATE facts SET payload = '{"i":22}', hash = ? WHERE seq = 2`).run(forged);
  } finally {
    raw.close();
  }
  const r = j.verifyChain();
  assert.is(r.firstBadSeq, 3);
  assert.is(r.problems.length, 1, r.problems.join('\n'));
});

test('given a fact deleted from the middle, when verified, then the chain reports the break at the fact after the hole', () => {
  const file = tempFile();
  const j = openJournal(file);
  j.append([1, 2, 3].map((i) => ({ kind: 'K', at: AT(i), payload: { i } })));
  edit(file, 'DELETE FROM facts WHERE seq = 2');
  const r = j.verifyChain();
  assert.is(r.firstBadSeq, 3);
  assert.match(r.problems[0]!, /chain broken: seq 3 follows seq 1/);
});

test('given a version-1 journal with facts, when this vmlockd opens it, then hashes are filled in, the indexes are the time-ordered ones and appends continue the chain', () => {
  const file = tempFile();
  const v1 = new Database(file);
  v1.pragma('journal_mode = WAL');
  migrate(v1, file, [MIGRATIONS[0]!]);
  const ins = v1.prepare('INSERT INTO facts (at, host, kind, disk, owner, owner_name, payload) VALUES (?, ?, ?, ?, ?, ?, ?)');
  for (let i = 1; i <= 25_003; i++) ins.run(AT(i % 60), 'old', 'K', `/d/${i % 7}`, `u${i % 5}`, i % 2 ? `vm${i % 5}` : null, JSON.stringify({ i }));
  v1.close();

  const j = openJournal(file, 'host-new');
  assert.is(j.schemaVersion, SCHEMA_VERSION);
  const r = j.verifyChain();
  assert.is(r.ok, true, r.problems.join('\n'));
  assert.is(r.checked, 25_003, 'pages of the migration cover every fact');
  const raw = new Database(file, { readonly: true });
  try {
    const indexes = raw.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'facts' AND name NOT LIKE 'sqlite_%' ORDER BY name`).pluck().all();
    assert.equal(indexes, ['facts_at', 'facts_disk_at', 'facts_kind_at', 'facts_owner_at']);
    assert.equal(raw.prepare('SELECT name, uuid FROM owners ORDER BY name').raw().all(), [0, 1, 2, 3, 4].map((k) => [`vm${k}`, `u${k}`]), 'names of old facts are backfilled');
    const triggers = raw.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name`).pluck().all();
    assert.equal(triggers, ['carried_disk_names', 'facts_disk_names', 'facts_no_delete', 'facts_no_update'], 'append-only, and disk_names filled on insert (v4)');
  } finally {
    raw.close();
  }
  j.append([{ kind: 'K', at: AT(59), payload: { after: true } }]);
  assert.is(j.lastSeq(), 25_004);
  assert.is(j.verifyChain().ok, true);
  assert.ok(j.integrity().ok, JSON.stringify(j.integrity()));
});

test.run();
