// The host-changed statement of a published history: a journal (one state directory) that went on
// under another host id (an operator renamed the host and kept the state directory). Publication
// never publishes one host's facts as another's (VMLOCKD_ERR_PUBLISH_HOST), so the facts from the
// change on are not published; the daemon that stops there says so in its own directory:
//
//   <lockspace>/.journal/<its host-id>/<journal-id>.host-changed
//   {"t":"host-changed","v":1,"journal":J,"from":"<host id of fact seq-1>","to":"<host id of fact seq>","seq":S,"at":"<fact S's time>"}
//
// so `audit --cluster` knows that host `from`'s history of J ends at S-1 not because its daemon
// stopped holding anything but because the rest is unpublished (VMLOCKD_ERR_PUBLISH_HOST), and says
// "unknown" from `at` on instead of a false "held" (or a false "nobody"). Written whole (temporary +
// rename) by the daemon whose host id is the directory's name.
import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PUBLISHED_DIR, isJournalId } from './segment.js';

export interface HostChange {
  readonly t: 'host-changed';
  readonly v: 1;
  readonly journal: string;
  /** The host id the journal's facts carried before `seq` (whose published history stops there). */
  readonly from: string;
  /** The host id of fact `seq` on. */
  readonly to: string;
  readonly seq: number;
  /** Fact `seq`'s time: from then on, what the journal's daemon held is not published. */
  readonly at: string;
}

const SUFFIX = '.host-changed';
const MAX_BYTES = 64 * 1024;

export function hostChangedFileName(journalId: string): string {
  if (!isJournalId(journalId)) throw new TypeError(`journal id must be 16 lowercase hex chars, got ${JSON.stringify(journalId)}`);
  return `${journalId}${SUFFIX}`;
}

export function encodeHostChange(c: Omit<HostChange, 't' | 'v'>): string {
  const line: HostChange = { t: 'host-changed', v: 1, journal: c.journal, from: c.from, to: c.to, seq: c.seq, at: c.at };
  return JSON.stringify(line) + '\n';
}

/** A statement's text checked; undefined when it is not one (a reader then ignores it). */
export function decodeHostChange(text: string, journal: string): HostChange | undefined {
  let o: Partial<HostChange>;
  try {
    o = JSON.parse(text) as Partial<HostChange>;
  } catch {
    return undefined;
  }
  if (o === null || typeof o !== 'object' || o.t !== 'host-changed' || o.v !== 1 || o.journal !== journal) return undefined;
  if (typeof o.from !== 'string' || typeof o.to !== 'string' || o.from === o.to) return undefined;
  if (!Number.isSafeInteger(o.seq) || (o.seq as number) < 1 || typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return undefined;
  return o as HostChange;
}

/**
 * Every statement under `<lockspace>/.journal/`, keyed by journal id and the host id it leaves
 * (`${journal}\0${from}`). Unreadable or malformed files are skipped: they only ever add a note.
 */
export function readHostChanges(lockspace: string): Map<string, HostChange> {
  const out = new Map<string, HostChange>();
  const root = join(lockspace, PUBLISHED_DIR);
  let hosts: string[];
  try {
    hosts = readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  } catch {
    return out;
  }
  for (const h of hosts) {
    let names: string[];
    try {
      names = readdirSync(join(root, h)).filter((n) => n.endsWith(SUFFIX) && isJournalId(n.slice(0, -SUFFIX.length)));
    } catch {
      continue;
    }
    for (const n of names) {
      const c = readOne(join(root, h, n), n.slice(0, -SUFFIX.length));
      // Only the daemon whose directory it is writes there: a statement must name that host as a side.
      if (c !== undefined && (c.from === h || c.to === h)) out.set(`${c.journal}\u0000${c.from}`, c);
    }
  }
  return out;
}

function readOne(file: string, journal: string): HostChange | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_BYTES) return undefined;
    return decodeHostChange(readFileSync(fd, 'utf8'), journal);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
