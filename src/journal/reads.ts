// The SQL behind replay, snapshots, the chain head and the audit's small questions, each statement
// prepared once. The Journal facade adds what SQLite does not have yet (staged facts).
import type Database from 'better-sqlite3';
import { payloadReader } from './payload-elide.js';
import { FACT_COLUMNS, toStoredFact, type DbFactRow, type StoredFact } from './query.js';
import { DISK_NAMES_PENDING } from './schema.js';

export class JournalReads {
  private readonly stmt: {
    lastSeq: Database.Statement<[], { seq: number }>;
    readAfter: Database.Statement<[number], DbFactRow>;
    latestSnapshot: Database.Statement<[], { seq: number; state: string }>;
    head: Database.Statement<[], { seq: number; hash: Buffer | null }>;
    meta: Database.Statement<[string], { value: string }>;
  };
  private maxGenStmt?: Database.Statement;
  private knowsDiskStmt?: Database.Statement;
  private byKeyStmt?: Database.Statement;
  /** Payloads stored elided (a cluster read cache chain): restored from each row's owner columns. */
  private readonly restore: ReturnType<typeof payloadReader>;

  constructor(private readonly db: Database.Database) {
    this.stmt = {
      lastSeq: db.prepare(`SELECT coalesce(max(seq), 0) AS seq FROM facts`),
      readAfter: db.prepare(`SELECT ${FACT_COLUMNS} FROM facts WHERE seq > ? ORDER BY seq ASC`),
      latestSnapshot: db.prepare(`SELECT seq, state FROM snapshots ORDER BY seq DESC LIMIT 1`),
      head: db.prepare(`SELECT seq, hash FROM facts ORDER BY seq DESC LIMIT 1`),
      meta: db.prepare(`SELECT value FROM meta WHERE key = ?`),
    };
    this.restore = payloadReader(db);
  }

  /** The newest seq in this file (0 when it holds no fact). */
  lastSeq(): number {
    return this.stmt.lastSeq.get()!.seq;
  }

  // A generator, so the statement (and the connection's read) starts at the first next(), not when
  // a caller merely creates the iterator.
  *after(seq: number): IterableIterator<StoredFact> {
    // A statement serves one iteration at a time; a nested replay gets its own.
    const stmt = this.stmt.readAfter.busy
      ? this.db.prepare<[number], DbFactRow>(`SELECT ${FACT_COLUMNS} FROM facts WHERE seq > ? ORDER BY seq ASC`)
      : this.stmt.readAfter;
    for (const row of stmt.iterate(seq)) yield toStoredFact(row, this.restore);
  }

  latestSnapshot(): { seq: number; state: string } | undefined {
    return this.stmt.latestSnapshot.get();
  }

  /** The newest fact's seq and stored hash. */
  head(): { seq: number; hash: Buffer | null } | undefined {
    return this.stmt.head.get();
  }

  meta(key: string): string | undefined {
    return this.stmt.meta.get(key)?.value;
  }

  /** See Journal.maxGeneration. */
  maxGeneration(disk: string): number {
    this.maxGenStmt ??= this.db.prepare(
      `SELECT max(
         coalesce((SELECT max(CAST(json_extract(payload, '$.generation') AS INTEGER)) FROM facts WHERE disk = @disk AND kind IN ('LockAcquired', 'Reacquired')), 0),
         coalesce((SELECT gen FROM generation_floor WHERE disk = @disk), 0)) AS gen`,
    );
    const row = this.maxGenStmt.get({ disk }) as { gen: number | null } | undefined;
    return row?.gen ?? 0;
  }

  /** See Journal.grantLockspaces. */
  grantLockspaces(): string[] {
    const rows = this.db
      .prepare(
        `SELECT DISTINCT json_extract(payload, '$.lockspace') AS ls FROM facts WHERE kind IN ('LockAcquired', 'Reacquired')
         UNION SELECT DISTINCT json_extract(payload, '$.lockspace') FROM carried WHERE kind IN ('LockAcquired', 'Reacquired')`,
      )
      .all() as Array<{ ls: unknown }>;
    return rows.map((r) => r.ls).filter((l): l is string => typeof l === 'string' && l !== '');
  }

  knowsDisk(disk: string): boolean {
    // Prepared once: `--timeline --cluster` asks it of every chain per question.
    this.knowsDiskStmt ??= this.db.prepare(`SELECT 1 FROM facts WHERE disk = ? UNION ALL SELECT 1 FROM carried WHERE disk = ? LIMIT 1`);
    return this.knowsDiskStmt.get(disk, disk) !== undefined;
  }

  /**
   * Where the disk_names side table stands (schema.ts): undefined when the file has none (written
   * before version 4), else the highest seq whose facts may not be in it yet (0: complete).
   */
  private diskNamesPending(): number | undefined {
    const raw = this.meta(DISK_NAMES_PENDING);
    if (raw === undefined) return undefined;
    const n = Number(raw);
    // Unreadable: trust no part of the table's coverage, scan everything.
    return Number.isSafeInteger(n) && n >= 0 ? n : Number.MAX_SAFE_INTEGER;
  }

  /**
   * The disks under `keys` in disk_names, and those of the facts it does not cover yet (seq up to its
   * pending mark; every fact in a file without it) that `scan` matches: one read transaction, the
   * mark read first, so a backfill batch committed meanwhile is never missed.
   */
  private disksByKey(keys: readonly string[], scan: ((upTo: number, table: 'facts' | 'carried') => string[]) | undefined): string[] {
    return this.db.transaction(() => {
      const pending = this.diskNamesPending();
      const out = new Set<string>();
      if (pending !== undefined) {
        this.byKeyStmt ??= this.db.prepare(`SELECT disk FROM disk_names WHERE key = ?`).pluck();
        // A name whose facts compaction has moved out is kept in disk_names; like the scan, answer
        // only names a fact in this file (live or carried) still has.
        for (const k of keys) for (const d of this.byKeyStmt.all(k) as string[]) if (this.knowsDisk(d)) out.add(d);
      }
      const upTo = pending ?? Number.MAX_SAFE_INTEGER;
      if (upTo > 0 && scan !== undefined) for (const t of ['facts', 'carried'] as const) for (const d of scan(upTo, t)) out.add(d);
      return [...out].sort();
    })();
  }

