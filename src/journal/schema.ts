// Schema and forward migrations. Version N is MIGRATIONS[N - 1]; a journal records its version in
// meta.schema_version. Migrations only ever move forward: a journal written by newer code is
// refused, because older code would misread rows whose meaning it does not know.
import type Database from 'better-sqlite3';
import { JournalError } from './errors.js';

export interface Migration {
  readonly description: string;
  /** SQL (may hold several statements) or a function; runs inside the migration transaction. */
  readonly up: string | ((db: Database.Database) => void);
}

export const APPEND_ONLY_TRIGGERS = ['facts_no_update', 'facts_no_delete'] as const;

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
];

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
