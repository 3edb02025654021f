// A staged writer's open (the daemon's start) when SQLite refuses the facts a previous process left
// in the staging file: another process holds journal.db's write lock (a `sqlite3` shell left in a
// transaction, a backup tool, `vmlockd journal compact`) or the disk is full. Those facts are
// acknowledged and durable in the staging file already, so the start needs SQLite no more than a
// running daemon does: they stay there, pending, and move like any other staged facts once SQLite
// takes them. Exiting instead would drop every lock the start was about to re-take (invariant 10).
import { fdatasyncSync, ftruncateSync, writeSync } from 'node:fs';
import { JournalError } from './errors.js';
import { writeError } from './health.js';
import type { ChainedRow } from './rows.js';

/** Staged facts a start keeps in the staging file (SQLite refused them). */
export interface KeptStage {
  readonly rows: readonly ChainedRow[];
  /** Where the next append goes: just past the last whole append. */
  readonly size: number;
  /** Why SQLite did not take them (reported as the stage's SQLite failure until it does). */
  readonly refused: JournalError;
}

export interface KeepOwner {
  readonly file: string;
  insertStaged(rows: readonly ChainedRow[]): void;
  nonBlocking<T>(fn: () => T): T;
}

/**
 * Moves `rows` (the staged facts SQLite lacks) into SQLite without waiting for another process's
 * write lock; undefined when that worked. When SQLite refuses them for any reason but a journal's
 * own (a fork stays fatal), they are kept: whatever follows the last whole append in the file (an
 * append cut short by the crash: never acknowledged) is zeroed in place, or cut when it runs to the
 * end of the file, and synced, so the next append continues the file where its last good line ends.
 * `bytes` is the file as read, `text` the same decoded, `end` where the last whole append ends in `text`.
 */
export function keepIfRefused(owner: KeepOwner, rows: readonly ChainedRow[], bytes: Buffer, text: string, end: number, fd: number, stageFile: string): KeptStage | undefined {
  try {
    owner.nonBlocking(() => owner.insertStaged(rows));
    return undefined;
  } catch (cause) {
    if (cause instanceof JournalError) throw cause;
    const refused = writeError(`cannot move staged facts into SQLite ${owner.file} (they stay durable in ${stageFile})`, cause);
    // The kept lines are whole, checked lines (ASCII-escaped JSON): their UTF-8 length is their byte length.
    let size = Buffer.byteLength(text.slice(0, end), 'utf8');
    const zero = bytes.indexOf(0, size);
    const stop = zero === -1 ? bytes.length : zero;
    if (size > 0 && bytes[size - 1] !== 0x0a) {
      // A last line whose newline was not written: it is whole (its hash checked), so end it.
      writeSync(fd, '\n', size);
      size++;
    } else if (stop > size) {
      if (zero === -1) ftruncateSync(fd, size);
      else writeSync(fd, Buffer.alloc(stop - size), 0, stop - size, size);
    }
    fdatasyncSync(fd);
    return { rows, size, refused };
  }
}
