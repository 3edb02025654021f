// journal.db or journal.db-wal removed or replaced under a running daemon (an operator "cleaning up"
// SQLite's side files, a backup tool restoring over them; review26b F6). SQLite keeps its files open:
// it goes on writing to the unlinked WAL (or database) through its handles, every move of staged
// facts succeeds, and what is at the paths the next start opens lacks those facts. Decision 0028:
//   - the staging file is reset only after a complete checkpoint (every WAL frame in journal.db,
//     synced), so a removed WAL never held the only durable copy of a fact the stage let go;
//   - after each move, journal.db and its WAL at their paths are compared, by inode, with the files
//     this process's connections opened (recorded when the stage opened); either displaced is logged
//     at error; journal.db itself displaced is written anew at its path from the open connection
//     (`VACUUM INTO` a temp file, synced; a WAL and shared-memory file at the paths removed, since
//     the next opener would replay the WAL's frames onto the copy; the copy renamed over journal.db,
//     a file found there kept beside it as journal.db.replaced-<ms>), at most once a minute, and the
//     stage is reset only right after such a copy.
// The connections stay on the displaced files until the daemon restarts (the log says so).
import type Database from 'better-sqlite3';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, statSync, unlinkSync } from 'node:fs';
import * as path from 'node:path';

type FileId = { dev: number; ino: number } | null;

function idAt(file: string): FileId {
  const s = statSync(file, { throwIfNoEntry: false });
  return s === undefined ? null : { dev: s.dev, ino: s.ino };
}

function why(name: string, was: FileId, now: FileId): string | null {
  if (was === null) return null;
  if (now === null) return `${name} was removed`;
  if (now.ino !== was.ino || now.dev !== was.dev) return `${name} was replaced by another file`;
  return null;
}

