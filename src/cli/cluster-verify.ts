// `vmlockd journal verify --cluster`: every host's published chain read from the segments themselves
// (never from the read cache), and, run on a host, its published facts against its local journal.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { journalIdOf } from '../journal/journal-id.js';
import type { Journal } from '../journal/journal.js';
import { PUBLISHED_DIR, SegmentDecoder, listSegments, segmentFileName, type SegmentDecoderState, type SegmentFact, type SegmentFile } from '../journal/segment.js';
import { prunedFileName, readPruned, type PrunedRead } from '../journal/segment-pruned.js';
import { SUCCESSOR_GRACE_MS, readSuccessor, sealedRecently, successorFileName } from '../journal/segment-successor.js';

const READ_CHUNK = 4 * 1024 * 1024;

/** One problem, named by host, segment file and seq. */
export interface ChainProblem {
  readonly host: string;
  readonly journal: string;
  readonly segment: string;
  readonly seq?: number;
  readonly line?: number;
  readonly reason: string;
}

export interface ChainReport {
  readonly host: string;
  readonly journal: string;
  readonly segments: number;
  readonly facts: number;
  readonly firstSeq?: number;
  readonly lastSeq?: number;
  /** The hex hash of the last fact read. */
  readonly head?: string;
  /** The host's daemon removed the segments through this seq on purpose (retention: its pruned-through marker). */
  readonly prunedThrough?: number;
  readonly ok: boolean;
  readonly problems: ChainProblem[];
  readonly notes: string[];
}

/** A fact as the local comparison needs it. */
type Seen = (f: SegmentFact, segment: string) => void;

/** Reads one segment to its end with the one decoder; `onFact` sees each checked fact. */
function readSegment(dir: string, s: SegmentFile, expect: { host: string; journal: string; first: number; prev?: string }, onFact: (f: SegmentFact) => void): SegmentDecoder | string {
  const d = new SegmentDecoder(path.join(dir, s.name), expect);
  let fd: number;
  try {
    // Never blocks (a FIFO named like a segment) and never follows a link out of the lockspace.
    fd = fs.openSync(path.join(dir, s.name), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (e) {
    return `cannot open ${path.join(dir, s.name)}: ${(e as Error).message}`;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) return `${path.join(dir, s.name)} is not a regular file (a directory, FIFO, socket or device named like a segment)`;
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    let pos = 0;
    // To the end as read(2) sees it, never to a stat()ed size (cluster filesystems cache attributes).
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      pos += n;
      for (const l of d.push(buf.subarray(0, n))) if (l.t === 'fact') onFact(l);
      if (d.problem !== undefined) break;
    }
  } finally {
    fs.closeSync(fd);
  }
  return d;
}

/**
 * Checks one (host, journal) chain: each segment's lines, the seals, and that each segment continues
 * the one before. Its head: a chain starts at seq 1, or right after the owner's pruned-through marker
 * (`pruned`, read from the directory when not given: the first kept segment must chain from its hash),
 * or with a segment whose header says it starts after facts compacted before publication. Anything
 * else is a missing head, named with the seq range and the first segment present.
 */
