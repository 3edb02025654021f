// Audit queries over facts. Filters combine freely, so the SQL is built from the filter's shape and
// each shape is prepared once and cached: the daemon answers the same few questions again and again.
import type Database from 'better-sqlite3';
import { JournalError } from './errors.js';
import { payloadReader } from './payload-elide.js';

export interface FactRow {
  kind: string;
  /** ISO-8601 UTC with milliseconds, e.g. 2026-11-25T10:00:00.000Z. */
  at: string;
  /** Resource id: the lock file path. */
  resource?: string | null;
  /** Canonical disk path. */
  disk?: string | null;
  /** VM uuid. */
  owner?: string | null;
  /** VM name. */
  ownerName?: string | null;
  payload: unknown;
}

/** Results come in time order: `at`, then `seq` for facts of the same millisecond. */
export interface StoredFact extends FactRow {
  seq: number;
  host: string;
}

export interface FactQuery {
  /** A VM uuid, or a VM name: then every uuid journaled under that name, so an operator may type either. */
  owner?: string;
  /** Facts journaled with exactly this VM name. */
  ownerName?: string;
  /**
   * The disk as its facts name it; several names (a disk journaled under a lease's lock file name as
   * well as its path, or under a hard link's) match any of them: each name is read through the disk
   * index on its own and the branches merged in the answer's order.
   */
  disk?: string | readonly string[];
  resource?: string;
  host?: string;
  /** An empty list matches nothing. */
  kinds?: string[];
  /** Inclusive lower bound on `at`; any time Date can parse. */
  since?: string;
  /** Inclusive upper bound on `at`; any time Date can parse. */
  until?: string;
  limit?: number;
  /**
   * Only facts with seq > afterSeq, in seq order (the rowid range drives): what was journaled since
   * the caller last looked (`audit --follow`), or the next page after the previous page's last seq.
   */
  afterSeq?: number;
  /**
   * A page of a paged read (the control API: `limit`, then `after_seq`), in seq order. A disk or VM
   * drives through its own index with seq > afterSeq as a filter (the rowid range from afterSeq
   * scanned every later fact for a rare disk: review25c F4, 0.2-0.35 s a page at 238k facts); with
   * no filter, the rowid range. Only kinds or times alone keep their (column, at) order on a first page.
   */
  page?: boolean;
  /** Only facts with seq <= untilSeq: with afterSeq, one window of new facts, read once. */
  untilSeq?: number;
  /** With `limit`: the newest `limit` matches instead of the oldest (still returned oldest first). */
  newest?: boolean;
}

export interface DbFactRow {
  seq: number;
  at: string;
  host: string;
  kind: string;
  resource: string | null;
  disk: string | null;
  owner: string | null;
  owner_name: string | null;
  payload: string;
}

export const FACT_COLUMNS = 'seq, at, host, kind, resource, disk, owner, owner_name, payload';

/** `restore`: the file stores payloads elided (a cluster read cache chain, payload-elide.ts). */
export function toStoredFact(row: DbFactRow, restore?: Restore): StoredFact {
  return {
    seq: row.seq,
    host: row.host,
    kind: row.kind,
    at: row.at,
    resource: row.resource,
    disk: row.disk,
    owner: row.owner,
    ownerName: row.owner_name,
    payload: JSON.parse(restore === undefined ? row.payload : restore(row.payload, row.owner, row.owner_name)) as unknown,
  };
}

type Restore = (stored: string, owner: string | null, name: string | null) => string;

/** A row read as an array in FACT_COLUMNS order (`raw` statements: no object per row from the driver). */
type RawFactRow = [number, string, string, string, string | null, string | null, string | null, string | null, string];

function fromRaw(r: RawFactRow): StoredFact {
  return { seq: r[0], host: r[2], kind: r[3], at: r[1], resource: r[4], disk: r[5], owner: r[6], ownerName: r[7], payload: JSON.parse(r[8]) as unknown };
}

/** fromRaw for a file whose payloads are stored elided. */
function restoredFrom(restore: Restore): (r: RawFactRow) => StoredFact {
  return (r) => ({ seq: r[0], host: r[2], kind: r[3], at: r[1], resource: r[4], disk: r[5], owner: r[6], ownerName: r[7], payload: JSON.parse(restore(r[8], r[6], r[7])) as unknown });
}

/** The split branches' rows (each newest first) merged newest first and cut at `limit`; others as they are. */
function merged(rows: RawFactRow[], limit: number | undefined): RawFactRow[] {
  if (limit === undefined) return rows;
  return rows.sort((a, b) => (a[1] < b[1] ? 1 : a[1] > b[1] ? -1 : b[0] - a[0])).slice(0, limit);
}

