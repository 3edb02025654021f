// Schema and forward migrations. Version N is MIGRATIONS[N - 1]; a journal records its version in
// meta.schema_version. Migrations only ever move forward: a journal written by newer code is
// refused, because older code would misread rows whose meaning it does not know.
import { createHash, hash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { JournalError } from './errors.js';
import type { DbFactRow } from './query.js';

export interface Migration {
  readonly description: string;
  /** SQL (may hold several statements) or a function; runs inside the migration transaction. */
  readonly up: string | ((db: Database.Database) => void);
}

export const APPEND_ONLY_TRIGGERS = ['facts_no_update', 'facts_no_delete'] as const;

/**
 * The audit indexes (schema version 2 on). Each names a column and `at`: SQLite appends the rowid
 * (seq) to every index, so one range scan both filters and yields (at, seq) order, and a
 * time-bounded question (`--since`, `--at`) stops at its bound instead of reading the column's whole
 * history. Exported so a bulk loader can drop and re-create exactly these.
 *
 * Few on purpose: an index keyed by disk or VM takes each new fact at a random leaf, and each such
 * index costs ~9 us per appended fact on the reference machine (90 ms of the 10,000 Reacquired
 * facts a restart journals). Names go through the small `owners` table instead of an index on
 * owner_name, and resource (one per disk) has none: no audit question asks by lock file.
 */
export const AUDIT_INDEXES: ReadonlyArray<{ readonly name: string; readonly sql: string }> = [
  { name: 'facts_disk_at', sql: 'CREATE INDEX facts_disk_at ON facts(disk, at)' },
  { name: 'facts_owner_at', sql: 'CREATE INDEX facts_owner_at ON facts(owner, at)' },
  { name: 'facts_kind_at', sql: 'CREATE INDEX facts_kind_at ON facts(kind, at)' },
  { name: 'facts_at', sql: 'CREATE INDEX facts_at ON facts(at)' },
];

/** Fills `owners` from facts (migration, bulk loaders): every (name, uuid) pair ever journaled. */
export const OWNERS_BACKFILL = `INSERT OR IGNORE INTO owners (name, uuid)
  SELECT DISTINCT owner_name, owner FROM facts WHERE owner IS NOT NULL AND owner_name IS NOT NULL`;

const UPDATE_TRIGGER = `CREATE TRIGGER facts_no_update BEFORE UPDATE ON facts
  BEGIN SELECT RAISE(ABORT, 'vmlockd journal is append-only: UPDATE of facts refused'); END;`;
// Compaction may delete only facts it has first copied to the archive: meta.archived_through is
// raised in the same transaction that records the archive's last hash, before any delete.
const DELETE_TRIGGER = `CREATE TRIGGER facts_no_delete BEFORE DELETE ON facts
  WHEN old.seq > coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'archived_through'), 0)
  BEGIN SELECT RAISE(ABORT, 'vmlockd journal is append-only: DELETE of facts refused'); END;`;

/** The columns the hash chain covers, in the order they are hashed. */
export const CHAIN_COLUMNS = 'seq, at, host, kind, resource, disk, owner, owner_name, payload';

/** A stored fact row as SQLite returns it; the chain hashes the payload JSON text as stored. */
export type ChainRow = DbFactRow;

/** Where the chain continues from, and how far compaction has moved facts out. */
export interface ChainBase {
  seq: number;
  hash: Buffer;
}

/** The hash before the first fact: 32 zero bytes. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/**
 * hash(n) = sha256(hash(n-1) || canonical row n). The canonical row is a JSON array of the
 * columns (null stays null, so an empty string and a missing value differ) then a newline and the
 * payload text.
 */
export function chainHash(prev: Buffer, row: ChainRow): Buffer {
  return chainHashOf(prev, chainHead(row.seq, row.at, row.host, row.kind, row.resource, row.disk, row.owner, row.owner_name), row.payload);
}

/** The canonical row's first line: the JSON array of every chained column but the payload. */
export function chainHead(seq: number, at: string, host: string, kind: string, resource: string | null, disk: string | null, owner: string | null, ownerName: string | null): string {
  return JSON.stringify([seq, at, host, kind, resource, disk, owner, ownerName]);
}

/** chainHash of a row given as its `chainHead` and payload text (the staging file reuses the head). */
export function chainHashOf(prev: Buffer, head: string, payload: string): Buffer {
  // The same bytes hashed in one call over one scratch buffer (a Hash object and four updates cost ~30%
  // more per fact: every append and every published line read), head and payload written into it in
  // turn rather than joined first. UTF-8 takes at most 3 bytes per UTF-16 unit, so a text that might
  // not fit takes the Hash object instead.
  if (prev.length + (head.length + 1 + payload.length) * 3 > scratch.length) return createHash('sha256').update(prev).update(`${head}\n${payload}`).digest();
  prev.copy(scratch, 0);
  let n = prev.length + scratch.write(head, prev.length, 'utf8');
  scratch[n++] = 0x0a;
  n += scratch.write(payload, n, 'utf8');
  return hash('sha256', scratch.subarray(0, n), 'buffer');
}

/** chainHash's scratch: a fact is a few hundred bytes; a longer one (up to MiBs) is hashed in parts. */
const scratch = Buffer.allocUnsafe(64 * 1024);

/**
 * The other names a disk's facts use, by a key an audit looks up (schema version 4): `id:<identity>`
 * for a fact whose payload carries a disk identity (`"inode":"dev:ino:btime"`, `dev:ino`, `blk:rdev`:
 * its first occurrence, the payload's own field), `lease:<hex>` for a fact whose disk is a lock file
 * named by a SHA-256 (`<dir>/<64 hex>`: a virtlockd-protocol lease). One row per (key, disk), so a
 * lookup is one index probe (`audit --disk` on a hard link, a lease: src/cli/disk-alias.ts) instead of
 * a scan of every payload. Filled by triggers on every insert into facts and carried (every writer:
 * the mover thread, compaction, a bulk loader), and for the facts before the migration by the writer
 * thread in bounded batches (indexDiskNamesBatch): meta.disk_names_pending is the highest seq that
 * may not be in it yet (0: complete), and a lookup scans the facts up to it as before.
 */
export const DISK_NAMES_PENDING = 'disk_names_pending';

/**
 * The two INSERTs of a row's keys: `r` names the row (new in a trigger, a table alias), `from` the
 * rest of the SELECT (empty in a trigger; FROM and the seq range in the backfill).
 */
function diskNameInserts(r: string, from: string, where: string): string[] {
  const at = `instr(${r}.payload, '"inode":"')`;
  const rest = `substr(${r}.payload, ${at} + 9)`;
  const and = where === '' ? '' : ` AND ${where}`;
  return [
    `INSERT OR IGNORE INTO disk_names (key, disk) SELECT 'id:' || substr(${rest}, 1, instr(${rest}, '"') - 1), ${r}.disk${from}
      WHERE ${r}.disk IS NOT NULL AND ${at} > 0 AND instr(${rest}, '"') > 1${and}`,
    `INSERT OR IGNORE INTO disk_names (key, disk) SELECT 'lease:' || substr(${r}.disk, -64), ${r}.disk${from}
      WHERE length(${r}.disk) > 65 AND substr(${r}.disk, -65, 1) = '/' AND substr(${r}.disk, -64) NOT GLOB '*[^0-9a-f]*'${and}`,
  ];
}

/** The disk_names triggers, by name: `<table>_disk_names` on facts and carried. */
export const DISK_NAMES_TRIGGERS_SQL: ReadonlyArray<{ readonly name: string; readonly sql: string }> = ['facts', 'carried'].map((t) => ({
  name: `${t}_disk_names`,
  sql: `CREATE TRIGGER ${t}_disk_names AFTER INSERT ON ${t} BEGIN ${diskNameInserts('new', '', '').join('; ')}; END;`,
}));

const DISK_NAMES_TRIGGERS = DISK_NAMES_TRIGGERS_SQL.map((t) => t.sql).join('\n');

/**
 * Every fact's and carried copy's disk_names rows in two set-based statements per table, the rows the
 * triggers would have written one by one (the same expressions; INSERT OR IGNORE, so rows already
 * there are kept). A bulk loader that lifts the triggers for its load (the cluster read cache) runs it
 * after: ~1.2 us per fact against ~3 us for the trigger per inserted row (bench/README.md). Inside the
 * caller's transaction.
 */
export function fillDiskNames(db: Database.Database): void {
  for (const t of ['facts', 'carried']) for (const sql of diskNameFill(t)) db.prepare(sql).run();
}

/**
 * diskNameInserts' two statements over a whole table, with the identity's rest (`substr(payload,
 * instr(payload, '"inode":"') + 9)`) computed once per row instead of four times: a subquery with
 * `LIMIT -1` (no limit) that SQLite does not flatten into the outer query (it has a WHERE), so the
 * outer expressions read its column. The same expressions on the same values: the same rows (the
 * fill of a 100k-fact chain with a daemon's payloads ~250 -> ~145 ms, bench/README.md session 28).
 */
function diskNameFill(table: string): string[] {
  const [, lease] = diskNameInserts('f', ` FROM ${table} AS f`, '');
  const at = `instr(f.payload, '"inode":"')`;
  return [
    `INSERT OR IGNORE INTO disk_names (key, disk) SELECT 'id:' || substr(r.rest, 1, instr(r.rest, '"') - 1), r.disk
      FROM (SELECT f.disk AS disk, substr(f.payload, ${at} + 9) AS rest FROM ${table} AS f WHERE f.disk IS NOT NULL AND ${at} > 0 LIMIT -1) AS r
      WHERE instr(r.rest, '"') > 1`,
    lease!,
  ];
}

/** How many facts (and carried copies) one backfill batch of disk_names reads: ~55 ms at load 18 on 2 cores (bench/README.md). */
export const DISK_NAMES_BATCH = 1_000;

/**
 * One bounded batch of the disk_names backfill, in its own IMMEDIATE transaction: the facts and
 * carried copies with seq in (pending - batch, pending], then pending lowered in the same commit (a
 * SIGKILL keeps either both or neither). Returns the facts still pending (0: complete, or the file
 * has no disk_names: written before version 4).
 */
export function indexDiskNamesBatch(db: Database.Database, batch = DISK_NAMES_BATCH): number {
  const tx = db.transaction((): number => {
    const raw = db.prepare(`SELECT value FROM meta WHERE key = ?`).pluck().get(DISK_NAMES_PENDING) as string | undefined;
    const pending = raw === undefined ? 0 : Number(raw);
    if (!Number.isSafeInteger(pending) || pending <= 0) return 0;
    const low = Math.max(0, pending - batch);
    for (const t of ['facts', 'carried']) {
      for (const sql of diskNameInserts('f', ` FROM ${t} AS f`, 'f.seq > ? AND f.seq <= ?')) db.prepare(sql).run(low, pending);
    }
    db.prepare(`UPDATE meta SET value = ? WHERE key = ?`).run(String(low), DISK_NAMES_PENDING);
    return low;
  });
  return tx.immediate();
}

export const MIGRATIONS: readonly Migration[] = [
  {
    description: 'initial schema: facts, snapshots, meta, audit indexes, append-only triggers',
    up: `
      CREATE TABLE facts (
        seq        INTEGER PRIMARY KEY,
        at         TEXT NOT NULL,
        host       TEXT NOT NULL,
        kind       TEXT NOT NULL,
        resource   TEXT,
        disk       TEXT,
        owner      TEXT,
        owner_name TEXT,
        payload    TEXT NOT NULL
      );
      -- Each audit question filters on one column and pages by seq, so (column, seq) serves both.
      CREATE INDEX facts_disk_seq       ON facts(disk, seq);
      CREATE INDEX facts_owner_seq      ON facts(owner, seq);
      CREATE INDEX facts_owner_name_seq ON facts(owner_name, seq);
      CREATE INDEX facts_resource_seq   ON facts(resource, seq);
      CREATE INDEX facts_kind_seq       ON facts(kind, seq);
      CREATE INDEX facts_at             ON facts(at);

      -- The state is the fold of the facts; a rewritten fact would silently change history.
      CREATE TRIGGER facts_no_update BEFORE UPDATE ON facts
        BEGIN SELECT RAISE(ABORT, 'vmlockd journal is append-only: UPDATE of facts refused'); END;
      CREATE TRIGGER facts_no_delete BEFORE DELETE ON facts
        BEGIN SELECT RAISE(ABORT, 'vmlockd journal is append-only: DELETE of facts refused'); END;

      CREATE TABLE snapshots (
        seq   INTEGER PRIMARY KEY,
        at    TEXT,
        state TEXT
      );

      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT
      );
    `,
  },
  {
    description: 'hash chain, compaction (archived_through, carried facts), audit indexes ordered by time',
    up: (db) => {
      db.exec(`
        ALTER TABLE facts ADD COLUMN hash BLOB;
        -- VM name -> uuids: a name finds every fact of the VM, also those journaled with the uuid alone.
        CREATE TABLE owners (
          name TEXT NOT NULL,
          uuid TEXT NOT NULL,
          PRIMARY KEY (name, uuid)
        ) WITHOUT ROWID;
        CREATE INDEX owners_uuid ON owners(uuid);
        DROP INDEX facts_disk_seq;
        DROP INDEX facts_owner_seq;
        DROP INDEX facts_owner_name_seq;
        DROP INDEX facts_resource_seq;
        DROP INDEX facts_kind_seq;
      `);
      for (const ix of AUDIT_INDEXES) if (ix.name !== 'facts_at') db.exec(ix.sql);
      db.exec(OWNERS_BACKFILL);
      // Facts written before the chain existed get their hashes now, in seq order, so verify covers
      // the whole journal. The update trigger is lifted for this one pass only.
      db.exec('DROP TRIGGER facts_no_update; DROP TRIGGER facts_no_delete;');
      // In pages: an update while a statement iterates the same table is refused, and one list of
      // every row would not fit in memory on a large journal.
      const page = db.prepare<[number], ChainRow>(`SELECT ${CHAIN_COLUMNS} FROM facts WHERE seq > ? ORDER BY seq ASC LIMIT 10000`);
      const set = db.prepare<[Buffer, number]>('UPDATE facts SET hash = ? WHERE seq = ?');
      let prev = GENESIS_HASH;
      let after = 0;
      for (let rows = page.all(after); rows.length > 0; rows = page.all(after)) {
        for (const row of rows) {
          prev = chainHash(prev, row);
          set.run(prev, row.seq);
        }
        after = rows[rows.length - 1]!.seq;
      }
      db.exec(`
        ${UPDATE_TRIGGER}
        ${DELETE_TRIGGER}
        -- Facts moved to the archive that are still in force (held locks): audit --at keeps seeing
        -- who holds a disk without opening the archive. Copies of archived rows, hash included.
        CREATE TABLE carried (
          seq        INTEGER PRIMARY KEY,
          at         TEXT NOT NULL,
          host       TEXT NOT NULL,
          kind       TEXT NOT NULL,
          resource   TEXT,
          disk       TEXT,
          owner      TEXT,
          owner_name TEXT,
          payload    TEXT NOT NULL,
          hash       BLOB
        );
        CREATE INDEX carried_disk ON carried(disk, at);
      `);
    },
  },
  {
    description: 'generation floor: the highest fencing generation per disk among the facts compaction moved out',
    // Compaction deletes the facts it archives; without this the journal would forget which
    // generations it gave, and a stale holder record naming this host (a lease lost, never
    // rewritten) would look like a grant the journal forgot (decisions/0002). Written in the same
    // transaction that raises archived_through, so before any delete.
    up: `
      CREATE TABLE generation_floor (
        disk TEXT PRIMARY KEY,
        gen  INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    description: 'disk names by identity and lease hash (disk_names), filled for new facts by triggers and for older ones in batches',
    // Constant time whatever the journal's size (a start re-takes its locks right after): the table
    // and triggers, and the seq up to which older facts wait for the writer thread's backfill.
    up: (db) => {
      db.exec(`
        CREATE TABLE disk_names (
          key  TEXT NOT NULL,
          disk TEXT NOT NULL,
          PRIMARY KEY (key, disk)
        ) WITHOUT ROWID;
        ${DISK_NAMES_TRIGGERS}
      `);
      const top = db.prepare(`SELECT max(coalesce((SELECT max(seq) FROM facts), 0), coalesce((SELECT max(seq) FROM carried), 0))`).pluck().get() as number;
      db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(DISK_NAMES_PENDING, String(top));
    },
  },
];

/**
 * The oldest schema a reader (audit, verify) still reads: version 4 only adds disk_names, which a
 * reader does without (it scans, as before) until the file's writer migrates it.
 */
export const MIN_READABLE_VERSION = 3;

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * The schema version recorded in the file: 0 for an empty database. A database that has tables
 * but no vmlockd meta row is someone else's file, and is refused rather than written into.
 */
export function readSchemaVersion(db: Database.Database, file: string): number {
  const hasMeta = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get();
  if (hasMeta === undefined) {
    const other = db
      .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1`)
      .get() as { name: string } | undefined;
    if (other !== undefined) {
      throw new JournalError(
        'VMLOCKD_ERR_JOURNAL_NOT_OURS',
        `${file} is not a vmlockd journal: it has table "${other.name}" but no meta table`,
      );
    }
    return 0;
  }
  const row = db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: unknown } | undefined;
  const raw = row?.value;
  const version = typeof raw === 'string' && /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new JournalError(
      'VMLOCKD_ERR_JOURNAL_NOT_OURS',
      `${file} is not a vmlockd journal: meta.schema_version is ${JSON.stringify(raw ?? null)}, expected a positive integer`,
    );
  }
  return version;
}

