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
  append(rows: readonly FactRowLike[]): StoredRowLike[];
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
