// The engine's port to the journal: typed facts in, generic rows out (the journal knows no engine types).
import type { Fact, NewFact } from './facts.js';

export interface FactRowLike {
  kind: string;
  at: string;
  resource?: string | null;
  disk?: string | null;
  owner?: string | null;
  ownerName?: string | null;
  payload: unknown;
}

export interface StoredRowLike extends FactRowLike {
  seq: number;
  host: string;
}

/** What the engine needs from the journal. */
export interface JournalPort {
  /** Durable when it returns (and everything staged before it too). */
  append(rows: readonly FactRowLike[]): StoredRowLike[];
  /**
   * Optional group commit across event-loop turns (a journal whose sync runs off the event loop):
   * written now, in order; `durable` false means the rows are durable only once `whenDurable`
   * calls back. Without it the engine uses `append`.
   */
  appendDeferred?(rows: readonly FactRowLike[]): { rows: StoredRowLike[]; durable: boolean };
  /**
   * Calls back once every row staged before this call is durable (null), or lost (the error: the
   * journal cut them off again, and every later staged row with them). May call back at once.
   */
  whenDurable?(cb: (error: Error | null) => void): void;
  /** Makes every staged row durable now, on this thread; their whenDurable callbacks run before it returns. Throws if it cannot. */
  syncNow?(): void;
}

export function toRow(f: NewFact): FactRowLike {
  const p = f.payload as { resource?: string; disk?: string; owner?: { uuid: string; name?: string } };
  return {
    kind: f.kind,
    at: f.at,
    resource: p.resource ?? null,
    disk: p.disk ?? null,
    owner: p.owner?.uuid ?? null,
    ownerName: p.owner?.name ?? null,
    payload: f.payload,
  };
}

export function fromRow(r: StoredRowLike): Fact {
  return { seq: r.seq, host: r.host, kind: r.kind, at: r.at, payload: r.payload } as Fact;
}

export function appendFacts(journal: JournalPort, facts: readonly NewFact[]): Fact[] {
  if (facts.length === 0) return [];
  return journal.append(facts.map(toRow)).map(fromRow);
}

/** Stage facts (see JournalPort.appendDeferred): their stored form, and whether they are durable already. */
export function stageFacts(journal: JournalPort, facts: readonly NewFact[]): { facts: Fact[]; durable: boolean } {
  if (facts.length === 0) return { facts: [], durable: true };
  const r = journal.appendDeferred!(facts.map(toRow));
  return { facts: r.rows.map(fromRow), durable: r.durable };
}
