// The journal id (meta key `journal_id`): names this local journal's chain in the published history
// (segment.ts). Made once, by the first writer that asks, and kept for the journal's life: a new
// journal (state directory lost, journal replaced) gets a new one, so its seq 1 never passes for the
// old journal's seq 1 in `<lockspace>/.journal/<host-id>/`.
import type { Journal } from './journal.js';
import { isJournalId, newJournalId } from './segment.js';

/** The journal's id, or undefined when no daemon has made one yet (or the value is not an id). */
export function journalIdOf(journal: Journal): string | undefined {
  const row = journal.db.prepare(`SELECT value FROM meta WHERE key = 'journal_id'`).get() as { value: unknown } | undefined;
  return isJournalId(row?.value) ? row.value : undefined;
}

/** The journal's id, made now when it has none. A writer's call; one row, written once. */
export function ensureJournalId(journal: Journal): string {
  const made = newJournalId();
  // INSERT OR IGNORE then read: two openers racing both end with the one id that won.
  journal.db.prepare(`INSERT OR IGNORE INTO meta (key, value) VALUES ('journal_id', ?)`).run(made);
  const id = journalIdOf(journal);
  if (id === undefined) throw new Error(`journal ${journal.file}: meta journal_id is not 16 lowercase hex chars; move the value aside (DELETE FROM meta WHERE key = 'journal_id') to get a new one`);
  return id;
}
