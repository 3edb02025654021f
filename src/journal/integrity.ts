// Integrity: walking the hash chain (verifyChain) and checking the file as a whole (integrity):
// SQLite's own check, the schema version, the append-only triggers, every fact's shape, snapshots.
import type Database from 'better-sqlite3';
import { isIsoMsUtc } from './query.js';
import { preview } from './rows.js';
import { payloadReader } from './payload-elide.js';
import { APPEND_ONLY_TRIGGERS, CHAIN_COLUMNS, GENESIS_HASH, MIN_READABLE_VERSION, SCHEMA_VERSION, chainHash, readSchemaVersion } from './schema.js';
import type { ChainBase, ChainRow } from './schema.js';

/** The result of walking the hash chain. */
export interface ChainReport {
  ok: boolean;
  /** Facts whose hash was recomputed. */
  checked: number;
  /** The seq and hash (hex) the walk started from: 0 and zeros, or the last fact moved to the archive. */
  base: { seq: number; hash: string };
  /** The last fact's seq and hash (hex): what an archive's successor must start from. */
  head: { seq: number; hash: string };
  firstBadSeq?: number;
  problems: string[];
}

export interface IntegrityReport {
  ok: boolean;
  problems: string[];
  /** The lowest seq of a fact that failed a check, when one did. */
  firstBadSeq?: number;
}

const MAX_LISTED_PROBLEMS = 20;

/**
 * Recomputes every fact's hash from the chain base and compares it with the stored one. A fact
 * rewritten behind the triggers' back shows as the first bad seq; a stored hash rewritten to match
 * shows at the fact after it. Reports the first break and how many facts disagree.
 */
export function verifyChain(db: Database.Database, base: ChainBase): ChainReport {
  // A cluster read cache chain stores payloads elided: the chain hashes the payload as published.
  const restore = payloadReader(db);
  const rows = db.prepare(`SELECT ${CHAIN_COLUMNS}, hash FROM facts ORDER BY seq ASC`).iterate() as IterableIterator<ChainRow & { hash: unknown }>;
  let prevSeq = base.seq;
  let prev = base.hash;
  let checked = 0;
  let bad = 0;
  let first: { seq: number; reason: string } | undefined;
  for (const row of rows) {
    // Already archived and still here: a compaction died in its delete phase. The archive's own
    // chain covers them; they are not tampering (compactionState() reports them).
    if (base.seq > 0 && row.seq <= base.seq) continue;
    checked++;
    let reason: string | undefined;
    if (row.seq !== prevSeq + 1) reason = `chain broken: seq ${row.seq} follows seq ${prevSeq}`;
    else if (!Buffer.isBuffer(row.hash)) reason = 'hash is missing';
    else if (typeof row.payload !== 'string' || !chainHash(prev, restore === undefined ? row : { ...row, payload: restore(row.payload, row.owner, row.owner_name) }).equals(row.hash)) {
      reason = 'hash does not match the fact: it, or the hash stored with it, was changed after it was written';
    }
    if (reason !== undefined) {
      bad++;
      first ??= { seq: row.seq, reason };
    }
    prevSeq = row.seq;
    // Carry on from the stored hash, so one edited fact is reported once, not as every fact after it.
    prev = Buffer.isBuffer(row.hash) ? row.hash : GENESIS_HASH;
  }
  const report: ChainReport = {
    ok: first === undefined,
    checked,
    base: { seq: base.seq, hash: base.hash.toString('hex') },
    head: { seq: prevSeq, hash: prev.toString('hex') },
    problems: [],
  };
  if (first !== undefined) {
    report.firstBadSeq = first.seq;
    report.problems.push(`hash chain: first bad seq ${first.seq}: ${first.reason}`);
    if (bad > 1) report.problems.push(`hash chain: ${bad} facts disagree in total`);
  }
  return report;
}