/** The exact shape `at` must have: lexicographic order on it is then time order. */
const ISO_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** True for an ISO-8601 UTC time with milliseconds that names a real instant (no Feb 30). */
export function isIsoMsUtc(at: unknown): at is string {
  if (typeof at !== 'string' || !ISO_MS_UTC.test(at)) return false;
  const t = Date.parse(at);
  return !Number.isNaN(t) && new Date(t).toISOString() === at;
}

function normaliseTime(name: 'since' | 'until', value: unknown): string {
  const t = typeof value === 'string' ? Date.parse(value) : NaN;
  if (Number.isNaN(t)) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `query.${name} must be an ISO-8601 time, got ${JSON.stringify(value)}`);
  }
  return new Date(t).toISOString();
}

function checkCount(name: 'limit' | 'afterSeq' | 'untilSeq', value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `query.${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function checkText(name: string, value: unknown): string {
  if (typeof value !== 'string') {
    throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `query.${name} must be a string, got ${JSON.stringify(value)}`);
  }
  return value;
}

const MAX_CACHED_SHAPES = 256;

/** A disk filter of several distinct names (checked), or undefined for none or one. */
function severalDisks(q: FactQuery): readonly string[] | undefined {
  if (!Array.isArray(q.disk)) return undefined;
  const names = [...new Set((q.disk as readonly unknown[]).map((d) => checkText('disk', d)))];
  if (names.length === 0) throw new JournalError('VMLOCKD_ERR_BAD_INPUT', 'query.disk must name at least one disk');
  return names.length === 1 ? undefined : names;
}

/** The order a query answers in: seq for `afterSeq` and pages, else (at, seq). */
function orderOf(q: FactQuery): 'seq' | 'at' {
  return q.page === true || q.afterSeq !== undefined ? 'seq' : 'at';
}

function compareIn(order: 'seq' | 'at', a: StoredFact, b: StoredFact): number {
  if (order === 'at' && a.at !== b.at) return a.at < b.at ? -1 : 1;
  return a.seq - b.seq;
}

/** Merges iterators that each run in `order` (newest first when `descending`) into one, lazily. */
function* mergeOrdered(iterators: Array<Iterator<StoredFact>>, order: 'seq' | 'at', descending: boolean): Generator<StoredFact> {
  try {
    const heads = iterators.map((it) => it.next());
    for (;;) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const h = heads[i]!;
        if (h.done === true) continue;
        if (best < 0) best = i;
        else {
          const c = compareIn(order, h.value, (heads[best] as IteratorYieldResult<StoredFact>).value);
          if (descending ? c > 0 : c < 0) best = i;
        }
      }
      if (best < 0) return;
      const value = (heads[best] as IteratorYieldResult<StoredFact>).value;
      heads[best] = iterators[best]!.next();
      yield value;
    }
  } finally {
    for (const it of iterators) it.return?.();
  }
}

type Driver = 'disk' | 'owner' | 'kinds' | 'time' | 'seq';

/** The index each driver reads: (column, at), so filter, time bound and order are one range scan. */
const DRIVER_INDEX: Record<Driver, string | undefined> = {
  disk: 'facts_disk_at',
  owner: 'facts_owner_at',
  kinds: 'facts_kind_at',
  time: 'facts_at',
  seq: undefined,
};

/**
 * An index only the cluster read cache builds (src/cli/cluster-cache.ts, CACHE_INDEXES): (kind, at,
 * seq) plus every column, over the rare kinds alone (a partial index, a few facts in a thousand). A
 * question driven by one of these kinds reads it without a table lookup per row. SQLite uses a partial
 * index only when the query's WHERE implies the index's, so the kind is spelled as a literal there.
 */
export const RARE_KINDS_INDEX = 'facts_rare_at';
export const RARE_KINDS: readonly string[] = ['LockRefused', 'LeaseLost', 'DaemonStarted', 'DaemonStopped'];

/** How to read: `descending` walks newest first (lazily, for projections that stop early). */
export interface ScanOptions {
  descending?: boolean;
}

export class FactQueries {
  private readonly cache = new Map<string, Database.Statement>();
  /** The file has RARE_KINDS_INDEX (a cluster read cache's chain). */
  private readonly rare: boolean;
  /** Rows to facts: payloads restored where the file stores them elided (payload-elide.ts). */
  private readonly fromRaw: (r: RawFactRow) => StoredFact;

  constructor(
    private readonly db: Database.Database,
    private readonly table: 'facts' | 'carried' = 'facts',
  ) {
    this.rare = table === 'facts' && db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?`).get(RARE_KINDS_INDEX) !== undefined;
    const restore = payloadReader(db);
    this.fromRaw = restore === undefined ? fromRaw : restoredFrom(restore);
  }

  run(q: FactQuery): StoredFact[] {
    const names = severalDisks(q);
    if (names !== undefined) return this.runSeveral(q, names);
    const built = this.build(q, q.newest === true && q.limit !== undefined);
    if (built === undefined) return [];
    const rows = merged(this.statement(built.sql).all(...built.params) as RawFactRow[], built.merge).map(this.fromRaw);
    return built.descending ? rows.reverse() : rows;
  }

  /** Matching facts one at a time, so a caller that has its answer stops reading. */
  *iterate(q: FactQuery, opts: ScanOptions = {}): IterableIterator<StoredFact> {
    const names = severalDisks(q);
    if (names !== undefined) {
      yield* mergeOrdered(names.map((disk) => this.iterate({ ...q, disk }, opts)), orderOf(q), opts.descending === true);
      return;
    }
    const built = this.build(q, opts.descending === true);
    if (built === undefined) return;
    // A cached statement serves one iteration at a time; a nested or interleaved scan gets its own.
    let stmt = this.statement(built.sql);
    if (stmt.busy) stmt = this.db.prepare(built.sql).raw(true);
    if (built.merge !== undefined) {
      for (const row of merged(stmt.all(...built.params) as RawFactRow[], built.merge)) yield this.fromRaw(row);
      return;
    }
    for (const row of stmt.iterate(...built.params) as IterableIterator<RawFactRow>) yield this.fromRaw(row);
  }

  /** SQLite's plan for a query, one line per step: lets a test pin which index answers it. */
  plan(q: FactQuery, opts: ScanOptions = {}): string {
    const names = severalDisks(q);
    if (names !== undefined) return names.map((disk) => this.plan({ ...q, disk }, opts)).join(' || ');
    const built = this.build(q, opts.descending === true || (q.newest === true && q.limit !== undefined));
    if (built === undefined) return 'none: an empty kinds list matches nothing';
    const rows = this.db.prepare(`EXPLAIN QUERY PLAN ${built.sql}`).all(...built.params) as { detail: string }[];
    return rows.map((r) => r.detail).join(' | ');
  }

  /**
   * Several disk names: each name's own answer (its newest or oldest `limit`), merged in the answer's
   * order and cut at `limit`. A fact has one disk, so no fact is in two branches.
   */
  private runSeveral(q: FactQuery, names: readonly string[]): StoredFact[] {
    const order = orderOf(q);
    const all = names.flatMap((disk) => this.run({ ...q, disk })).sort((a, b) => compareIn(order, a, b));
    if (q.limit === undefined) return all;
    return q.newest === true ? all.slice(-q.limit) : all.slice(0, q.limit);
  }

  /** The SQL and its parameters, or undefined when the query can match nothing. */
  private build(q: FactQuery, descending: boolean): { sql: string; params: unknown[]; descending: boolean; merge?: number } | undefined {
    if (q.kinds !== undefined) {
      if (!Array.isArray(q.kinds)) {
        throw new JournalError('VMLOCKD_ERR_BAD_INPUT', `query.kinds must be an array of strings, got ${JSON.stringify(q.kinds)}`);
      }
      if (q.kinds.length === 0) return undefined;
    }
    const time = q.since !== undefined || q.until !== undefined;
    // Without ANALYZE statistics SQLite guesses badly (kind over disk, a rowid SCAN for a time range:
    // 11 ms instead of 0.1 ms on 120k facts), so the most selective filter present drives through its
    // (column, at) index, named outright, and the other equalities get a unary + that keeps them off
    // theirs. afterSeq means "what came since I last looked": the rowid range is the narrowest.
    const narrow = q.disk !== undefined || q.owner !== undefined || q.ownerName !== undefined;
    const paged = q.page === true && (q.afterSeq !== undefined || narrow || (q.kinds === undefined && !time));
    const driver: Driver | undefined =
      paged ? (q.disk !== undefined ? 'disk' : q.owner !== undefined || q.ownerName !== undefined ? 'owner' : 'seq')
      : q.afterSeq !== undefined ? 'seq'
      : q.disk !== undefined ? 'disk'
      : q.owner !== undefined || q.ownerName !== undefined ? 'owner'
      : q.kinds !== undefined ? 'kinds'
      : time ? 'time'
      : undefined;
    const col = (d: Driver, column: string) => (driver === d ? column : `+${column}`);

    const where: string[] = [];
    const params: unknown[] = [];
    // A VM is its uuid; a name stands for every uuid journaled under it (the owners table), so
    // facts that carry only the uuid (a release by uuid) are found by name too.
    if (q.owner !== undefined) {
      where.push(`${col('owner', 'owner')} IN (SELECT ? UNION SELECT uuid FROM owners WHERE name = ?)`);
      const owner = checkText('owner', q.owner);
      params.push(owner, owner);
    }
    if (q.ownerName !== undefined) {
      where.push(`${col('owner', 'owner')} IN (SELECT uuid FROM owners WHERE name = ?) AND +owner_name = ?`);
      const name = checkText('ownerName', q.ownerName);
      params.push(name, name);
    }
    // No index on these: a disk has one resource, and a host's journal is mostly its own host's facts.
    const equals: [string, string, unknown][] = [
      ['disk', 'disk', Array.isArray(q.disk) ? (q.disk as readonly string[])[0] : q.disk],
      ['resource', 'resource', q.resource],
      ['host', 'host', q.host],
    ];
    for (const [name, column, value] of equals) {
      if (value === undefined) continue;
      where.push(`${name === 'disk' ? col('disk', column) : `+${column}`} = ?`);
      params.push(checkText(name, value));
    }
    // Kinds are spliced in per branch below when they drive a newest-first read with several kinds.
    const kinds = q.kinds?.map((k) => checkText('kinds[]', k));
    const split = driver === 'kinds' && kinds !== undefined && kinds.length > 1 && q.limit !== undefined && descending;
    // One rare kind driving: a literal, so the rare kinds' covering index answers (see RARE_KINDS_INDEX).
    const rareKind = (k: string) => this.rare && driver === 'kinds' && RARE_KINDS.includes(k);
    const rareOne = kinds !== undefined && kinds.length === 1 && rareKind(kinds[0]!);
    if (kinds !== undefined && !split) {
      if (rareOne) where.push(`kind = '${kinds[0]!}'`);
      else {
        where.push(`${col('kinds', 'kind')} IN (${kinds.map(() => '?').join(', ')})`);
        params.push(...kinds);
      }
    }
    // The time bounds stay plain: the driver's index is (column, at), so they narrow its range.
    const timeTerm = driver === 'seq' ? '+at' : 'at';
    if (q.since !== undefined) {
      where.push(`${timeTerm} >= ?`);
      params.push(normaliseTime('since', q.since));
    }
    if (q.until !== undefined) {
      where.push(`${timeTerm} <= ?`);
      params.push(normaliseTime('until', q.until));
    }
    if (q.afterSeq !== undefined) {
      where.push('seq > ?');
      params.push(checkCount('afterSeq', q.afterSeq, 0));
    }
    if (q.untilSeq !== undefined) {
      where.push('seq <= ?');
      params.push(checkCount('untilSeq', q.untilSeq, 0));
    }
    const limit = q.limit === undefined ? undefined : checkCount('limit', q.limit, 1);
    const dir = descending ? 'DESC' : 'ASC';
    const order = driver === 'seq' || paged ? ` ORDER BY seq ${dir}` : ` ORDER BY at ${dir}, seq ${dir}`;
    // The carried table has only its disk index; a name there would refer to the facts table's.
    const index = driver === undefined || this.table !== 'facts' ? undefined : DRIVER_INDEX[driver];
    const from = (ix: string | undefined) =>
      `SELECT ${FACT_COLUMNS} FROM ${this.table}${ix !== undefined ? ` INDEXED BY ${ix}` : driver === 'seq' ? ' NOT INDEXED' : ''}`;

    if (split) {
      // kind IN (a, b) ORDER BY at DESC would read every fact of both kinds and sort them; one
      // newest-first range per kind, each stopping at `limit`, then a merge of at most k * limit rows,
      // here (SQLite's ORDER BY over the UNION ALL built a temporary b-tree: half the question's time).
      const rest = where.length > 0 ? ` AND ${where.join(' AND ')}` : '';
      const branches = kinds!.map((k) => `SELECT * FROM (${rareKind(k) ? `${from(RARE_KINDS_INDEX)} WHERE kind = '${k}'` : `${from(index)} WHERE kind = ?`}${rest}${order} LIMIT ?)`);
      const all: unknown[] = [];
      for (const k of kinds!) all.push(...(rareKind(k) ? [] : [k]), ...params, limit);
      return { sql: branches.join(' UNION ALL '), params: all, descending, merge: limit! };
    }
    let sql = from(rareOne ? RARE_KINDS_INDEX : index);
    if (where.length > 0) sql += ` WHERE ${where.join(' AND ')}`;
    sql += order;
    if (limit !== undefined) {
      sql += ' LIMIT ?';
      params.push(limit);
    }
    return { sql, params, descending };
  }

  private statement(sql: string): Database.Statement {
    let stmt = this.cache.get(sql);
    if (stmt === undefined) {
      // Long `kinds` lists of many lengths would otherwise grow the cache without bound.
      if (this.cache.size >= MAX_CACHED_SHAPES) this.cache.delete(this.cache.keys().next().value!);
      // Rows as arrays: the driver builds an object per row much more slowly (half a question's CPU time).
      stmt = this.db.prepare(sql).raw(true);
      this.cache.set(sql, stmt);
    }
    return stmt;
  }
}