export function verifyChain(lockspace: string, host: string, journal: string, segs: readonly SegmentFile[], seen?: Seen, pruned: PrunedRead | string | undefined = readPruned(path.join(lockspace, PUBLISHED_DIR, host), host, journal)): ChainReport {
  const dir = path.join(lockspace, PUBLISHED_DIR, host);
  const problems: ChainProblem[] = [];
  const notes: string[] = [];
  const markerName = prunedFileName(journal);
  if (typeof pruned === 'string') problems.push({ host, journal, segment: markerName, reason: `pruned-through marker unreadable: ${pruned}` });
  const marker = typeof pruned === 'string' ? undefined : pruned?.marker;
  let facts = 0;
  let firstSeq: number | undefined;
  let prev: SegmentDecoderState | undefined;
  let prevName: string | undefined;
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    const last = i === segs.length - 1;
    // A gap before a segment whose header says it starts after facts compacted before publication is
    // the writer's own statement, not damage (SegmentHeader.compacted): kept aside until the header is read.
    const gaps: ChainProblem[] = [];
    /** The chain's head may chain from the marker's hash (checked by the decoder). */
    let headPrev: string | undefined;
    if (i === 0) {
      const from = marker === undefined ? 1 : marker.through + 1;
      if (s.firstSeq > from) {
        gaps.push({
          host,
          journal,
          segment: s.name,
          seq: from,
          reason:
            marker === undefined
              ? `missing head: seq ${from} to ${s.firstSeq - 1} are in no segment and no pruned-through marker (${markerName}) says the host's daemon removed them; the first segment present is ${s.name}`
              : `missing segments: seq ${from} to ${s.firstSeq - 1} are in no segment; the host's daemon pruned only through seq ${marker.through} (${markerName}); the first segment present is ${s.name}`,
        });
      } else if (marker !== undefined && s.firstSeq === from) {
        headPrev = marker.hash;
        notes.push(`seq 1 to ${marker.through} were pruned by the host's daemon at ${marker.at} (retention, ${markerName}); the chain is checked from ${s.name}, whose header continues the marker's hash`);
      } else if (marker !== undefined) {
        notes.push(`${markerName} says seq 1 to ${marker.through} were pruned, but ${s.name} (from seq ${s.firstSeq}) is still there: a prune its daemon had not finished; checked as it is`);
      }
    }
    if (prev !== undefined) {
      // The previous segment must have been sealed and this one must start right after it.
      if (prev.seal === null) {
        problems.push({ host, journal, segment: prevName!, seq: prev.lastSeq + 1, reason: `truncated segment: it ends at seq ${prev.lastSeq} without its seal, and ${s.name} follows it` });
        if (s.firstSeq !== prev.lastSeq + 1) problems.push({ host, journal, segment: s.name, seq: prev.lastSeq + 1, reason: `gap: seq ${prev.lastSeq + 1} to ${s.firstSeq - 1} are in no segment` });
      } else if (s.firstSeq > prev.seal.last + 1) {
        gaps.push({ host, journal, segment: s.name, seq: prev.seal.last + 1, reason: `gap: seq ${prev.seal.last + 1} to ${s.firstSeq - 1} are in no segment` });
      } else if (s.firstSeq !== prev.seal.last + 1) {
        problems.push({
          host,
          journal,
          segment: s.name,
          seq: prev.seal.last + 1,
          reason: s.firstSeq > prev.seal.last + 1 ? `gap: seq ${prev.seal.last + 1} to ${s.firstSeq - 1} are in no segment` : `overlap: starts at seq ${s.firstSeq}, ${prevName} ends at seq ${prev.seal.last}`,
        });
      }
    }
    const chained = prev !== undefined && s.firstSeq === prev.lastSeq + 1;
    const d = readSegment(dir, s, { host, journal, first: s.firstSeq, ...(chained ? { prev: prev!.lastHash } : headPrev !== undefined ? { prev: headPrev } : {}) }, (f) => {
      facts++;
      firstSeq ??= f.seq;
      seen?.(f, s.name);
    });
    if (typeof d === 'string') {
      problems.push(...gaps, { host, journal, segment: s.name, seq: s.firstSeq, reason: d });
      return { host, journal, segments: segs.length, facts, ...(firstSeq !== undefined ? { firstSeq } : {}), lastSeq: prev?.lastSeq ?? s.firstSeq - 1, ok: false, problems, notes };
    }
    if (gaps.length > 0) {
      if (d.state.header?.compacted === true) notes.push(`${s.name}: seq ${gaps[0]!.seq} to ${s.firstSeq - 1} were compacted on the host before they were published (the segment says so and carries the holds still in force)`);
      else problems.push(...gaps);
    }
    if (d.problem !== undefined) {
      const p = d.problem;
      problems.push({ host, journal, segment: s.name, ...(p.seq !== undefined ? { seq: p.seq } : {}), line: p.line, reason: p.reason });
      return { host, journal, segments: segs.length, facts, ...(firstSeq !== undefined ? { firstSeq } : {}), lastSeq: d.state.lastSeq, ok: false, problems, notes };
    }
    const st = d.state;
    if (st.header === null) {
      // No complete header line: a writer creates a segment whole with its header, so this is damage.
      problems.push({ host, journal, segment: s.name, seq: s.firstSeq, reason: d.pending > 0 ? 'truncated segment: its header line is cut off' : 'empty segment: no header' });
      return { host, journal, segments: segs.length, facts, ...(firstSeq !== undefined ? { firstSeq } : {}), ok: false, problems, notes };
    }
    if (d.pending > 0) {
      if (last && st.seal === null) notes.push(`${s.name}: its last line (${d.pending} bytes after seq ${st.lastSeq}) is not finished: a writer mid-line, or a crash tail its daemon cuts off when it resumes; not corruption`);
      else problems.push({ host, journal, segment: s.name, seq: st.lastSeq + 1, reason: `truncated segment: a cut-off line (${d.pending} bytes) after seq ${st.lastSeq}` });
    }
    prev = st;
    prevName = s.name;
  }
  // A sealed newest segment. Its writer creates the successor right after the seal when its successor
  // statement (<journal>.successor, segment-successor.ts) covers that seal: then a missing successor
  // was removed, a problem. Without the statement (an older writer opened the next segment with its
  // next fact) the lockspace alone cannot tell removal from a rotation waiting for its next fact: a note.
  if (prev?.seal != null && prevName !== undefined) {
    const next = segmentFileName(segs[segs.length - 1]!.journalId, prev.seal.last + 1);
    // The statement first, then the successor: its writer creates the successor before the statement
    // (a resume onto an older writer's seal), so a statement read here means the successor was there.
    const said = readSuccessor(dir, journal);
    if (!fs.existsSync(path.join(dir, next))) {
      if (said !== undefined && prev.seal.last >= said.from && sealedRecently(path.join(dir, prevName))) {
        notes.push(`${prevName} was sealed at seq ${prev.seal.last} less than ${SUCCESSOR_GRACE_MS / 1000} s ago and ${next} is not listed yet: a rotation in progress (or not yet visible on this mount); verify again to tell it from a removal`);
      } else if (said !== undefined && prev.seal.last >= said.from) {
        problems.push({
          host,
          journal,
          segment: next,
          seq: prev.seal.last + 1,
          reason: `missing newest segment: ${prevName} is sealed at seq ${prev.seal.last} and ${next}, which its writer creates right after that seal (${successorFileName(journal)}: every seal from seq ${said.from} on), is not there: removed, with whatever facts it held (unless the daemon died between the two writes and never restarted)`,
        });
      } else {
        notes.push(`${prevName} is sealed at seq ${prev.seal.last} and no segment follows it (${next} missing): normal for a writer that opens it with the host's next fact (no ${successorFileName(journal)} covering that seal); if the host journaled facts after seq ${prev.seal.last}, the segments holding them were removed`);
      }
    }
  }
  const lastSeq = prev?.lastSeq;
  return {
    host,
    journal,
    segments: segs.length,
    facts,
    ...(firstSeq !== undefined ? { firstSeq } : {}),
    ...(lastSeq !== undefined ? { lastSeq } : {}),
    ...(prev !== undefined ? { head: prev.lastHash } : {}),
    ...(marker !== undefined ? { prunedThrough: marker.through } : {}),
    ok: problems.length === 0,
    problems,
    notes,
  };
}