export function tooNew(file: string, found: number, known: number): JournalError {
  return new JournalError(
    'VMLOCKD_ERR_JOURNAL_TOO_NEW',
    `${file} has journal schema version ${found}, newer than the ${known} this vmlockd knows; ` +
      `run the vmlockd version that wrote it (or newer)`,
  );
}

/**
 * Brings the file to the newest version in one IMMEDIATE transaction: two daemons or a daemon and a
 * CLI opening the same new file cannot both run migration 1, and a failing migration leaves the
 * file at its old version rather than half-migrated.
 */
export function migrate(db: Database.Database, file: string, migrations: readonly Migration[] = MIGRATIONS): number {
  // Already current (every open but the first after an upgrade): nothing to write, so no write lock
  // to wait for. Another process holding it (a sqlite3 shell, a backup, `journal compact`) would
  // otherwise fail a daemon's start after the busy timeout, and with it every lock to re-take.
  const current = readSchemaVersion(db, file);
  if (current > migrations.length) throw tooNew(file, current, migrations.length);
  if (current === migrations.length) return current;
  const run = db.transaction(() => {
    const found = readSchemaVersion(db, file);
    if (found > migrations.length) throw tooNew(file, found, migrations.length);
    for (let v = found; v < migrations.length; v++) {
      const step = migrations[v]!;
      if (typeof step.up === 'string') db.exec(step.up);
      else step.up(db);
    }
    if (found < migrations.length) {
      db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)
                  ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(String(migrations.length));
    }
    return migrations.length;
  });
  return run.immediate();
}
