/**
 * Wait (synchronously) until a running daemon has moved its acknowledged facts from the staging file
 * into SQLite (docs/decisions/0006: moves run every ~20 ms), so a test reading journal.db directly sees
 * every fact already answered. Gives up after `timeoutMs` (a daemon killed with facts staged keeps
 * them there until its next start) and the caller reads what SQLite holds.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { Journal } from '../../src/journal/journal.js';

const pause = new Int32Array(new SharedArrayBuffer(4));

export function settled(stateDir: string, timeoutMs = 3_000): void {
  settledJournal(path.join(stateDir, 'journal.db'), timeoutMs);
}

/** The same for a journal file given by its path (`serve --journal FILE`). */
export function settledJournal(journalFile: string, timeoutMs = 3_000): void {
  const deadline = Date.now() + timeoutMs;
  const j = Journal.open(journalFile, { host: 'test-reader', readonly: true });
  try {
    while (j.stagedTail() !== null && Date.now() < deadline) Atomics.wait(pause, 0, 0, 10);
  } finally {
    j.close();
  }
}

/** Every fact of a daemon's journal (or only those of `kind`), in seq order, once the staged ones are in SQLite. */
export function journalFacts(stateDir: string, kind?: string): Array<{ kind: string; payload: any }> {
  settled(stateDir);
  const db = new Database(path.join(stateDir, 'journal.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT kind, payload FROM facts ORDER BY seq').all() as Array<{ kind: string; payload: string }>;
    return rows.map((r) => ({ kind: r.kind, payload: JSON.parse(r.payload) })).filter((r) => !kind || r.kind === kind);
  } finally {
    db.close();
  }
}