/** Every host's chains under `<lockspace>/.journal/`. `local`: this host's journal, compared with its published chain. */
export function verifyCluster(lockspace: string, local?: { host: string; journal: Journal }): ChainReport[] {
  const root = path.join(lockspace, PUBLISHED_DIR);
  let hosts: string[];
  try {
    hosts = fs
      .readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') hosts = [];
    else throw e;
  }
  const localId = local === undefined ? undefined : journalIdOf(local.journal);
  const reports: ChainReport[] = [];
  for (const host of hosts) {
    const segs = listSegments(path.join(root, host));
    const byJournal = new Map<string, SegmentFile[]>();
    for (const s of segs) {
      const l = byJournal.get(s.journalId);
      if (l === undefined) byJournal.set(s.journalId, [s]);
      else l.push(s);
    }
    for (const [journal, list] of byJournal) {
      const mine = local !== undefined && host === local.host && journal === localId;
      const cmp = mine ? localComparer(local!.journal) : undefined;
      const r = verifyChain(lockspace, host, journal, list, cmp?.seen);
      if (cmp !== undefined) {
        const c = cmp.finish();
        r.problems.push(...c.problems.map((p) => ({ host, journal, ...p })));
        r.notes.push(...c.notes);
        reports.push({ ...r, ok: r.problems.length === 0 });
      } else reports.push(r);
    }
  }
  if (local !== undefined && localId !== undefined && !reports.some((r) => r.host === local.host && r.journal === localId)) {
    const last = local.journal.lastSeq();
    if (last > 0) {
      reports.push({ host: local.host, journal: localId, segments: 0, facts: 0, ok: true, problems: [], notes: [`this host's journal (${localId}, through seq ${last}) has published nothing yet`] });
    }
  }
  return reports;
}

