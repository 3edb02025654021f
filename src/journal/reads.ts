// The SQL behind replay, snapshots, the chain head and the audit's small questions, each statement
// prepared once. The Journal facade adds what SQLite does not have yet (staged facts).
import type Database from 'better-sqlite3';
import { payloadReader } from './payload-elide.js';
import { FACT_COLUMNS, toStoredFact, type DbFactRow, type StoredFact } from './query.js';

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
   * The disks whose facts (live or carried) journaled one of these identities ("dev:ino:btime",
   * "dev:ino", "blk:rdev"): the names an alias (hard link, bind mount) of a held disk was journaled
   * under. A scan of the payloads' text (an elided cluster-cache payload is not JSON to SQLite, and an
   * identity holds only digits, colons and "blk"); asked only for a path no fact names.
   */
  disksWithInode(inodes: readonly string[]): string[] {
    const out = new Set<string>();
    for (const inode of inodes) {
      if (!/^[0-9a-z:]+$/.test(inode)) continue;
      const like = `%"inode":"${inode}"%`;
      const rows = this.db
        .prepare(`SELECT DISTINCT disk FROM facts WHERE disk IS NOT NULL AND payload LIKE @like UNION SELECT DISTINCT disk FROM carried WHERE disk IS NOT NULL AND payload LIKE @like`)
        .pluck()
        .all({ like }) as string[];
      for (const d of rows) out.add(d);
    }
    return [...out].sort();
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
