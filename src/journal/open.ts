// Opening the SQLite file: a reader never creates or migrates it; a writer refuses a network
// filesystem, insists on WAL, and opens a live journal or an archive, never the other.
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { JournalError } from './errors.js';
import { MIN_READABLE_VERSION, SCHEMA_VERSION, readSchemaVersion, tooNew } from './schema.js';
import { networkFsName } from './network-fs.js';

export { networkFsName };

export const BUSY_TIMEOUT_MS = 5000;

export function openReader(file: string): Database.Database {
  // Checked first so the message names the file; fileMustExist still guards the race after it.
  if (!existsSync(file)) {
    throw new JournalError('VMLOCKD_ERR_JOURNAL_MISSING', `journal ${file} does not exist (read-only open never creates it)`);
  }
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (cause) {
    throw new JournalError('VMLOCKD_ERR_JOURNAL_MISSING', `cannot open journal ${file} read-only: ${String(cause)}`, { cause });
  }
  // journal_mode and synchronous are the writer's business; a reader only waits out a checkpoint.
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  return db;
}

export function checkReaderVersion(db: Database.Database, file: string): number {
  let found: number;
  try {
    found = readSchemaVersion(db, file);
  } catch (err) {
    if (err instanceof JournalError) throw err;
    throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `cannot read journal ${file}: ${String(err)}`, { cause: err });
  }
  if (found === 0) throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `${file} is an empty database, not a vmlockd journal`);
  if (found > SCHEMA_VERSION) throw tooNew(file, found, SCHEMA_VERSION);
  if (found < MIN_READABLE_VERSION) {
    throw new JournalError(
      'VMLOCKD_ERR_JOURNAL_TOO_OLD',
      `${file} has journal schema version ${found}, older than ${SCHEMA_VERSION}; open it read-write once (start the daemon) to migrate it`,
    );
  }
  return found;
}

export function openWriter(file: string, synchronous: 'NORMAL' | 'FULL', allowNetworkFs: boolean): Database.Database {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true });
  if (!allowNetworkFs) {
    const fs = networkFsName(statfsSync(dir).type);
    if (fs !== undefined) {
      throw new JournalError(
        'VMLOCKD_ERR_JOURNAL_NETWORK_FS',
        `journal ${file} would live on a ${fs} filesystem; put it on local disk (WAL needs local shared memory and local fsync)`,
      );
    }
  }
  const db = new Database(file);
  try {
    // busy_timeout first: switching to WAL needs a lock another opener may briefly hold.
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') {
      throw new JournalError('VMLOCKD_ERR_JOURNAL_NO_WAL', `journal ${file} refused WAL mode (journal_mode is ${String(mode)})`);
    }
    db.pragma(`synchronous = ${synchronous}`);
    db.pragma('foreign_keys = ON');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * A writer opens a live journal or an archive, never the other: a daemon pointed at an archive
 * would append live facts after history, and compaction into a live journal would mix two hosts' runs.
 */
export function checkRole(db: Database.Database, file: string, archive: boolean): void {
  const role = (db.prepare(`SELECT value FROM meta WHERE key = 'role'`).get() as { value: string } | undefined)?.value;
  if (role === 'archive' && !archive) {
    throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `${file} is a vmlockd journal archive (written by journal compact), not a live journal`);
  }
  if (role !== 'archive' && archive) {
    const hasFacts = db.prepare(`SELECT 1 FROM facts LIMIT 1`).get() !== undefined;
    if (hasFacts) throw new JournalError('VMLOCKD_ERR_JOURNAL_NOT_OURS', `${file} is a live vmlockd journal, not an archive`);
    db.prepare(`INSERT INTO meta (key, value) VALUES ('role', 'archive') ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run();
  }
}
