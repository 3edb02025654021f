// The write transactions of a writer's connection: appending rows (unstaged), inserting staged
// rows that already carry their seq and hash, and recording a snapshot.
import type Database from 'better-sqlite3';
import { JournalError } from './errors.js';
import type { FactRow, StoredFact } from './query.js';
import { chainRows, stored, type ChainedRow } from './rows.js';
import type { ChainBase } from './schema.js';

const KEEP_SNAPSHOTS = 3;

export interface WriteTransactions {
  append(rows: readonly FactRow[]): StoredFact[];
  insertStaged(rows: readonly ChainedRow[]): void;
  snapshot(seq: number, at: string, state: string): void;
}

/** `chainHead` is read inside each write transaction. */
export function writeTransactions(db: Database.Database, file: string, host: string, chainHead: () => ChainBase): WriteTransactions {
  const insertOwner = db.prepare<[string, string]>(`INSERT OR IGNORE INTO owners (name, uuid) VALUES (?, ?)`);
  const insertFact = db.prepare<[number, string, string, string, string | null, string | null, string | null, string | null, string, Buffer]>(
    `INSERT INTO facts (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertSnapshot = db.prepare<[number, string, string]>(`INSERT OR REPLACE INTO snapshots (seq, at, state) VALUES (?, ?, ?)`);
  const pruneSnapshots = db.prepare<[number]>(
    `DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)`,
  );

  // IMMEDIATE takes the write lock at BEGIN, so a second writer (a CLI compaction) waits on
  // busy_timeout instead of failing with SQLITE_BUSY halfway through a batch.
  const insertRows = (rows: readonly ChainedRow[]): void => {
    for (const r of rows) {
      insertFact.run(r.seq, r.at, r.host, r.kind, r.resource, r.disk, r.owner, r.ownerName, r.json, r.hash);
      // A lookup in a table of a few thousand rows; it writes only for a name or uuid not seen before.
      if (r.owner !== null && r.ownerName !== null) insertOwner.run(r.ownerName, r.owner);
    }
  };
  const appendTx = db.transaction((rows: readonly FactRow[]): StoredFact[] => {
    // Read inside the write transaction: another writer (a second daemon on a test file, a CLI)
    // may have appended since our last batch, and a cached head would fork the chain.
    const chained = chainRows(rows, chainHead(), host);
    insertRows(chained);
    return chained.map(stored);
  });
  // Staged facts already carry their seq and hash; they must continue the chain exactly.
  const insertStagedTx = db.transaction((rows: readonly ChainedRow[]): void => {
    const head = chainHead();
    const first = rows[0]!;
    if (first.seq !== head.seq + 1) {
      throw new JournalError(
        'VMLOCKD_ERR_JOURNAL_FORKED',
        `journal ${file}: staged fact seq ${first.seq} does not follow the last stored seq ${head.seq}; another process wrote to this journal`,
      );
    }
    insertRows(rows);
  });
  const snapshotTx = db.transaction((seq: number, at: string, state: string) => {
    insertSnapshot.run(seq, at, state);
    pruneSnapshots.run(KEEP_SNAPSHOTS);
  });
  return {
    append: (rows) => appendTx.immediate(rows),
    insertStaged: (rows) => insertStagedTx.immediate(rows),
    snapshot: (seq, at, state) => snapshotTx.immediate(seq, at, state),
  };
}
