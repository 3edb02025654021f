// `vmlockd audit` and `vmlockd journal compact|verify`. Both read the journal file directly,
// read-only for audit, so they work on a stopped daemon's (or a dead host's) state directory, and a
// long query never runs on a running daemon's event loop, where it would delay lock requests.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { VmlockdError } from '../engine/errors.js';
import { FACT_KINDS } from '../engine/facts.js';
import { fromRow } from '../engine/journal-port.js';
import { canonicalPath } from '../engine/resolve.js';
import { evolve, fromSnapshot, initialState, toSnapshot } from '../engine/state.js';
import { publishedThrough } from '../journal/compact.js';
import { Journal, JournalError, stageFileOf, type FactQuery, type StoredFact } from '../journal/journal.js';
import { checkStage } from '../journal/stage-verify.js';
import { loadConfig } from '../watchers/config.js';
import { call } from './client.js';
import { diskNames } from './disk-alias.js';
import { clockStepNote, coalescedCsvRows, coalescedText, csvTable, formatFacts, intervalState, formatHolders, formatTimeline, type Format } from './audit-format.js';
import { factStream, followLoop } from './follow.js';
import type { ChainReport } from './cluster-verify.js';
import { CONFLICT_KINDS, HOLD_RULES, coalescedOver, holdersAnswer, listsHoldings, namesOf, passRanges, queryFacts, stepsWithin, timeline, type AuditSources, type DiskNames } from './audit-query.js';

export const AUDIT_USAGE = `usage: vmlockd audit [question] [filters] [output] [journal]
  questions (default: every fact that matches the filters):
    --disk PATH --at TIME      who held the disk at that moment (owner, host, mode, generation, since)
    --disk PATH                the disk's history: acquires, re-takes, releases, refusals, losses
    --vm UUID|NAME             the VM's history across its disks and restarts
    --conflicts                every refusal and lost lease, with both parties
    --timeline --disk PATH     the disk's holders over time, as a chart
    --follow                   the newest facts, then each new one as it is journaled (Ctrl-C stops)
    --cluster                  any question above across every host's published history (a HOST column)
    --cluster --overlaps [--disk PATH]  every interval in which VMs on two hosts both held a disk in conflicting modes
  filters: --since TIME  --until TIME  --host ID  --kind KIND[,KIND]  --limit N (default 1000 newest; 0: all)
  output:  a table (default), --json, or --csv;  --width N for the timeline
  journal: --state-dir DIR | --journal FILE (read-only; the daemon may be stopped),
           else the running daemon's journal (found through --socket), else the configured one;
           --archive also reads the facts \`journal compact\` moved out (--archive-file FILE)
  cluster: --lockspace DIR (default: the configured file lockspace), --cache DIR (the local read cache;
           default: beside the journal in the state directory, else $XDG_CACHE_HOME/vmlockd)
  TIME: ISO-8601 (2026-11-25T10:00:00Z), now, or a duration back like --since=-2h (s, m, h, d)`;

export const JOURNAL_USAGE = `usage: vmlockd journal compact --before TIME [--archive FILE] [--dry-run] [--state-dir DIR | --journal FILE] [--json]
         move facts older than TIME into the archive (default <journal>-archive.db); a snapshot is written first
       vmlockd journal verify [--archive FILE] [--state-dir DIR | --journal FILE] [--json]
         check the hash chain and the journal's integrity (and the archive's, when there is one)
       vmlockd journal verify --cluster [--lockspace DIR] [--cache DIR] [--state-dir DIR | --journal FILE] [--json]
         check every host's published history (gaps, truncated segments, altered facts: host, segment, seq;
         with audit --cluster's read cache (--cache, default as for audit): facts it read that are gone)
         and, on a host with a journal, that its published facts match it`;

const DEFAULT_LIMIT = 1000;
const FOLLOW_BACKLOG = 10;
const FOLLOW_POLL_MS = 200;
const STATUS_TIMEOUT_MS = 2000;

function usage(message: string, text: string): VmlockdError {
  return new VmlockdError('VMLOCKD_ERR_USAGE', `${message}\n\n${text}`);
}

