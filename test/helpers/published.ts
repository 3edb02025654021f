// Reads a host's published history (src/journal/segment.ts) back for tests: every segment in order,
// each line checked by the one decoder, the segments checked to continue each other, and the facts
// compared with the host's local journal. Also a JSON-lines event stream, to make many facts fast.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import * as assert from 'uvu/assert';
import { Journal } from '../../src/journal/journal.js';
import { SegmentDecoder, listSegments, successorProblem, type SegmentDecoderState, type SegmentFact } from '../../src/journal/segment.js';
import { UUID1, startDaemon, tmpdir, until } from './daemon.js';

export interface Published {
  facts: SegmentFact[];
  segments: Array<{ name: string; bytes: number; sealed: boolean; count: number }>;
  /** Corruption, a gap or a duplicate between segments: each names its file. */
  problems: string[];
  /** Bytes of an unterminated last line (a write in progress, or cut short by a crash). */
  pendingTail: number;
  journalIds: string[];
}

/** Every segment of `dir` (one host), decoded and chained; journal ids in name order. */
export function readPublished(dir: string, host: string): Published {
  const out: Published = { facts: [], segments: [], problems: [], pendingTail: 0, journalIds: [] };
  if (!fs.existsSync(dir)) return out;
  let prev: SegmentDecoderState | undefined;
  let prevJournal: string | undefined;
  for (const s of listSegments(dir)) {
    if (s.journalId !== prevJournal) {
      out.journalIds.push(s.journalId);
      prev = undefined;
      prevJournal = s.journalId;
    }
    const file = path.join(dir, s.name);
    const bytes = fs.readFileSync(file);
    const d = new SegmentDecoder(file, { host, journal: s.journalId, first: s.firstSeq, ...(prev?.seal ? { prev: prev.seal.hash } : {}) });
    const lines = d.push(bytes);
    if (d.problem) out.problems.push(`${s.name}: line ${d.problem.line} seq ${d.problem.seq ?? '-'}: ${d.problem.reason}`);
    if (prev !== undefined && d.state.header !== null) {
      const why = successorProblem(prev, d.state.header);
      if (why !== undefined) out.problems.push(`${s.name}: ${why}`);
    }
    for (const l of lines) if (l.t === 'fact') out.facts.push(l);
    out.segments.push({ name: s.name, bytes: bytes.length, sealed: d.sealed, count: d.state.count });
    out.pendingTail = d.pending;
    prev = d.state;
  }
  return out;
}

/** Seq -> hash (hex) of every fact in a journal file, read-only (the daemon may be running). */
export function journalHashes(file: string): Map<number, string> {
  const j = Journal.open(file, { host: 'test-reader', readonly: true });
  try {
    const rows = j.db.prepare('SELECT seq, hash FROM facts ORDER BY seq').all() as Array<{ seq: number; hash: Buffer }>;
    return new Map(rows.map((r) => [r.seq, r.hash.toString('hex')]));
  } finally {
    j.close();
  }
}

/** Why the published facts are not exactly the journal's seqs from..to in order with the same hashes (undefined: they are). */
export function mismatch(facts: readonly SegmentFact[], local: Map<number, string>, from = 1): string | undefined {
  let expect = from;
  for (const f of facts) {
    if (f.seq !== expect) return `published seq ${f.seq} where ${expect} was expected (${f.seq < expect ? 'duplicate' : 'gap'})`;
    const h = local.get(f.seq);
    if (h !== undefined && h !== f.hash) return `published seq ${f.seq} has hash ${f.hash.slice(0, 12)}..., the journal ${h.slice(0, 12)}...`;
    expect++;
  }
  return undefined;
}

/** Streams JSON-lines events to the daemon's /v1/events; resolves with each line's status once all are answered. */
export function postEvents(socket: string, lines: readonly object[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const statuses: string[] = [];
    const req = http.request({ socketPath: socket, method: 'POST', path: '/v1/events' }, (res) => {
      let rest = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        rest += chunk;
        let i: number;
        while ((i = rest.indexOf('\n')) >= 0) {
          statuses.push((JSON.parse(rest.slice(0, i)) as { status: string }).status);
          rest = rest.slice(i + 1);
        }
      });
      res.on('end', () => resolve(statuses));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  });
}

export function vmUuid(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** `n` VMs started on their own image under `dir` (created), then (unless keep) stopped: 3 facts each. */
export function startStop(dir: string, from: number, n: number, keep = false): object[] {
  fs.mkdirSync(dir, { recursive: true });
  const lines: object[] = [];
  for (let i = from; i < from + n; i++) {
    const img = path.join(dir, `disk${i}.img`);
    if (!fs.existsSync(img)) fs.writeFileSync(img, '');
    lines.push({ type: 'started', vm: { uuid: vmUuid(i), name: `vm${i}` }, disks: [{ path: img }] });
  }
  if (!keep) for (let i = from; i < from + n; i++) lines.push({ type: 'stopped', vm: { uuid: vmUuid(i) } });
  return lines;
}

/** GET /v1/status over the socket, parsed. */
export function status(socket: string): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method: 'GET', path: '/v1/status' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as Record<string, any>);
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls `probe` (sync or async) until it returns something truthy; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The daemon's status once every journaled fact is published (the status says where it stood otherwise). */
export async function publishedAll(socket: string): Promise<Record<string, any>> {
  let last: Record<string, any> = {};
  try {
    return await waitFor('publication to catch up', async () => {
      last = await status(socket);
      return last.publication?.enabled === true && last.publication.publishedSeq === last.lastSeq ? last : undefined;
    });
  } catch (e) {
    throw new Error(`${(e as Error).message}: ${JSON.stringify({ lastSeq: last.lastSeq, publication: last.publication })}`);
  }
}

/**
 * A real daemon (host hv-a) that published 12 acquires with 4 KiB segments (so it rotated), then was
 * SIGKILLed once every fact was published; the lockspace, the host's segment directory and its
 * segment names (sorted) after that. `segmentBytes` 1 MiB: all in one unsealed segment.
 */
export async function publishedRotating(prefix: string, segmentBytes = 4096): Promise<{ root: string; lockspace: string; dir: string; segs: () => string[] }> {
  const root = tmpdir(prefix);
  const lockspace = path.join(root, 'lockspace');
  fs.mkdirSync(path.join(root, 'images'));
  const a = await startDaemon({ stateDir: path.join(root, 'state-a'), lockspace, hostId: 'hv-a', extra: ['--publish-segment-bytes', String(segmentBytes)] });
  try {
    for (let i = 0; i < 12; i++) {
      const disk = path.join(root, 'images', `d${i}.img`);
      fs.writeFileSync(disk, 'x');
      assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
    }
    const journal = path.join(a.opts.stateDir, 'journal.db');
    await until('published', () => {
      const want = [...journalHashes(journal).keys()].pop();
      const facts = readPublished(path.join(lockspace, '.journal', 'hv-a'), 'hv-a').facts;
      return want !== undefined && facts.length >= 12 && facts[facts.length - 1]!.seq === want;
    }, 30_000);
  } finally {
    await a.kill('SIGKILL');
  }
  const dir = path.join(lockspace, '.journal', 'hv-a');
  return { root, lockspace, dir, segs: () => fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort() };
}