/** `lastSeq` is the journal's (staged facts included); `archived` its meta.archived_through. */
export function integrity(db: Database.Database, file: string, lastSeq: () => number, archived: number): IntegrityReport {
  const problems: string[] = [];

  const sqliteCheck = db.pragma('integrity_check') as { integrity_check: string }[];
  for (const { integrity_check: line } of sqliteCheck.slice(0, MAX_LISTED_PROBLEMS)) {
    if (line !== 'ok') problems.push(`sqlite integrity_check: ${line}`);
  }

  try {
    const found = readSchemaVersion(db, file);
    // A file not yet migrated past what readers read (version 4 only adds disk_names) is not damaged.
    if (found > SCHEMA_VERSION || found < MIN_READABLE_VERSION) problems.push(`schema version is ${found}, this vmlockd expects ${SCHEMA_VERSION}`);
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
  }

  const triggers = new Set(
    (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'facts'`).all() as { name: string }[]).map(
      (r) => r.name,
    ),
  );
  for (const name of APPEND_ONLY_TRIGGERS) {
    if (!triggers.has(name)) problems.push(`append-only trigger ${name} is missing: facts can be rewritten`);
  }

  const facts = checkFacts(db, archived);
  problems.push(...facts.problems);

  const last = lastSeq();
  const snapshots = db.prepare(`SELECT seq, state FROM snapshots ORDER BY seq`).all() as { seq: number; state: unknown }[];
  for (const s of snapshots) {
    if (s.seq > last) problems.push(`snapshot seq ${s.seq} is beyond the last fact seq ${last}`);
    if (!parsesAsJson(s.state)) problems.push(`snapshot seq ${s.seq}: state is not valid JSON`);
  }

  const report: IntegrityReport = { ok: problems.length === 0, problems };
  if (facts.firstBadSeq !== undefined) report.firstBadSeq = facts.firstBadSeq;
  return report;
}

/** One streaming pass over every fact: seq gaps, payload JSON, `at` shape, kind and host present. */
function checkFacts(db: Database.Database, archived: number): { problems: string[]; firstBadSeq?: number } {
  const restore = payloadReader(db);
  const rows = db.prepare(`SELECT seq, at, host, kind, payload, owner, owner_name FROM facts ORDER BY seq ASC`).iterate() as IterableIterator<{
    seq: number;
    at: unknown;
    host: unknown;
    kind: unknown;
    payload: unknown;
    owner: string | null;
    owner_name: string | null;
  }>;
  let firstBad: { seq: number; reason: string } | undefined;
  let bad = 0;
  let prev: number | undefined;
  for (const row of rows) {
    const reasons: string[] = [];
    // Facts are never deleted, so a hole means rows were removed behind the triggers' back.
    if (prev !== undefined && row.seq !== prev + 1) reasons.push(`seq gap: follows seq ${prev}`);
    if (prev === undefined && row.seq < 1) reasons.push('seq is below 1');
    // Facts at or below archived_through still here: a compaction's delete phase was cut short.
    if (prev === undefined && archived > 0 && row.seq > archived + 1) reasons.push(`first fact after compaction should be seq ${archived + 1}`);
    if (!parsesAsJson(restore !== undefined && typeof row.payload === 'string' ? restoredOrNot(restore, row.payload, row.owner, row.owner_name) : row.payload)) reasons.push(`payload is not valid JSON (${preview(row.payload)})`);
    if (!isIsoMsUtc(row.at)) reasons.push(`at is not an ISO-8601 UTC time with ms (${preview(row.at)})`);
    if (typeof row.kind !== 'string' || row.kind === '') reasons.push(`kind is empty (${preview(row.kind)})`);
    if (typeof row.host !== 'string' || row.host === '') reasons.push(`host is empty (${preview(row.host)})`);
    prev = row.seq;
    if (reasons.length === 0) continue;
    bad++;
    firstBad ??= { seq: row.seq, reason: reasons.join('; ') };
  }
  if (firstBad === undefined) return { problems: [] };
  const problems = [`first bad seq ${firstBad.seq}: ${firstBad.reason}`];
  if (bad > 1) problems.push(`${bad} facts fail checks in total`);
  return { problems, firstBadSeq: firstBad.seq };
}

function parsesAsJson(text: unknown): boolean {
  if (typeof text !== 'string') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}


/** An elided payload restored; undefined (not JSON) for one that cannot be (no owner columns). */
function restoredOrNot(restore: (s: string, o: string | null, n: string | null) => string, s: string, owner: string | null, name: string | null): string | undefined {
  try {
    return restore(s, owner, name);
  } catch {
    return undefined;
  }
}