  /**
   * The disks whose facts (live or carried) journaled one of these identities ("dev:ino:btime",
   * "dev:ino", "blk:rdev"): the names an alias (hard link, bind mount) of a held disk was journaled
   * under. An index probe in disk_names; the facts it does not cover yet (a journal migrated to
   * version 4 whose older facts the writer thread is still indexing, or a file without it) by a scan
   * of their payloads' text (an elided cluster-cache payload is not JSON to SQLite, and an identity
   * holds only digits, colons and "blk"); `scan` false: without that scan (the event loop's question).
   */
  disksWithInode(inodes: readonly string[], scan = true): string[] {
    const valid = inodes.filter((i) => /^[0-9a-z:]+$/.test(i));
    if (valid.length === 0) return [];
    return this.disksByKey(
      valid.map((i) => `id:${i}`),
      !scan ? undefined : (upTo, t) =>
        valid.flatMap(
          (inode) =>
            this.db
              .prepare(`SELECT DISTINCT disk FROM ${t} WHERE seq <= @upTo AND disk IS NOT NULL AND payload LIKE @like`)
              .pluck()
              .all({ upTo, like: `%"inode":"${inode}"%` }) as string[],
        ),
    );
  }

  /**
   * The journaled disks that are lock files named by one of these SHA-256 hashes (`<dir>/<hex>`: a
   * virtlockd-protocol lease on the disk whose path hashes to it), whatever the directory. An index
   * probe in disk_names, and (unless `scan` is false: the event loop's question) a scan of the disk
   * column of the facts it does not cover yet.
   */
  leaseDisks(hashes: readonly string[], scan = true): string[] {
    const valid = hashes.filter((h) => /^[0-9a-f]{64}$/.test(h));
    if (valid.length === 0) return [];
    return this.disksByKey(
      valid.map((h) => `lease:${h}`),
      !scan ? undefined : (upTo, t) =>
        valid.flatMap(
          (h) => this.db.prepare(`SELECT DISTINCT disk FROM ${t} WHERE seq <= ? AND substr(disk, -65) = ?`).pluck().all(upTo, `/${h}`) as string[],
        ),
    );
  }

  /**
   * Every lockspace directory a start of this journal's daemon named (DaemonStarted's `lockspace` and
   * the keys of its `lockspaces`), live or carried: read through the kind index (a few facts a start).
   */
  startLockspaces(): string[] {
    const kindIndex = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'facts_kind_at'`).get() !== undefined;
    const rows = this.db
      .prepare(`SELECT payload, owner, owner_name FROM facts${kindIndex ? ' INDEXED BY facts_kind_at' : ''} WHERE kind = 'DaemonStarted' UNION ALL SELECT payload, owner, owner_name FROM carried WHERE kind = 'DaemonStarted'`)
      .raw(true)
      .all() as Array<[string, string | null, string | null]>;
    const out = new Set<string>();
    for (const [payload, owner, name] of rows) {
      let p: { lockspace?: unknown; lockspaces?: unknown };
      try {
        p = JSON.parse(this.restore === undefined ? payload : this.restore(payload, owner, name)) as typeof p;
      } catch {
        continue;
      }
      if (typeof p?.lockspace === 'string' && p.lockspace !== '') out.add(p.lockspace);
      if (p?.lockspaces !== null && typeof p?.lockspaces === 'object') for (const k of Object.keys(p.lockspaces as object)) if (k !== '') out.add(k);
    }
    return [...out].sort();
  }

  /** The lock files (resource) the facts naming this disk used, live or carried: through the disk index. */
  diskResources(disk: string): string[] {
    return this.db
      .prepare(`SELECT DISTINCT resource FROM facts WHERE disk = ? AND resource IS NOT NULL UNION SELECT DISTINCT resource FROM carried WHERE disk = ? AND resource IS NOT NULL`)
      .pluck()
      .all(disk, disk) as string[];
  }

  knowsOwner(owner: string): boolean {
    return (
      this.db
        .prepare(`SELECT 1 FROM owners WHERE name = @o OR uuid = @o UNION ALL SELECT 1 FROM facts WHERE owner = @o UNION ALL SELECT 1 FROM carried WHERE owner = @o LIMIT 1`)
        .get({ o: owner }) !== undefined
    );
  }

  ownersNamed(name: string): string[] {
    return this.db.prepare(`SELECT uuid FROM owners WHERE name = ? ORDER BY uuid`).pluck().all(name) as string[];
  }

  firstSeq(): number {
    return (this.db.prepare(`SELECT coalesce(min(seq), 0) AS seq FROM facts`).get() as { seq: number }).seq;
  }

  oldestAt(): string | undefined {
    const row = this.db.prepare(`SELECT at FROM facts INDEXED BY facts_at ORDER BY at ASC LIMIT 1`).get() as { at: string } | undefined;
    return row?.at;
  }

  /** The lowest seq of a fact at or after `before` (null: none is). */
  firstSeqFrom(before: string): number | null {
    const row = this.db.prepare(`SELECT min(seq) AS seq FROM facts INDEXED BY facts_at WHERE at >= ?`).get(before) as { seq: number | null };
    return row.seq;
  }
}