/**
 * Compares published facts with the local journal as they stream by: every published seq the local
 * journal still has must carry the same hash (the hash covers every column, so equal hashes are equal
 * facts); a published seq beyond the local journal's end means the journal was replaced.
 */
function localComparer(j: Journal): { seen: Seen; finish(): { problems: Array<Omit<ChainProblem, 'host' | 'journal'>>; notes: string[] } } {
  const problems: Array<Omit<ChainProblem, 'host' | 'journal'>> = [];
  const first = j.firstSeq();
  const last = j.lastSeq();
  const stmt = j.db.prepare(`SELECT seq, hash FROM facts WHERE seq >= ? AND seq <= ? ORDER BY seq`);
  let page: Array<{ seq: number; hash: Buffer | null }> = [];
  let k = 0;
  let published = 0;
  let mismatches = 0;
  const PAGE = 10_000;
  const at = (seq: number): Buffer | null | undefined => {
    if (seq < first || seq > last) return undefined;
    if (k >= page.length || page[k]!.seq > seq || page[page.length - 1]!.seq < seq) {
      page = stmt.all(seq, seq + PAGE - 1) as typeof page;
      k = 0;
    }
    while (k < page.length && page[k]!.seq < seq) k++;
    return k < page.length && page[k]!.seq === seq ? page[k]!.hash : undefined;
  };
  return {
    seen(f, segment) {
      published = f.seq;
      if (f.seq > last) {
        if (mismatches++ === 0) problems.push({ segment, seq: f.seq, reason: `published seq ${f.seq} is beyond the local journal's last seq ${last}: the local journal was replaced or rolled back` });
        return;
      }
      const h = at(f.seq);
      if (h === undefined) return; // compacted away locally: the archive holds it
      if (h === null || h.toString('hex') !== f.hash) {
        if (mismatches++ === 0) problems.push({ segment, seq: f.seq, reason: `published fact seq ${f.seq} differs from the local journal's fact ${f.seq}` });
      }
    },
    finish() {
      const notes: string[] = [];
      if (mismatches > 1) problems.push({ segment: '-', reason: `${mismatches} published facts differ from the local journal in total` });
      if (published < last) notes.push(`published through seq ${published}; the local journal is at seq ${last} (${last - published} not yet published: publication lag)`);
      else notes.push(`matches the local journal (seq ${Math.max(first, 1)}..${last})`);
      return { problems, notes };
    },
  };
}
