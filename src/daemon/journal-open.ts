// Opening the journal at a start without exiting over what another process is doing to it (invariant
// 10): a start is when the daemon re-takes (or adopts) every VM's lock, so an exit there drops them
// all. What a start needs SQLite's write lock for is rare once facts left staged stay staged when
// SQLite refuses them (src/journal/stage-keep.ts): migrating the schema after an upgrade. Another
// process holding that lock (a `sqlite3` shell left in a transaction, a backup tool, `vmlockd journal
// compact`) is waited for, with backoff, saying loudly what is waited for and where; so is another
// process holding the staging file for a moment (a `journal` CLI moving what a crashed daemon left).
import type { Journal } from '../journal/journal.js';
import { JournalError } from '../journal/journal.js';

type Level = 'info' | 'warning' | 'error';

export interface PatientOpen {
  /** The journal's path, for the log. */
  readonly file: string;
  log(level: Level, msg: string): void;
  /** Told each time the start waits (systemd: STATUS= and more start time). */
  waiting?(msg: string, nextMs: number): void;
  /** The staging file held by another process is waited for this long in all, then the start fails (default 60 s). */
  stageHeldMs?: number;
  /** Backoff bounds (default 250 ms doubling to 5 s). */
  firstMs?: number;
  maxMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** SQLite's write lock is another process's: SQLITE_BUSY, raw or as the journal's write error. */
export function journalBusy(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) return true;
  const errno = (e as { errno?: unknown })?.errno;
  return e instanceof JournalError && e.code === 'VMLOCKD_ERR_JOURNAL_WRITE' && typeof errno === 'string' && errno.startsWith('SQLITE_BUSY');
}

/** `open()` until it does not fail for another process's hold on the journal; any other error is thrown. */
export async function openJournalPatiently(open: () => Journal, o: PatientOpen): Promise<Journal> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const t0 = Date.now();
  let delay = o.firstMs ?? 250;
  const max = o.maxMs ?? 5_000;
  for (let tries = 1; ; tries++) {
    try {
      const journal = open();
      if (tries > 1) o.log('warning', `journal ${o.file} opened after ${tries} tries (${Math.round((Date.now() - t0) / 1000)} s): the start goes on`);
      return journal;
    } catch (e) {
      const busy = journalBusy(e);
      const staged = e instanceof JournalError && e.code === 'VMLOCKD_ERR_JOURNAL_FORKED' && /already open for staged appends/.test(e.message);
      if (!busy && !(staged && Date.now() - t0 < (o.stageHeldMs ?? 60_000))) throw e;
      const waited = Math.round((Date.now() - t0) / 1000);
      const who = busy
        ? `another process holds the write lock of the journal ${o.file} (a sqlite3 shell left in a transaction, a backup tool, \`vmlockd journal compact\`; \`fuser -v ${o.file}\` names it), and this start must write it (a schema migration)`
        : `another process holds the journal's staging file ${o.file}-stage (a \`vmlockd journal\` command moving what a crashed daemon left)`;
      const msg = `WAITING FOR THE JOURNAL: ${who}; waiting ${waited} s so far, next try in ${(delay / 1000).toFixed(1)} s. Nothing is answered meanwhile; locks kept by systemd's descriptor store or a take-over stay held. (${(e as Error).message})`;
      o.log('error', msg);
      o.waiting?.(msg, delay);
      await sleep(delay);
      delay = Math.min(delay * 2, max);
    }
  }
}
