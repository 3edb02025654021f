// The cluster read cache's payload form (decision 0014): a fact's payload usually starts with its
// owner, `{"owner":{"uuid":<owner>,"name":<owner_name>}` - the very values the row's owner and
// owner_name columns hold. A cache chain stores that prefix as one byte, so the payload is not kept
// twice in each of the three copies of a fact (the table and the two covering indexes): ~20% of the
// cache, which at 8 hosts x 1M facts is what keeps it from fitting the page cache.
//
// Only files that say so (meta key ELIDED_KEY) hold such payloads; readers restore them from the same
// row's columns. A daemon's own journal never has the key and is read as it always was. Pure.
import type Database from 'better-sqlite3';

/** meta key: present (value ELIDED_VALUE) in a file whose facts' and carried rows' payloads are stored elided. */
export const ELIDED_KEY = 'payload_form';
export const ELIDED_VALUE = 'owner-elided-1';

/** The payload text a row's owner columns stand for, when its payload starts with exactly this. */
function ownerPrefix(owner: string, name: string): string {
  // The last owner's, kept: a question's facts mostly come in runs of one VM (`--vm`: all of them).
  if (owner !== lastOwner || name !== lastName) {
    lastPrefix = `{"owner":{"uuid":${JSON.stringify(owner)},"name":${JSON.stringify(name)}}`;
    lastOwner = owner;
    lastName = name;
  }
  return lastPrefix;
}
let lastOwner = '';
let lastName = '';
let lastPrefix = `{"owner":{"uuid":"","name":""}`;

/**
 * The stored form of a payload in an elided file:
 *   - `\x01` + the rest, when the payload is the row's owner prefix followed by `,` or `}`;
 *   - `\x01\x01` + the payload, when the payload itself starts with `\x01` (no JSON text does, but a
 *     published line is only checked to be a string: it must come back exactly);
 *   - the payload unchanged otherwise (it starts with anything but `\x01`).
 */
export function elidePayload(payload: string, owner: string | null, name: string | null): string {
  if (payload.charCodeAt(0) === 1) return `\u0001\u0001${payload}`;
  if (owner === null || name === null || payload.charCodeAt(0) !== 123 /* { */) return payload;
  // A lone UTF-16 surrogate in the owner's uuid or name (JSON escapes it in the payload, review 24c
  // F3): SQLite stores the column as UTF-8, which cannot hold it, so the column reads back altered
  // (U+FFFD) and could not restore the payload as published. Such a payload is kept whole.
  if (!wellFormed(owner) || !wellFormed(name)) return payload;
  const pre = ownerPrefix(owner, name);
  if (!payload.startsWith(pre)) return payload;
  const next = payload.charCodeAt(pre.length);
  return next === 44 /* , */ || next === 125 /* } */ ? `\u0001${payload.slice(pre.length)}` : payload;
}

/** False for a string holding a lone UTF-16 surrogate (String.prototype.isWellFormed, Node 20). */
function wellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** The payload text stored as `stored` (elidePayload's inverse) from its row's owner and owner_name. */
export function restorePayload(stored: string, owner: string | null, name: string | null): string {
  if (stored.charCodeAt(0) !== 1) return stored;
  if (stored.charCodeAt(1) === 1) return stored.slice(2);
  if (owner === null || name === null) throw new Error(`elided payload without its owner columns (owner ${JSON.stringify(owner)}, owner_name ${JSON.stringify(name)}): the cache file is damaged`);
  return `${ownerPrefix(owner, name)}${stored.slice(1)}`;
}

/** True when the file's payloads are stored elided (a cluster read cache chain written in that form). */
export function hasElidedPayloads(db: Database.Database): boolean {
  try {
    const v = db.prepare(`SELECT value FROM meta WHERE key = ?`).pluck().get(ELIDED_KEY) as string | undefined;
    if (v === undefined) return false;
    if (v !== ELIDED_VALUE) throw new Error(`payload form ${JSON.stringify(v)} is not one this vmlockd reads (${ELIDED_VALUE}): a newer vmlockd's cache; delete the cache directory to rebuild it`);
    return true;
  } catch (e) {
    if (e instanceof Error && /no such table: meta/.test(e.message)) return false;
    throw e;
  }
}

/** Payload restorer for one file: the identity where payloads are stored whole. */
export function payloadReader(db: Database.Database): ((stored: string, owner: string | null, name: string | null) => string) | undefined {
  return hasElidedPayloads(db) ? restorePayload : undefined;
}

/**
 * Turns a file's whole-payload rows (facts and carried) into the elided form and marks the file, in
 * one transaction: a cache written before the form existed. The journal schema's append-only update
 * trigger is lifted for it (this is a cache). Rows are read in pages of seq (an update while a
 * statement iterates the same table is refused). `indexes` (the file's indexes over payload) are
 * dropped before and built again after, in the same transaction: one sort instead of an index
 * update per row, and a reader never sees the file without them. Returns the rows rewritten.
 */
export function elideInPlace(db: Database.Database, indexes: ReadonlyArray<{ readonly name: string; readonly sql: string }> = []): number {
  let changed = 0;
  db.transaction(() => {
    if (hasElidedPayloads(db)) return;
    const had = new Set(db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index'`).pluck().all() as string[]);
    const rebuild = indexes.filter((ix) => had.has(ix.name));
    for (const ix of rebuild) db.exec(`DROP INDEX ${ix.name}`);
    const trig = db.prepare(`SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'facts_no_update'`).pluck().get() as string | undefined;
    if (trig !== undefined) db.exec('DROP TRIGGER facts_no_update');
    for (const table of ['facts', 'carried'] as const) {
      const page = db.prepare(`SELECT seq, owner, owner_name, payload FROM ${table} WHERE seq > ? ORDER BY seq LIMIT 10000`).raw(true);
      const set = db.prepare(`UPDATE ${table} SET payload = ? WHERE seq = ?`);
      let after = 0;
      for (let rows = page.all(after) as Array<[number, string | null, string | null, string]>; rows.length > 0; rows = page.all(after) as Array<[number, string | null, string | null, string]>) {
        for (const [seq, owner, name, payload] of rows) {
          const e = elidePayload(payload, owner, name);
          if (e !== payload) {
            set.run(e, seq);
            changed++;
          }
        }
        after = rows[rows.length - 1]![0];
      }
    }
    db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(ELIDED_KEY, ELIDED_VALUE);
    for (const ix of rebuild) db.exec(ix.sql);
    if (trig !== undefined) db.exec(trig);
  }).immediate();
  return changed;
}
