// A fact row on its way in: checked (a clear error naming what was wrong, before anything is
// written), given its seq and hash (continuing the chain), and handed back as the caller will read it.
import { JournalError } from './errors.js';
import { isIsoMsUtc, type FactRow, type StoredFact } from './query.js';
import { chainHashOf, chainHead, type ChainBase } from './schema.js';

/** A fact with its seq and hash assigned: what is staged and what is inserted. */
export interface ChainedRow {
  seq: number;
  at: string;
  /** The appending process's host id (a restart may run under another). */
  host: string;
  kind: string;
  resource: string | null;
  disk: string | null;
  owner: string | null;
  ownerName: string | null;
  json: string;
  hash: Buffer;
}

function checkRow(row: FactRow, i: number): string {
  if (row === null || typeof row !== 'object') {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `fact row ${i} must be an object, got ${preview(row)}`);
  }
  if (typeof row.kind !== 'string' || row.kind === '') {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `fact row ${i}: kind must be a non-empty string, got ${preview(row.kind)}`);
  }
  // Range queries compare `at` as text, which equals time order only for this one exact shape.
  if (!isIsoMsUtc(row.at)) {
    throw new JournalError(
      'VMLOCKD_ERR_BAD_INPUT',
      `fact row ${i} (${row.kind}): at must be ISO-8601 UTC with ms like 2026-11-25T10:00:00.000Z, got ${preview(row.at)}`,
    );
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(row.payload);
  } catch (cause) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `fact row ${i} (${row.kind}): payload is not JSON-serialisable: ${String(cause)}`, {
      cause,
    });
  }
  if (json === undefined) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `fact row ${i} (${row.kind}): payload is not JSON-serialisable, got ${typeof row.payload}`);
  }
  return json;
}

function optionalText(value: unknown, i: number, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `fact row ${i}: ${field} must be a string or null, got ${preview(value)}`);
  }
  return value;
}

export function checkSeq(name: string, seq: unknown): void {
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `${name} must be an integer >= 0, got ${preview(seq)}`);
  }
}

export function preview(value: unknown): string {
  let s: string;
  try {
    s = typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
  } catch {
    s = String(value);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Check rows and give each its seq and hash, continuing the chain from `head`. Throws before anything
 * is written. `heads`, when given, gets each row's `chainHead` (the staging line starts with it).
 */
export function chainRows(rows: readonly FactRow[], head: ChainBase, host: string, heads?: string[]): ChainedRow[] {
  let { seq, hash } = head;
  const out: ChainedRow[] = new Array<ChainedRow>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    const json = checkRow(row, i);
    const resource = optionalText(row.resource, i, 'resource');
    const disk = optionalText(row.disk, i, 'disk');
    const owner = optionalText(row.owner, i, 'owner');
    const ownerName = optionalText(row.ownerName, i, 'ownerName');
    // Explicit seq: after a compaction that moved every fact, max(rowid) + 1 would restart at 1.
    seq += 1;
    const text = chainHead(seq, row.at, host, row.kind, resource, disk, owner, ownerName);
    hash = chainHashOf(hash, text, json);
    heads?.push(text);
    out[i] = { seq, at: row.at, host, kind: row.kind, resource, disk, owner, ownerName, json, hash };
  }
  return out;
}

/**
 * The caller folds what is returned; handing back the parsed JSON (not the caller's object) makes
 * live state equal the state a replay will build from the same rows.
 */
export function stored(r: ChainedRow): StoredFact {
  return { seq: r.seq, host: r.host, kind: r.kind, at: r.at, resource: r.resource, disk: r.disk, owner: r.owner, ownerName: r.ownerName, payload: JSON.parse(r.json) as unknown };
}
