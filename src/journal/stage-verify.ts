// `journal verify`'s look at the staging file (read only, never changed): the facts a daemon
// acknowledged there must carry on from the database's last fact, chained, or no daemon can start
// from this journal. The check is the one a start's recovery makes (parseStage).
import { existsSync, readFileSync } from 'node:fs';
import { JournalError } from './errors.js';
import type { ChainBase } from './schema.js';
import { parseStage, stageFileOf } from './stage.js';

export type StageCheck =
  | { file: string; ok: true; count: number; firstSeq?: number; lastSeq?: number }
  | { file: string; ok: false; problem: string };

/**
 * The staged facts after the database's head, or the first line that does not follow it. A daemon
 * moving facts meanwhile changes the head under the read: a problem counts only when a second read,
 * with the head read again, finds the same one.
 */
export async function checkStage(journalFile: string, head: () => ChainBase): Promise<StageCheck | null> {
  const file = stageFileOf(journalFile);
  let previous: string | undefined;
  for (let attempt = 0; ; attempt++) {
    if (!existsSync(file)) return null;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      return { file, ok: false, problem: `staging file ${file} cannot be read: ${(e as Error).message}` };
    }
    try {
      const rows = parseStage(text, head(), file);
      if (rows.length === 0) return { file, ok: true, count: 0 };
      return { file, ok: true, count: rows.length, firstSeq: rows[0]!.seq, lastSeq: rows[rows.length - 1]!.seq };
    } catch (e) {
      if (!(e instanceof JournalError)) throw e;
      if (e.message === previous || attempt >= 4) return { file, ok: false, problem: e.message };
      previous = e.message;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
