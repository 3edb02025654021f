// The publication's writes to the journal's meta table from the daemon's main thread: the journal
// id (written once, by the first start that publishes) and meta.published_through (the mark that holds
// `journal compact` back). Neither may wait out SQLite's busy timeout on the event loop while another
// process (a sqlite3 shell left in a transaction, a backup tool, `vmlockd journal compact`) holds the
// journal's write lock: each is read first, written only when missing, and written with no wait at
// all; a refused write is retried later (review24d: a start froze the event loop 5 s here, twice).
import type { Journal } from '../journal/journal.js';
import { ensureJournalId, journalIdOf } from '../journal/journal-id.js';

/** The journal id, made now (without waiting for another process's write lock) when there is none. Throws SQLITE_BUSY then. */
export function journalIdNow(journal: Journal): string {
  return journalIdOf(journal) ?? journal.nonBlocking(() => ensureJournalId(journal));
}

/** meta.published_through set to `floor` unless present: compaction waits for publication from now on. */
export function holdCompactionNow(journal: Journal, floor: () => number): void {
  if (journal.db.prepare(`SELECT 1 FROM meta WHERE key = 'published_through'`).get() !== undefined) return;
  journal.nonBlocking(() => journal.db.prepare(`INSERT OR IGNORE INTO meta (key, value) VALUES ('published_through', ?)`).run(String(floor())));
}

/** meta.published_through removed (publication off: compaction no longer waits for it). */
export function releaseCompactionNow(journal: Journal): void {
  if (journal.db.prepare(`SELECT 1 FROM meta WHERE key = 'published_through'`).get() === undefined) return;
  journal.nonBlocking(() => journal.db.prepare(`DELETE FROM meta WHERE key = 'published_through'`).run());
}