function unlinkIfThere(file: string): void {
  try {
    unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

function syncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface SqliteFilesOwner {
  /** journal.db's path. */
  readonly file: string;
  readonly db: Database.Database;
  nonBlocking<T>(fn: () => T): T;
}

/** `PRAGMA wal_checkpoint`'s answer: every frame of the WAL is in the database file (and synced). */
export function checkpointComplete(r: ReadonlyArray<{ busy: number; log: number; checkpointed: number }>): boolean {
  const x = r[0];
  return x !== undefined && x.busy === 0 && x.log >= 0 && x.checkpointed === x.log;
}

/** A rebuild of a displaced journal.db copies the whole database: not more often than this. */
export const REBUILD_MIN_MS = 60_000;

export class SqliteFiles {
  private readonly dbId: FileId;
  private walId: FileId;
  /** What was last reported (a changed situation is reported again). */
  private reported: string | null = null;
  private lastRebuild = -Infinity;
  /**
   * The copy this process last renamed to journal.db's path, and the newest seq it holds: never kept
   * aside as "a file found at the path", and not copied again while nothing new was committed
   * (review27b F2: a full copy kept aside every minute until the restart, idle daemons too).
   */
  private ownCopy: { id: FileId; head: number } | null = null;
  /** head()'s query, prepared on first use (only while journal.db is displaced). */
  private headQuery: Database.Statement | null = null;

  constructor(
    private readonly owner: SqliteFilesOwner,
    /** Error level: what happened and what the daemon did. */
    private readonly log: (msg: string) => void,
    private readonly now: () => number = Date.now,
  ) {
    // Recorded right after the connection opened and read the database (the WAL is open from then on,
    // and SQLite neither removes nor replaces it while a connection of this process is open).
    this.dbId = idAt(owner.file);
    this.walId = idAt(`${owner.file}-wal`);
  }

  /** Why journal.db or its WAL at their paths are not the files SQLite has open, or null. Two stat(2)s. */
  displaced(): { db: string | null; wal: string | null } | null {
    const db = why(this.owner.file, this.dbId, idAt(this.owner.file));
    const walNow = idAt(`${this.owner.file}-wal`);
    // No WAL at open (should not happen in WAL mode): the first one seen is taken for SQLite's.
    if (this.walId === null && db === null) this.walId = walNow;
    const wal = why(`${this.owner.file}-wal`, this.walId, walNow);
    return db === null && wal === null ? null : { db, wal };
  }

  /**
   * After each move into SQLite (two stat(2)s): 'ok' when journal.db at its path is the file SQLite
   * writes; 'rebuilt' when it was not and was just written anew from the open connection (it then
   * holds every fact SQLite has, synced); 'displaced' when it is not and was not rebuilt now (failed,
   * or rebuilt less than REBUILD_MIN_MS ago). A displaced WAL alone is reported, nothing more: the
   * stage is only reset after a complete checkpoint, which copies the still-open WAL into journal.db.
   */
  check(): 'ok' | 'rebuilt' | 'displaced' {
    const d = this.displaced();
    if (d === null) {
      this.reported = null;
      return 'ok';
    }
    if (d.db === null) {
      this.report(d, `its facts are copied into ${this.owner.file} by each checkpoint, and the staging file is reset only after a complete one; restart the daemon to reopen the journal at its path`);
      return 'ok';
    }
    const atPath = idAt(this.owner.file);
    const ours = this.ownCopy !== null && atPath !== null && this.ownCopy.id !== null && atPath.ino === this.ownCopy.id.ino && atPath.dev === this.ownCopy.id.dev;
    let head: number | null = null;
    try {
      head = this.head();
    } catch {
      // unknown: copy again when due
    }
    // Our own copy at the path, and nothing committed since it was written: it holds every fact.
    if (ours && head !== null && head === this.ownCopy!.head) return 'rebuilt';
    if (this.now() - this.lastRebuild < REBUILD_MIN_MS) return 'displaced';
    this.lastRebuild = this.now();
    try {
      const aside = this.rebuild(ours, head);
      this.log(`journal: ${d.db}${d.wal !== null ? ` and ${d.wal}` : ''} while the daemon ran (do not remove or replace the journal's files: SQLite still writes to the ones it opened); wrote ${this.owner.file} anew from the open connection with every fact SQLite holds${aside !== null ? ` (the file found at its path is kept as ${aside})` : ''}; restart the daemon to reopen the journal at its path (until then the staging file keeps every fact since the last copy, and the copy is repeated at most once a minute)`);
      this.reported = null;
      return 'rebuilt';
    } catch (e) {
      this.report(d, `cannot write ${this.owner.file} anew from the open connection (${(e as Error).message}); the staging file keeps every fact since its last reset`, true);
      return 'displaced';
    }
  }

  /**
   * A checkpoint on this (the main) connection, when the moves run here (no writer thread): true
   * when it was complete (every WAL frame copied into journal.db, which SQLite then syncs).
   */
  checkpoint(): boolean {
    try {
      const r = this.owner.nonBlocking(() => this.owner.db.pragma('wal_checkpoint(PASSIVE)')) as Array<{ busy: number; log: number; checkpointed: number }>;
      return checkpointComplete(r);
    } catch {
      return false;
    }
  }

  /** The newest seq SQLite holds (what a copy made now would hold). */
  private head(): number {
    const r = this.owner.nonBlocking(() => (this.headQuery ??= this.owner.db.prepare('SELECT max(seq) AS s FROM facts')).get()) as { s: number | null } | undefined;
    return r?.s ?? 0;
  }

  private report(d: { db: string | null; wal: string | null }, what: string, always = false): void {
    const key = `${d.db}|${d.wal}|${what}`;
    if (!always && this.reported === key) return;
    this.reported = key;
    const gone = [d.db, d.wal].filter((x) => x !== null).join(' and ');
    this.log(`journal: ${gone} while the daemon ran (do not remove or replace the journal's files: SQLite still writes to the ones it opened); ${what}`);
  }

  /** journal.db written anew at its path from the open connection; returns where a file found there was kept. */
  private rebuild(ours: boolean, head: number | null): string | null {
    const file = this.owner.file;
    const tmp = `${file}.rebuild`;
    unlinkIfThere(tmp);
    const quoted = tmp.replace(/'/g, "''");
    try {
      this.owner.nonBlocking(() => this.owner.db.exec(`VACUUM INTO '${quoted}'`));
      syncFile(tmp);
    } catch (e) {
      try {
        unlinkIfThere(tmp);
      } catch {
        // left for the next attempt's unlink
      }
      throw e;
    }
    let aside: string | null = null;
    // A file someone put at the path is kept; our own earlier copy is only replaced.
    if (!ours && idAt(file) !== null) {
      aside = `${file}.replaced-${this.now()}`;
      try {
        linkSync(file, aside);
      } catch {
        aside = null;
      }
    }
    // Frames in a WAL at the path would be replayed onto the copy by the next opener; the copy has them.
    unlinkIfThere(`${file}-wal`);
    unlinkIfThere(`${file}-shm`);
    renameSync(tmp, file);
    const dir = openSync(path.dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
    this.ownCopy = { id: idAt(file), head: head ?? -1 };
    return aside;
  }
}