function bad(message: string): VmlockdError {
  return new VmlockdError('VMLOCKD_ERR_BAD_INPUT', message);
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** ISO-8601 (any offset), `now`, or `-<n><s|m|h|d>` before now, as ISO UTC with ms. */
export function parseTime(flag: string, value: string, now = Date.now()): string {
  if (value === 'now') return new Date(now).toISOString();
  const rel = /^-(\d+)([smhd])$/.exec(value);
  if (rel) return new Date(now - Number(rel[1]) * UNITS[rel[2]!]!).toISOString();
  // Date.parse accepts "1" or "March" too; an operator's time must at least look like a date. One
  // rule for a missing offset: UTC, for a date alone (as Date.parse does) and for a date and time
  // (which Date.parse would read as local time).
  const noOffset = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(value);
  const t = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(noOffset ? `${value}Z` : value) : NaN;
  if (Number.isNaN(t)) {
    throw bad(`--${flag} must be an ISO-8601 time such as 2026-11-25T10:00:00Z, "now", or a duration back such as --${flag}=-2h; got ${JSON.stringify(value)}`);
  }
  return new Date(t).toISOString();
}

function parseLimit(value: string | undefined, fallback: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw bad(`--limit must be an integer >= 0 (0: no limit), got ${JSON.stringify(value)}`);
  return n === 0 ? undefined : n;
}

/** `<dir>/<name>-archive.db` beside the journal. */
export function archivePathFor(journalFile: string): string {
  const ext = path.extname(journalFile);
  return path.join(path.dirname(journalFile), `${path.basename(journalFile, ext)}-archive${ext || '.db'}`);
}

interface JournalFlags {
  'state-dir'?: string | undefined;
  journal?: string | undefined;
  socket?: string | undefined;
  config?: string[] | undefined;
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** --journal, else --state-dir's journal, else the running daemon's (asked over its socket), else the configured one. */
export async function resolveJournalFile(v: JournalFlags): Promise<{ file: string; from: string }> {
  if (v.journal !== undefined) return { file: path.resolve(v.journal), from: '--journal' };
  if (v['state-dir'] !== undefined) {
    return { file: loadConfig({ files: [], flags: { stateDir: v['state-dir'] } }).config.journal, from: '--state-dir' };
  }
  const configured = loadConfig({ files: v.config ?? [], flags: {} }).config;
  const socket = v.socket ?? process.env.VMLOCKD_SOCKET ?? configured.socket;
  try {
    const r = await withTimeout(call(socket, 'GET', '/v1/status'), STATUS_TIMEOUT_MS);
    const journal = (r?.body as { journal?: unknown } | null | undefined)?.journal;
    if (r?.status === 200 && typeof journal === 'string' && journal !== '') return { file: path.resolve(journal), from: `the daemon at ${socket}` };
  } catch {
    // no daemon there: the configured journal is the one a stopped daemon wrote
  }
  return { file: configured.journal, from: 'the configuration' };
}

function openReadOnly(file: string, what: string, from: string): Journal {
  try {
    return Journal.open(file, { host: 'audit', readonly: true });
  } catch (e) {
    if (e instanceof JournalError && e.code === 'VMLOCKD_ERR_JOURNAL_MISSING') {
      throw bad(`no ${what} at ${file} (from ${from}); pass --state-dir DIR or --journal FILE`);
    }
    throw e;
  }
}

interface Opened extends AuditSources {
  readonly file: string;
  readonly archiveFile: string;
  close(): void;
}

/**
 * Say so when acknowledged facts are still only in the staging file (docs/decisions/0006): after a
 * crash they stay there until the daemon starts again. A running daemon moves them within
 * milliseconds, so look twice before warning.
 */
async function warnStaged(j: Journal): Promise<void> {
  const first = j.stagedTail();
  if (first === null) return;
  await new Promise((r) => setTimeout(r, 100));
  const t = j.stagedTail();
  if (t === null || t.firstSeq !== first.firstSeq) return;
  process.stderr.write(
    `vmlockd: warning: ${t.count} acknowledged fact(s) (seq ${t.firstSeq}-${t.lastSeq}) are in ${stageFileOf(j.file)} but not yet in the journal, so they are not shown; ` +
      'the daemon moves them when it next starts\n',
  );
}

/**
 * Is the daemon that writes this journal gone? Its pid is in the newest DaemonStarted and in the
 * state directory's `vmlockd.pid` when that sits beside the journal (the instance guard: emptied at a
 * clean stop, kept after a crash, rewritten by the next start). Gone when every pid known is a
 * process that no longer exists. Only read, never locked: probing the guard's flock could make a
 * daemon starting at that moment refuse. A pid reused by another process reads as alive, and audit
 * must run in the daemon's pid namespace (elsewhere its pid is not visible): both give the answer
 * without the crash caveat. Whether the last run ended cleanly is the journal's to say (holdersAnswer).
 */
function daemonGone(journalDir: string, live: Journal): { pid: number; checkedAt: string } | undefined {
  const pids = new Set<number>();
  const started = live.query({ kinds: ['DaemonStarted'], limit: 1, newest: true })[0]?.payload as { pid?: unknown } | undefined;
  if (typeof started?.pid === 'number' && Number.isSafeInteger(started.pid) && started.pid > 0) pids.add(started.pid);
  try {
    const text = fs.readFileSync(path.join(journalDir, 'vmlockd.pid'), 'utf8').trim();
    if (/^[1-9][0-9]{0,9}$/.test(text)) pids.add(Number(text));
  } catch {
    // no guard beside the journal (--journal elsewhere): the journal's own pid decides
  }
  if (pids.size === 0) return undefined;
  for (const pid of pids) {
    try {
      process.kill(pid, 0);
      return undefined; // alive, or not ours to signal (EPERM): a process with that pid exists
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') return undefined;
    }
  }
  return { pid: [...pids][0]!, checkedAt: new Date().toISOString() };
}

async function openSources(v: JournalFlags & { archive?: boolean | undefined; 'archive-file'?: string | undefined }): Promise<Opened> {
  const { file, from } = await resolveJournalFile(v);
  const live = openReadOnly(file, 'journal', from);
  await warnStaged(live);
  const archiveFile = v['archive-file'] !== undefined ? path.resolve(v['archive-file']) : archivePathFor(file);
  let archive: Journal | undefined;
  try {
    if (v.archive === true || v['archive-file'] !== undefined) archive = openReadOnly(archiveFile, 'journal archive', v['archive-file'] ? '--archive-file' : 'beside the journal');
  } catch (e) {
    live.close();
    throw e;
  }
  const gone = daemonGone(path.dirname(file), live);
  return {
    file,
    archiveFile,
    live,
    ...(archive ? { archive } : {}),
    ...(gone ? { daemonGone: gone } : {}),
    close() {
      archive?.close();
      live.close();
    },
  };
}

/** The compaction cut, when facts were moved out and the archive is not being read. */
function cutOf(src: Opened): { seq: number; at: string } | undefined {
  if (src.archive !== undefined) return undefined;
  const seq = src.live.archivedThrough();
  if (seq === 0) return undefined;
  // The last moved fact is carried (since 18.3); else the first fact left bounds the cut from above.
  const last = src.live.carried({ afterSeq: seq - 1, untilSeq: seq })[0];
  const at = last?.at ?? src.live.query({ afterSeq: seq, limit: 1 })[0]?.at;
  return at === undefined ? undefined : { seq, at };
}

function archiveHint(src: Opened): string {
  if (src.archive !== undefined) return '';
  if (src.live.archivedThrough() === 0) return '';
  return `; facts up to seq ${src.live.archivedThrough()} were moved to ${src.archiveFile}: add --archive to read them`;
}

/**
 * The disk as the journal names it: canonical (symlinks resolved here) or the path as typed, and every
 * other name of the same file (a hard link, a bind mount, a loop device over it); with the lock file
 * of a virtlockd-protocol lease on it (diskNames).
 */
function resolveDisk(src: Opened, raw: string): DiskNames {
  const found = diskNames(raw, src.archive ? [src.live, src.archive] : [src.live]);
  if (found !== undefined) {
    for (const n of found.notes) process.stderr.write(n);
    return { disk: found.disk, names: found.names };
  }
  const candidates = [...new Set([canonicalPath(raw), path.resolve(raw)])];
  const where = src.archive ? `${src.file} or its archive` : src.file;
  throw bad(`unknown disk ${JSON.stringify(raw)}: no fact in ${where} names ${candidates.join(' or ')}${archiveHint(src)}`);
}

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** A uuid in any case, with or without dashes, as acquire stores it: lower case, dashed. */
export function normaliseUuid(v: string): string {
  if (!UUID_RE.test(v)) return v;
  const h = v.replace(/-/g, '').toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * The VM as the journal names it: a uuid (normalised), or a name used by exactly one VM. A name two
 * VMs used at different times is refused with both uuids, so histories are never silently merged.
 */
function resolveVm(src: Opened, typed: string): string {
  const vm = normaliseUuid(typed);
  if (vm !== typed || UUID_RE.test(typed)) {
    if (src.live.knowsOwner(vm) || src.archive?.knowsOwner(vm) === true) return vm;
  } else {
    const uuids = [...new Set([...src.live.ownersNamed(vm), ...(src.archive?.ownersNamed(vm) ?? [])])].sort();
    if (uuids.length > 1) {
      throw bad(`VM name ${JSON.stringify(vm)} was used by ${uuids.length} VMs (${uuids.join(', ')}); ask for one with --vm UUID`);
    }
    if (uuids.length === 1) return uuids[0]!;
    if (src.live.knowsOwner(vm) || src.archive?.knowsOwner(vm) === true) return vm;
  }
  const where = src.archive ? `${src.file} or its archive` : src.file;
  throw bad(`unknown VM ${JSON.stringify(typed)}: no fact in ${where} names it by uuid or name${archiveHint(src)}`);
}

function parseKinds(value: string): string[] {
  const kinds = value.split(',').map((k) => k.trim()).filter((k) => k !== '');
  const known = FACT_KINDS as readonly string[];
  const unknown = kinds.filter((k) => !known.includes(k));
  if (kinds.length === 0 || unknown.length > 0) {
    throw bad(`--kind must name fact kinds from ${known.join(', ')}; got ${JSON.stringify(value)}`);
  }
  return kinds;
}

const AUDIT_OPTIONS = {
  vm: { type: 'string' },
  disk: { type: 'string' },
  at: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  kind: { type: 'string' },
  host: { type: 'string' },
  limit: { type: 'string' },
  conflicts: { type: 'boolean' },
  timeline: { type: 'boolean' },
  follow: { type: 'boolean', short: 'f' },
  json: { type: 'boolean' },
  csv: { type: 'boolean' },
  width: { type: 'string' },
  archive: { type: 'boolean' },
  'archive-file': { type: 'string' },
  cluster: { type: 'boolean' },
  overlaps: { type: 'boolean' },
  lockspace: { type: 'string' },
  cache: { type: 'string' },
  'state-dir': { type: 'string' },
  journal: { type: 'string' },
  socket: { type: 'string' },
  config: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const;

/** parseArgs' own messages (unknown option, missing value) as a usage error: exit 2, with the usage. */
function parse<T>(run: () => T, text: string): T {
  try {
    return run();
  } catch (e) {
    throw usage((e as Error).message, text);
  }
}

export async function runAudit(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(() => parseArgs({ args: argv, options: AUDIT_OPTIONS, allowPositionals: true, strict: true }), AUDIT_USAGE);
  if (v.help === true) {
    process.stdout.write(AUDIT_USAGE + '\n');
    return 0;
  }
  if (positionals.length > 0) throw usage(`audit takes no positional arguments, got ${JSON.stringify(positionals)}`, AUDIT_USAGE);
  if (v.json === true && v.csv === true) throw usage('choose one of --json and --csv', AUDIT_USAGE);
  const format: Format = v.json === true ? 'json' : v.csv === true ? 'csv' : 'table';
  if (v.at !== undefined && v.disk === undefined) throw usage('--at needs --disk PATH: it answers who held that disk at that moment', AUDIT_USAGE);
  if (v.timeline === true && v.disk === undefined) throw usage('--timeline needs --disk PATH', AUDIT_USAGE);
  if (v.at !== undefined && v.timeline === true) throw usage('choose one of --at and --timeline', AUDIT_USAGE);
  if (v.follow === true && (v.at !== undefined || v.timeline === true)) throw usage('--follow streams facts; it cannot follow --at or --timeline', AUDIT_USAGE);
  if (v.conflicts === true && v.kind !== undefined) throw usage('--conflicts already chooses the kinds (LockRefused, LeaseLost); leave out --kind', AUDIT_USAGE);
  if (v.cluster !== true) {
    for (const flag of ['overlaps', 'lockspace', 'cache'] as const) if (v[flag] !== undefined) throw usage(`--${flag} belongs to --cluster`, AUDIT_USAGE);
  } else {
    for (const flag of ['archive', 'archive-file', 'journal', 'socket'] as const) {
      if (v[flag] !== undefined) throw usage(`--${flag} reads one host's journal; --cluster reads every host's published history (--lockspace DIR, --cache DIR)`, AUDIT_USAGE);
    }
    if (v.overlaps === true && (v.at !== undefined || v.timeline === true || v.follow === true || v.vm !== undefined || v.conflicts === true || v.kind !== undefined)) {
      throw usage('--overlaps is a question of its own: combine it only with --disk, --since and --until', AUDIT_USAGE);
    }
  }

  const now = Date.now();
  const at = v.at === undefined ? undefined : parseTime('at', v.at, now);
  const since = v.since === undefined ? undefined : parseTime('since', v.since, now);
  const until = v.until === undefined ? undefined : parseTime('until', v.until, now);
  if (since !== undefined && until !== undefined && since > until) throw bad(`--since ${since} is after --until ${until}`);
  const kinds = v.conflicts === true ? [...CONFLICT_KINDS] : v.kind !== undefined ? parseKinds(v.kind) : undefined;
  const limit = parseLimit(v.limit, v.follow === true ? FOLLOW_BACKLOG : DEFAULT_LIMIT);
  const width = v.width === undefined ? (process.stdout.columns ?? 100) : Number(v.width);
  if (!Number.isInteger(width) || width < 30) throw bad(`--width must be an integer >= 30, got ${JSON.stringify(v.width)}`);

  if (v.cluster === true) {
    // Loaded only for --cluster: the segment reader, the read cache and the lockspace's host files.
    const { runClusterAudit } = await import('./cluster-audit.js');
    return runClusterAudit(v, {
      format, disk: v.disk, vm: v.vm, at, atNow: v.at === 'now', since, until, host: v.host, kinds, limit, width,
      timeline: v.timeline === true, overlaps: v.overlaps === true, follow: v.follow === true, now,
    });
  }
  const src = await openSources(v);
  try {
    const disk = v.disk === undefined ? undefined : resolveDisk(src, v.disk);
    const vm = v.vm === undefined ? undefined : resolveVm(src, v.vm);

    // Without --archive, say when the question reaches back before the compaction cut.
    const cut = cutOf(src);
    const reachesBack = (t: string | undefined) => cut !== undefined && (t === undefined || t < cut.at);
    const beforeCut = (what: string) =>
      process.stderr.write(
        `vmlockd: note: ${what} reaches before the compaction cut (facts through seq ${cut!.seq}, up to ${cut!.at}, were moved to ${src.archiveFile}); ` +
          'this answer uses only the holds carried past the cut: add --archive for the history before it\n',
      );
    if (at !== undefined) {
      if (reachesBack(at)) beforeCut(`--at ${at}`);
      // `now` is the present: inside a step's window, the current pass (decision 0029).
      process.stdout.write(formatHolders(holdersAnswer(src, disk!, at, { now: v.at === 'now' }), format));
      return 0;
    }
    if (v.timeline === true) {
      if (reachesBack(since)) beforeCut('the timeline');
      const carried = src.archive === undefined ? src.live.carried({ disk: namesOf(disk!), limit: 1 })[0] : undefined;
      const first = carried ?? queryFacts(src, { disk: namesOf(disk!), limit: 1 })[0];
      const from = since ?? first?.at ?? new Date(now).toISOString();
      const to = until ?? new Date(now).toISOString();
      const t = timeline(src, disk!, from, to);
      for (const f of stepsWithin(src, from, to)) process.stderr.write(clockStepNote(f));
      process.stdout.write(format === 'table' ? formatTimeline(t, width) : format === 'json' ? JSON.stringify(t, null, 2) + '\n' : timelineCsv(t));
      return 0;
    }
    const q: FactQuery = {
      ...(disk !== undefined ? { disk: namesOf(disk) } : {}),
      ...(vm !== undefined ? { owner: vm } : {}),
      ...(v.host !== undefined ? { host: v.host } : {}),
      ...(kinds !== undefined ? { kinds } : {}),
      ...(since !== undefined ? { since } : {}),
      ...(until !== undefined ? { until } : {}),
    };
    if (v.follow !== true && reachesBack(since)) beforeCut('the question');
    const facts = withNames(src, withPasses(src, q, queryFacts(src, { ...q, ...(limit !== undefined ? { limit, newest: true } : {}) }), limit));
    // Several names: the DISK column says which name each fact used.
    const opts = { oneDisk: disk !== undefined && disk.names.length === 1 };
    if (v.follow === true) return await follow(src.live, q, facts, format, opts);
    if (facts.length > 0) for (const f of stepsWithin(src, since ?? facts[0]!.at, until ?? facts[facts.length - 1]!.at)) process.stderr.write(clockStepNote(f));
    // A disk's history whose loss / re-take facts were coalesced on a full disk (aud31): the list lacks them.
    // So too a VM's, the conflicts', any list that would hold them (review31a MEDIUM 5: --disk only).
    if (listsHoldings(kinds)) {
      for (const c of coalescedOver(src, disk === undefined ? undefined : namesOf(disk), since, until, vm)) process.stderr.write(`vmlockd: note: ${coalescedText(c, 'this host', 'they are not in this list')}\n`);
    }
    process.stdout.write(formatFacts(facts, format, opts));
    if (limit !== undefined && facts.length === limit) {
      process.stderr.write(`vmlockd: showing the newest ${limit} matching facts; --limit 0 shows all, --since/--until narrow the window\n`);
    }
    return 0;
  } finally {
    src.close();
  }
}

/**
 * `--until` inside a window the clock showed twice: the facts of the pass after the step whose clock
 * reading is in [since, until] are labelled later than `until`; they belong to the answer too, in
 * journal order (decision 0029).
 */
function withPasses(src: AuditSources, q: FactQuery, facts: StoredFact[], limit: number | undefined): StoredFact[] {
  if (q.until === undefined) return facts;
  const ranges = passRanges(src, q.since, q.until);
  if (ranges.length === 0) return facts;
  const { since: _s, until: _u, ...rest } = q;
  const extra = ranges.flatMap((r) => queryFacts(src, { ...rest, afterSeq: r.afterSeq, untilSeq: r.untilSeq }));
  const all = [...facts, ...extra].sort((a, b) => a.seq - b.seq).filter((f, i, a) => i === 0 || a[i - 1]!.seq !== f.seq);
  return limit === undefined ? all : all.slice(-limit);
}

/** Facts journaled with the uuid alone (a release by uuid) get the VM's name from the owners table. */
function withNames(src: AuditSources, facts: StoredFact[]): StoredFact[] {
  const cache = new Map<string, string | undefined>();
  const nameOf = (uuid: string): string | undefined => {
    if (!cache.has(uuid)) {
      const q = (j: Journal) => j.db.prepare(`SELECT name FROM owners WHERE uuid = ? ORDER BY name LIMIT 1`).pluck().get(uuid) as string | undefined;
      cache.set(uuid, q(src.live) ?? (src.archive ? q(src.archive) : undefined));
    }
    return cache.get(uuid);
  };
  return facts.map((f) => {
    if (f.owner == null || f.ownerName != null) return f;
    const name = nameOf(f.owner);
    return name === undefined ? f : { ...f, ownerName: name };
  });
}

/** The timeline CSV: an interval per row, `state` incomplete where a coalesced range meets it, and a row per coalesced range (review31a HIGH 2). */
function timelineCsv(t: ReturnType<typeof timeline>): string {
  return csvTable(['disk', 'vm_uuid', 'vm_name', 'mode', 'from', 'to', 'end', 'crash_before', 'generation', 'state', 'note'], [
    ...t.intervals.map((i) => [t.disk, i.owner.uuid, i.owner.name ?? '', i.mode, i.from, i.to ?? '', i.end ?? '', i.crashBefore ?? '', i.generation ?? '', intervalState(i, t.incomplete, t.to), '']),
    ...coalescedCsvRows(t.disk, t.incomplete),
  ]);
}

/**
 * Prints the backlog, then polls the journal for facts past the last seq seen. A read-only WAL reader
 * sees each commit of the running daemon at its next read, so polling by seq misses nothing and
 * takes no lock the daemon waits on.
 */
async function follow(
  live: Journal,
  q: FactQuery,
  backlog: readonly StoredFact[],
  format: Format,
  opts: { oneDisk: boolean },
): Promise<number> {
  const stream = factStream(format, opts);
  stream.start();
  stream.print(backlog);
  let last = live.lastSeq();
  await followLoop(() => {
    const top = live.lastSeq();
    if (top <= last) return;
    stream.print(live.query({ ...q, afterSeq: last, untilSeq: top }));
    last = top;
  }, FOLLOW_POLL_MS);
  return 0;
}

const JOURNAL_OPTIONS = {
  before: { type: 'string' },
  archive: { type: 'string' },
  'dry-run': { type: 'boolean' },
  cluster: { type: 'boolean' },
  lockspace: { type: 'string' },
  cache: { type: 'string' },
  'state-dir': { type: 'string' },
  journal: { type: 'string' },
  socket: { type: 'string' },
  config: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `vmlockd journal compact|verify` (`vmlockd integrity` is `journal verify`). */
export async function runJournal(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    process.stdout.write(JOURNAL_USAGE + '\n');
    return sub === undefined ? 2 : 0;
  }
  const { values: v, positionals } = parse(() => parseArgs({ args: rest, options: JOURNAL_OPTIONS, allowPositionals: true, strict: true }), JOURNAL_USAGE);
  if (v.help === true) {
    process.stdout.write(JOURNAL_USAGE + '\n');
    return 0;
  }
  if (positionals.length > 0) throw usage(`journal ${sub} takes no positional arguments, got ${JSON.stringify(positionals)}`, JOURNAL_USAGE);
  switch (sub) {
    case 'verify':
      if (v.before !== undefined || v['dry-run'] === true) throw usage('--before and --dry-run belong to journal compact', JOURNAL_USAGE);
      if (v.cluster === true) {
        if (v.archive !== undefined) throw usage('--archive belongs to the local journal; verify --cluster reads the published segments', JOURNAL_USAGE);
        return verifyClusterCommand(v);
      }
      if (v.lockspace !== undefined || v.cache !== undefined) throw usage(`--${v.lockspace !== undefined ? 'lockspace' : 'cache'} belongs to verify --cluster`, JOURNAL_USAGE);
      return verify(v);
    case 'compact':
      if (v.cluster === true || v.lockspace !== undefined || v.cache !== undefined) throw usage('--cluster, --lockspace and --cache belong to journal verify', JOURNAL_USAGE);
      return compactCommand(v);
    default:
      throw usage(`journal needs "compact" or "verify", got ${JSON.stringify(sub)}`, JOURNAL_USAGE);
  }
}

interface JournalValues extends JournalFlags {
  cluster?: boolean | undefined;
  lockspace?: string | undefined;
  cache?: string | undefined;
  before?: string | undefined;
  archive?: string | undefined;
  'dry-run'?: boolean | undefined;
  json?: boolean | undefined;
}

interface FileReport {
  file: string;
  ok: boolean;
  /** Not problems: a compaction cut short, which the next `journal compact` (or daemon start) finishes. */
  notes?: string[];
  facts: number;
  firstSeq: number;
  lastSeq: number;
  problems: string[];
  firstBadSeq?: number;
}

function checkOne(j: Journal): FileReport {
  const integrity = j.integrity();
  const chain = j.verifyChain();
  const problems = [...integrity.problems, ...chain.problems];
  const bads = [integrity.firstBadSeq, chain.firstBadSeq].filter((s): s is number => s !== undefined);
  const report: FileReport = { file: j.file, ok: problems.length === 0, facts: chain.checked, firstSeq: j.firstSeq(), lastSeq: j.lastSeq(), problems };
  if (bads.length > 0) report.firstBadSeq = Math.min(...bads);
  return report;
}

async function verify(v: JournalValues): Promise<number> {
  const { file, from } = await resolveJournalFile(v);
  const live = openReadOnly(file, 'journal', from);
  await warnStaged(live);
  const reports: Array<FileReport & { role: 'journal' | 'archive' }> = [];
  try {
    reports.push({ role: 'journal', ...checkOne(live) });
    const pending = live.compactionState();
    const notes: string[] = [];
    if (pending.undeleted > 0) {
      notes.push(`${pending.undeleted} fact(s) at or below seq ${live.archivedThrough()} are already in the archive and still here: a compaction was cut short in its delete phase; the next \`vmlockd journal compact\` or daemon start removes them`);
    } else if (pending.through !== undefined) {
      notes.push(`a compaction through seq ${pending.through} into ${pending.archive ?? 'its archive'} was cut short while copying; the facts are all still here (readers give each seq once); run \`vmlockd journal compact\` again to finish it`);
    }
    // The staging file must carry on from the database's last fact, or no daemon can start from it.
    const staged = await checkStage(live.file, () => live.chainHead());
    if (staged?.ok === false) {
      reports[0]!.problems.push(`${staged.problem} (the daemon refuses to start from this journal)`);
      reports[0]!.ok = false;
    } else if (staged !== null && staged.count > 0) {
      notes.push(`${staged.count} staged facts not yet in SQLite (seq ${staged.firstSeq}..${staged.lastSeq} in ${staged.file}, chained on from the database; the daemon moves them)`);
    }
    if (notes.length > 0) reports[0]!.notes = notes;
    const archiveFile = v.archive !== undefined ? path.resolve(v.archive) : archivePathFor(file);
    const archivedThrough = live.archivedThrough();
    if (v.archive !== undefined || fs.existsSync(archiveFile)) {
      const archive = openReadOnly(archiveFile, 'journal archive', v.archive !== undefined ? '--archive' : 'beside the journal');
      try {
        const r = { role: 'archive' as const, ...checkOne(archive) };
        // The two files are one chain: the archive must end exactly where the journal's chain starts.
        const base = live.chainBase();
        const head = archive.chainHead();
        if (head.seq < archivedThrough) r.problems.push(`archive ends at seq ${head.seq}, but the journal moved facts through seq ${archivedThrough}`);
        else if (archivedThrough > 0 && head.seq === base.seq && !head.hash.equals(base.hash)) {
          r.problems.push(`archive's last fact (seq ${head.seq}) is not the one the journal's chain continues from`);
        }
        r.ok = r.problems.length === 0;
        reports.push(r);
      } finally {
        archive.close();
      }
    } else if (archivedThrough > 0) {
      reports[0]!.problems.push(`facts through seq ${archivedThrough} were moved to an archive, but ${archiveFile} is missing (--archive FILE names it)`);
      reports[0]!.ok = false;
    }
  } finally {
    live.close();
  }
  const ok = reports.every((r) => r.ok);
  if (v.json === true) process.stdout.write(JSON.stringify({ file, ok, reports }, null, 2) + '\n');
  else {
    for (const r of reports) {
      const range = r.facts === 0 ? 'no facts' : `${r.facts} facts, seq ${r.firstSeq}..${r.lastSeq}`;
      if (r.ok) process.stdout.write(`${r.role} ${r.file}: ok (${range}, hash chain intact)\n`);
      else for (const p of r.problems) process.stdout.write(`${r.role} ${r.file}: ${p}\n`);
      for (const n of r.notes ?? []) process.stdout.write(`${r.role} ${r.file}: note: ${n}\n`);
    }
  }
  return ok ? 0 : 1;
}

/** `journal verify --cluster`: every published chain, and this host's against its local journal. */
async function verifyClusterCommand(v: JournalValues): Promise<number> {
  const [{ clusterLockspace, clusterCacheRoot, vanished }, { verifyCluster }, { ClusterCache, cacheDirFor }] = await Promise.all([import('./cluster-audit.js'), import('./cluster-verify.js'), import('./cluster-cache.js')]);
  const lockspace = clusterLockspace(v);
  // The local journal when there is one (run on a host): --journal, --state-dir, or the configured one.
  let local: { host: string; journal: Journal } | undefined;
  const config = loadConfig({ files: v.config ?? [], flags: v['state-dir'] !== undefined ? { stateDir: v['state-dir'] } : {} }).config;
  const file = v.journal !== undefined ? path.resolve(v.journal) : config.journal;
  if (fs.existsSync(file)) {
    const journal = openReadOnly(file, 'journal', v.journal !== undefined ? '--journal' : 'the configuration');
    // The host its facts name (the daemon's host id when it wrote them), else the configured one. Its
    // newest fact of any kind, live or carried: a compaction may have moved every DaemonStarted (or
    // every live fact) into the archive, and a state directory read off a dead host comes without
    // that host's config (review26b F7).
    const newest = journal.query({ kinds: ['DaemonStarted'], limit: 1, newest: true })[0] ?? journal.query({ limit: 1, newest: true })[0] ?? journal.carried({ limit: 1, newest: true })[0];
    local = { host: newest?.host ?? config.hostId, journal };
  }
  let reports: ChainReport[];
  try {
    reports = verifyCluster(lockspace, local);
  } finally {
    local?.journal.close();
  }
  // What the segments no longer hold, only a reader that read them before can tell: this machine's
  // read cache, when audit --cluster made one, is brought up to date and names the facts it read
  // that no segment holds any more (a segment cut shorter or removed).
  const root = clusterCacheRoot(v);
  if (fs.existsSync(cacheDirFor(root, lockspace))) {
    const cache = ClusterCache.open(root, lockspace);
    const caught = cache.catchUp();
    // A removed newest segment the successor statement covers, including a statement this cache
    // read before and that is gone since (removing it too would otherwise read as an older writer).
    for (const m of caught.missingNewest) {
      const i = reports.findIndex((r) => r.host === m.host && r.journal === m.journal);
      const problem = { host: m.host, journal: m.journal, segment: m.segment, ...(m.seq !== undefined ? { seq: m.seq } : {}), reason: `${m.reason} (by this machine's cache ${cache.dir})` };
      if (i === -1) reports.push({ host: m.host, journal: m.journal, segments: 0, facts: 0, ok: false, problems: [problem], notes: [] });
      else if (!reports[i]!.problems.some((p) => p.segment === m.segment)) reports[i] = { ...reports[i]!, ok: false, problems: [...reports[i]!.problems, problem] };
    }
    for (const g of vanished(cache.chains(true))) {
      const i = reports.findIndex((r) => r.host === g.host && r.journal === g.journal);
      const problem = { host: g.host, journal: g.journal, segment: g.range.segment, seq: g.range.from, reason: `${g.what} (read before by this machine's cache ${cache.dir})` };
      if (i === -1) reports.push({ host: g.host, journal: g.journal, segments: 0, facts: 0, ok: false, problems: [problem], notes: [] });
      else reports[i] = { ...reports[i]!, ok: false, problems: [...reports[i]!.problems, problem] };
    }
  }
  const ok = reports.every((r) => r.ok);
  if (v.json === true) process.stdout.write(JSON.stringify({ lockspace, ok, ...(local ? { localHost: local.host, localJournal: file } : {}), chains: reports }, null, 2) + '\n');
  else {
    if (reports.length === 0) process.stdout.write(`no published history under ${path.join(lockspace, '.journal')}\n`);
    for (const r of reports) {
      const name = `host ${r.host} journal ${r.journal}`;
      const range = r.facts === 0 ? 'no facts' : `${r.facts} facts, seq ${r.firstSeq}..${r.lastSeq}, ${r.segments} segment(s)`;
      if (r.ok) process.stdout.write(`${name}: ok (${range}, hash chain intact)\n`);
      for (const p of r.problems) process.stdout.write(`${name}: segment ${p.segment}${p.seq !== undefined ? ` seq ${p.seq}` : ''}: ${p.reason}\n`);
      for (const n of r.notes) process.stdout.write(`${name}: note: ${n}\n`);
    }
  }
  return ok ? 0 : 1;
}

async function compactCommand(v: JournalValues): Promise<number> {
  if (v.before === undefined) throw usage('journal compact needs --before TIME', JOURNAL_USAGE);
  const before = parseTime('before', v.before);
  const { file } = await resolveJournalFile(v);
  if (!fs.existsSync(file)) throw bad(`no journal at ${file}; pass --state-dir DIR or --journal FILE`);
  const archive = v.archive !== undefined ? path.resolve(v.archive) : archivePathFor(file);
  // A writer connection beside a running daemon's: WAL lets both in, and every step below is a
  // short transaction, so the daemon's appends wait milliseconds at most.
  const journal = Journal.open(file, { host: 'journal-compact' });
  try {
    // A run cut short in its copy phase is finished first, into the archive it was writing (its
    // delete phase, if cut short, was finished by the open above).
    const pending = journal.compactionState();
    if (pending.through !== undefined && pending.through > journal.archivedThrough() && v['dry-run'] !== true) {
      const into = pending.archive ?? archive;
      ensureSnapshot(journal, pending.through);
      const r = journal.compact({ throughSeq: pending.through, archive: into, holds: HOLD_RULES });
      const resumed = `finished an interrupted compaction: facts through seq ${r.throughSeq} are in ${into} (${r.moved} copied now, ${r.deleted} deleted)\n`;
      if (v.json !== true) process.stdout.write(resumed);
    }
    const from = journal.archivedThrough();
    const timeCut = journal.compactionCut(before);
    // Facts not yet published into the lockspace stay: the published history must never have a
    // hole (docs/decisions/0016). They are compacted by a later run, once published.
    const published = publishedThrough(journal.db);
    const cut = published === undefined ? timeCut : Math.min(timeCut, Math.max(published, from));
    const say = (text: string, obj: Record<string, unknown>) =>
      process.stdout.write(v.json === true ? JSON.stringify({ journal: file, archive, before, ...obj }, null, 2) + '\n' : text);
    if (cut < timeCut) {
      const note = `vmlockd: note: facts after seq ${cut} are not yet published into the lockspace (publication is behind or failing: vmlockd status); they stay until a later compaction\n`;
      process.stderr.write(note);
    }
    if (cut <= from && cut < timeCut) {
      say(`nothing to compact yet: the facts older than ${before} beyond seq ${from} are not yet published into the lockspace\n`, { moved: 0, throughSeq: from, publishedThrough: published });
      return 0;
    }
    if (cut <= from) {
      say(`nothing to compact: no fact in ${file} is older than ${before}${from > 0 ? ` beyond seq ${from}, already archived` : ''}\n`, { moved: 0, throughSeq: from });
      return 0;
    }
    if (v['dry-run'] === true) {
      say(`would move facts seq ${from + 1}..${cut} (${cut - from}) from ${file} to ${archive}\n`, { dryRun: true, wouldMove: cut - from, throughSeq: cut });
      return 0;
    }
    ensureSnapshot(journal, cut);
    const r = journal.compact({ throughSeq: cut, archive, holds: HOLD_RULES });
    say(
      `moved facts seq ${from + 1}..${r.throughSeq} to ${r.archive} (${r.moved} copied, ${r.deleted} deleted, ${r.carried} still in force kept as carried copies); ` +
        (r.firstLiveSeq ? `the journal starts at seq ${r.firstLiveSeq}\n` : `the journal holds no live facts now (the next one is seq ${r.throughSeq + 1})\n`),
      { ...r },
    );
    return 0;
  } finally {
    journal.close();
  }
}

/**
 * Start-up folds the newest snapshot and the facts after it; once facts through `cut` are gone,
 * that snapshot must be at or past `cut`. Folds exactly as the daemon's loadState does.
 */
function ensureSnapshot(journal: Journal, cut: number): void {
  const snap = journal.latestSnapshot();
  if (snap !== undefined && snap.seq >= cut) return;
  const state = snap ? fromSnapshot(snap.state) : initialState();
  if (snap) state.seq = snap.seq;
  for (const row of journal.readAfter(state.seq)) evolve(state, fromRow(row));
  journal.writeSnapshot(state.seq, toSnapshot(state));
}
