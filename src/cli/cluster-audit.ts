// `vmlockd audit --cluster`: the audit questions answered from every host's published history
// (`<lockspace>/.journal/`), through the local read cache (cluster-cache.ts), brought up to date first.
// Runs anywhere the lockspace is mounted: beside a running daemon, on a host whose daemon is stopped,
// or on a machine that never ran one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VmlockdError } from '../engine/errors.js';
import { listHosts } from '../engine/locker-hosts.js';
import { readHostChanges } from '../journal/host-changed.js';
import { canonicalPath } from '../engine/resolve.js';
import type { FactQuery, StoredFact } from '../journal/journal.js';
import { loadConfig } from '../watchers/config.js';
import { answerRows, boundaryNote, clockStepNote, coalescedCsvRows, coalescedText, csvTable, intervalState, formatFacts, humanMs, inFormat, table, type Format, type TableOptions } from './audit-format.js';
import { factStream, followLoop } from './follow.js';
import { diskNames } from './disk-alias.js';
import { coalescedOver, listsHoldings, namesOf, stepsWithin, type DiskNames, type HolderAt } from './audit-query.js';
import { ClusterCache, cacheRoot, type CachedChain, type CatchUpReport, type VanishedRange } from './cluster-cache.js';
import type { Overlap } from './cluster-overlaps.js';
import { clusterFacts, clusterHolders, clusterOrder, clusterOverlaps, clusterTimeline, withNames, type ClusterHolders, type ClusterSources, type ClusterTimeline, type HostHistory } from './cluster-query.js';

export interface ClusterFlags {
  lockspace?: string | undefined;
  cache?: string | undefined;
  'state-dir'?: string | undefined;
  config?: string[] | undefined;
}

export interface ClusterQuestion {
  readonly format: Format;
  readonly disk?: string | undefined;
  readonly vm?: string | undefined;
  readonly at?: string | undefined;
  /** `--at now`: a host whose clock stepped back over it is answered by its current pass (decision 0029). */
  readonly atNow?: boolean | undefined;
  readonly since?: string | undefined;
  readonly until?: string | undefined;
  readonly host?: string | undefined;
  readonly kinds?: string[] | undefined;
  readonly limit?: number | undefined;
  readonly width: number;
  readonly timeline: boolean;
  readonly overlaps: boolean;
  readonly follow: boolean;
  readonly now: number;
}

const FOLLOW_POLL_MS = 1000;

function bad(message: string): VmlockdError {
  return new VmlockdError('VMLOCKD_ERR_BAD_INPUT', message);
}

/** `--lockspace DIR`, else the configuration's file lockspace. */
export function clusterLockspace(v: ClusterFlags): string {
  if (v.lockspace !== undefined) {
    const dir = path.resolve(v.lockspace);
    if (!fs.existsSync(dir)) throw bad(`--lockspace ${JSON.stringify(v.lockspace)}: no such directory`);
    return dir;
  }
  const config = loadConfig({ files: v.config ?? [], flags: v['state-dir'] !== undefined ? { stateDir: v['state-dir'] } : {} }).config;
  if (config.fileLockspaceDir === null) throw bad('no file lockspace is configured, so there is no published history to read: pass --lockspace DIR');
  return config.fileLockspaceDir;
}

/** The cache root for these flags: --cache, else beside the journal in the state directory, else the user's cache. */
export function clusterCacheRoot(v: ClusterFlags): string {
  let stateDir = v['state-dir'];
  if (stateDir === undefined && v.cache === undefined) {
    try {
      stateDir = loadConfig({ files: v.config ?? [], flags: {} }).config.stateDir;
    } catch {
      stateDir = undefined;
    }
  }
  const withJournal = stateDir !== undefined && fs.existsSync(path.join(stateDir, 'journal.db')) ? stateDir : undefined;
  return cacheRoot({ cache: v.cache, stateDir: withJournal });
}

export interface OpenedCluster extends ClusterSources {
  readonly lockspace: string;
  readonly cache: ClusterCache;
  readonly report: CatchUpReport;
  /** Facts read before that no segment holds any more, per range. */
  readonly vanished: Vanished[];
  close(): void;
}

/** Brings the cache up to date and opens every chain. Problems found on the way are said on stderr. */
export function openCluster(v: ClusterFlags, now: number, quiet = false): OpenedCluster {
  const lockspace = clusterLockspace(v);
  const cache = ClusterCache.open(clusterCacheRoot(v), lockspace);
  const report = cache.catchUp();
  // Read once: the chains with facts answer, and any chain's vanished facts are said.
  const chains = cache.chains(true);
  const gone = vanished(chains);
  if (!quiet) {
    warnProblems(report);
    for (const g of gone) process.stderr.write(`vmlockd: warning: ${g.text}\n`);
  }
  return { ...assemble(cache, chains.filter((c) => c.facts > 0), lockspace, now), lockspace, cache, report, vanished: gone };
}

export interface Vanished {
  readonly host: string;
  readonly journal: string;
  readonly range: VanishedRange;
  /** From the seq range on (for a message that names host, journal and segment itself). */
  readonly what: string;
  /** The whole warning. */
  readonly text: string;
}

/**
 * Facts the cache read before that no segment holds any more (cluster-cache.ts VanishedRange), one
 * entry per range: said on every question while it lasts, since an answer leaves them out.
 */
export function vanished(chains: readonly CachedChain[]): Vanished[] {
  const out: Vanished[] = [];
  for (const c of chains) {
    for (const r of c.vanished ?? []) {
      const seqs = r.to > r.from ? `seq ${r.from} to ${r.to} (${r.fromAt} .. ${r.toAt})` : `seq ${r.from} (${r.fromAt})`;
      const what =
        `${seqs} were read from it before and are no longer published ` +
        `(noticed ${r.noticed}: the segment was cut shorter, rewritten or removed, or its host's directory renamed or removed, or the history is being published again and is not that far yet); ` +
        `answers leave them out: they are no published history now`;
      out.push({ host: c.host, journal: c.journal, range: r, what, text: `host ${c.host}: journal ${c.journal}: segment ${r.segment}: ${what} (\`vmlockd journal verify --cluster\` names them too)` });
    }
  }
  return out;
}

function warnProblems(report: CatchUpReport): void {
  for (const n of report.notes) process.stderr.write(`vmlockd: note: host ${n.host}: journal ${n.journal}: ${n.text} (\`vmlockd journal verify --cluster\` says so too)\n`);
  for (const h of report.missingHeads) {
    process.stderr.write(
      `vmlockd: warning: host ${h.host}: journal ${h.journal}: ${h.reason}: removed by hand, not by retention; ` +
        `answers hold nothing of seq ${h.from} to ${h.to} (holds they began, disks and VMs they named) unless this machine's cache read them before they were removed (\`vmlockd journal verify --cluster\` names it too)\n`,
    );
  }
  for (const r of report.resets) {
    process.stderr.write(`vmlockd: warning: host ${r.host}: journal ${r.journal}: segment ${r.segment}: ${r.reason}\n`);
  }
  for (const p of report.problems) {
    process.stderr.write(
      `vmlockd: warning: host ${p.host}: segment ${p.segment}${p.seq !== undefined ? ` at seq ${p.seq}` : ''}: ${p.reason}; its history is answered up to there (\`vmlockd journal verify --cluster\` checks it all)\n`,
    );
  }
}

function assemble(cache: ClusterCache, chains: readonly CachedChain[], lockspace: string, now: number): ClusterSources & { close(): void } {
  let alive: Map<string, boolean> | undefined;
  try {
    alive = new Map(listHosts(lockspace).map((h) => [h.host, h.alive]));
  } catch {
    alive = undefined; // the lockspace's host files cannot be read: whether a host runs is unknown
  }
  const byHost = new Map<string, HostHistory['chains'][number][]>();
  const opened: Array<{ close(): void }> = [];
  const changes = readHostChanges(lockspace);
  try {
    for (const c of chains) {
      const j = cache.openChain(c);
      opened.push(j);
      const changed = changes.get(`${c.journal}\u0000${c.host}`);
      const entry = { chain: c, journal: j, ...(changed !== undefined ? { changed } : {}) };
      const list = byHost.get(c.host);
      if (list === undefined) byHost.set(c.host, [entry]);
      else list.push(entry);
    }
  } catch (e) {
    for (const j of opened) j.close();
    throw e;
  }
  const hosts: HostHistory[] = [...byHost].map(([host, chains]) => ({ host, alive: alive === undefined ? undefined : (alive.get(host) ?? false), chains }));
  return {
    hosts,
    now: new Date(now).toISOString(),
    close() {
      for (const j of opened) j.close();
    },
  };
}

/** Said with "unknown disk/VM" when some host's history lacks its head: the name may be in those facts. */
function headless(cs: ClusterSources): string {
  const heads = (cs as Partial<OpenedCluster>).report?.missingHeads ?? [];
  return heads.length === 0 ? '' : `; but ${heads.map((h) => `host ${h.host}'s seq ${h.from} to ${h.to}`).join(', ')} are missing (warned above), and may name it`;
}

function resolveDisk(cs: ClusterSources, raw: string): DiskNames {
  // Every other name of the same file a host published (hard link, bind mount, rename, loop device) is
  // one more name of the disk, found by identity as `who` does.
  // The identity is read here, so it matches what this host journaled (another host's device number
  // for one shared file may differ): a name only another host used stays unknown (decision 0024).
  // A virtlockd-protocol lease's lock file is one more name (diskNames).
  const found = diskNames(raw, cs.hosts.flatMap((h) => h.chains.map((x) => x.journal)));
  if (found !== undefined) {
    for (const n of found.notes) process.stderr.write(n);
    return { disk: found.disk, names: found.names };
  }
  const candidates = [...new Set([canonicalPath(raw), path.resolve(raw)])];
  throw bad(`unknown disk ${JSON.stringify(raw)}: no fact published by any of ${cs.hosts.length} host(s) names ${candidates.join(' or ')}${headless(cs)}`);
}

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

function resolveVm(cs: ClusterSources, typed: string): string {
  const chains = cs.hosts.flatMap((h) => h.chains.map((c) => c.journal));
  if (UUID_RE.test(typed)) {
    const h = typed.replace(/-/g, '').toLowerCase();
    const vm = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    if (chains.some((j) => j.knowsOwner(vm))) return vm;
  } else {
    const uuids = [...new Set(chains.flatMap((j) => j.ownersNamed(typed)))].sort();
    if (uuids.length > 1) throw bad(`VM name ${JSON.stringify(typed)} was used by ${uuids.length} VMs (${uuids.join(', ')}); ask for one with --vm UUID`);
    if (uuids.length === 1) return uuids[0]!;
    if (chains.some((j) => j.knowsOwner(typed))) return typed;
  }
  throw bad(`unknown VM ${JSON.stringify(typed)}: no fact published by any of ${cs.hosts.length} host(s) names it by uuid or name${headless(cs)}`);
}

export async function runClusterAudit(v: ClusterFlags, q: ClusterQuestion): Promise<number> {
  const cs = openCluster(v, q.now);
  try {
    if (cs.hosts.length === 0) {
      process.stderr.write(`vmlockd: note: no host has published history under ${path.join(cs.lockspace, '.journal')} yet\n`);
    }
    const disk = q.disk === undefined ? undefined : resolveDisk(cs, q.disk);
    const vm = q.vm === undefined ? undefined : resolveVm(cs, q.vm);
    const out = (s: string) => process.stdout.write(s);
    if (q.at !== undefined) {
      out(formatClusterHolders(clusterHolders(cs, disk!, q.at, { now: q.atNow === true }), q.format));
      return 0;
    }
    if (q.overlaps) {
      const found = clusterOverlaps(cs, disk, q.since, q.until);
      stepNotes(cs, q.since, q.until, found.length > 0);
      out(formatOverlaps(found, q.format, cs));
      return 0;
    }
    if (q.timeline) {
      const first = firstAt(cs, disk!);
      const from = q.since ?? first ?? new Date(q.now).toISOString();
      const to = q.until ?? new Date(q.now).toISOString();
      const t = clusterTimeline(cs, disk!, from, to);
      stepNotes(cs, from, to, false);
      out(q.format === 'table' ? formatClusterTimeline(t, q.width) : q.format === 'json' ? JSON.stringify(t, null, 2) + '\n' : timelineCsv(t));
      return 0;
    }
    const fq: FactQuery = {
      ...(disk !== undefined ? { disk: namesOf(disk) } : {}),
      ...(vm !== undefined ? { owner: vm } : {}),
      ...(q.host !== undefined ? { host: q.host } : {}),
      ...(q.kinds !== undefined ? { kinds: q.kinds } : {}),
      ...(q.since !== undefined ? { since: q.since } : {}),
      ...(q.until !== undefined ? { until: q.until } : {}),
    };
    const facts = clusterFacts(cs, fq, q.limit);
    // Each fact's journal: always in CSV and JSON; in the table when some host has more than one journal.
    const opts: TableOptions = { oneDisk: disk !== undefined && disk.names.length === 1, journal: cs.hosts.some((h) => h.chains.length > 1) ? 'table' : 'csv' };
    if (q.follow) return await follow(v, cs, fq, facts, q.format, opts);
    if (facts.length > 0) stepNotes(cs, q.since ?? facts[0]!.at, q.until ?? facts[facts.length - 1]!.at, false);
    // Each host's coalesced loss / re-take facts the list lacks, as the one-host list notes them (review31a MEDIUM 5).
    if (listsHoldings(q.kinds)) {
      for (const h of cs.hosts) {
        if (q.host !== undefined && q.host !== h.host) continue;
        for (const c of h.chains) {
          for (const x of coalescedOver({ live: c.journal }, disk === undefined ? undefined : namesOf(disk), q.since, q.until, vm)) {
            process.stderr.write(`vmlockd: note: ${coalescedText(x, `host ${h.host}`, 'they are not in this list')}\n`);
          }
        }
      }
    }
    out(formatFacts(facts, q.format, opts));
    if (q.limit !== undefined && facts.length === q.limit) {
      process.stderr.write(`vmlockd: showing the newest ${q.limit} matching facts; --limit 0 shows all, --since/--until narrow the window\n`);
    }
    return 0;
  } finally {
    cs.close();
  }
}

/**
 * Each host's clock steps back in the window, on stderr (decision 0029). Hosts are compared by their
 * facts' times, each on its own clock: a step shifts that host's facts after it by up to its size.
 */
function stepNotes(cs: ClusterSources, since: string | undefined, until: string | undefined, overlaps: boolean): void {
  let any = false;
  for (const h of cs.hosts) {
    for (const c of h.chains) {
      for (const f of stepsWithin({ live: c.journal }, since, until)) {
        process.stderr.write(clockStepNote(f, `host ${h.host}`, false));
        any = true;
      }
    }
  }
  if (any && overlaps) {
    process.stderr.write(
      'vmlockd: note: hosts are compared by their facts\' times, each host\'s own clock: after a step back a host\'s facts are given at the time its clock had reached, up to the step\'s size later than they were made, so an overlap with such a host near its step may be the step\'s\n',
    );
  }
}

function firstAt(cs: ClusterSources, asked: DiskNames): string | undefined {
  const disk = namesOf(asked);
  let first: string | undefined;
  for (const h of cs.hosts) {
    for (const c of h.chains) {
      const f = c.journal.query({ disk, limit: 1 })[0];
      if (f !== undefined && (first === undefined || f.at < first)) first = f.at;
    }
  }
  return first;
}

/**
 * The backlog, then every fact the hosts publish from now on: the cache is brought up to date each
 * second and each chain is read past the last seq printed from it (a new chain, from its start).
 * A chain whose history was published again differently (the catch-up's resets) is printed again
 * from its first differing seq, after a warning naming what was printed before and is not the
 * history any more; a host's second journal adds the table's JOURNAL column.
 */
async function follow(v: ClusterFlags, first: OpenedCluster, q: FactQuery, backlog: readonly StoredFact[], format: Format, opts: TableOptions): Promise<number> {
  const stream = factStream(format, opts);
  stream.start();
  stream.print(backlog);
  let columns = opts;
  const key = (host: string, journal: string) => `${host}\u0000${journal}`;
  const seen = new Map<string, number>();
  /** Vanished ranges already said (by openCluster before the backlog, or by an earlier poll). */
  const told = new Set(first.vanished.map((g) => `${g.host}\u0000${g.journal}\u0000${g.range.from}\u0000${g.range.to}\u0000${g.range.noticed}`));
  for (const h of first.hosts) for (const c of h.chains) seen.set(key(h.host, c.chain.journal), c.chain.last?.seq ?? 0);
  await followLoop(() => {
    const cs = openCluster(v, Date.now(), true);
    try {
      for (const r of cs.report.resets) {
        const k = key(r.host, r.journal);
        const printed = seen.get(k) ?? 0;
        const again = printed >= r.seq ? `; the facts printed before as seq ${r.seq} to ${printed} are not its history any more: printed again from seq ${r.seq} as published now` : '';
        process.stderr.write(`vmlockd: warning: host ${r.host}: journal ${r.journal}: segment ${r.segment}: ${r.reason}${again}\n`);
        if (printed >= r.seq) seen.set(k, r.seq - 1);
      }
      for (const g of cs.vanished) {
        const id = `${g.host}\u0000${g.journal}\u0000${g.range.from}\u0000${g.range.to}\u0000${g.range.noticed}`;
        if (told.has(id)) continue;
        told.add(id);
        const k = key(g.host, g.journal);
        const printed = seen.get(k) ?? 0;
        const before = printed >= g.range.from ? `; the facts printed before as seq ${g.range.from} to ${Math.min(printed, g.range.to)} are among them; what is published at those seq numbers from now on is printed` : '';
        process.stderr.write(`vmlockd: warning: ${g.text}${before}\n`);
        if (printed >= g.range.from) seen.set(k, g.range.from - 1);
      }
      if (columns.journal === 'csv' && cs.hosts.some((h) => h.chains.length > 1)) {
        columns = { ...columns, journal: 'table' };
        stream.columns(columns);
      }
      const fresh: StoredFact[] = [];
      for (const h of cs.hosts) {
        for (const c of h.chains) {
          const k = key(h.host, c.chain.journal);
          const after = seen.get(k) ?? 0;
          const top = c.chain.last?.seq ?? 0;
          if (top <= after) continue;
          fresh.push(...withNames(c.journal, c.journal.query({ ...q, afterSeq: after, untilSeq: top })).map((f) => ({ ...f, journal: c.chain.journal })));
          seen.set(k, top);
        }
      }
      stream.print(fresh.sort(clusterOrder));
    } finally {
      cs.close();
    }
  }, FOLLOW_POLL_MS);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Output

/** As the one-host holders CSV: the answer's state, reading and note last (review31a HIGH 2), one host's answer per group of rows. */
const HOLDER_COLUMNS = ['host', 'disk', 'at', 'vm_uuid', 'vm_name', 'mode', 'generation', 'since', 'resource', 'seq', 'via', 'journal', 'state', 'reading', 'note'] as const;

export function formatClusterHolders(a: ClusterHolders, format: Format): string {
  return inFormat(
    format,
    a,
    () =>
      csvTable(
        HOLDER_COLUMNS,
        [
          // The holders in their order (by since), each marked as its host's answer is; then the rows
          // that are not an agreed holder: an ambiguous host's readings, an incomplete host's mark.
          ...a.holders.map((h) => {
            const x = a.hosts.find((y) => y.host === h.host && y.journal === h.journal);
            const r = x === undefined ? undefined : answerRows(x.answer).find((row) => row.holder?.seq === h.seq);
            return { holder: h as HolderAt, state: r?.state ?? 'agreed', reading: r?.reading ?? '', note: r?.note ?? '', host: h.host, journal: h.journal };
          }),
          ...a.hosts.flatMap((x) => answerRows(x.answer).filter((r) => r.holder === undefined || r.state === 'ambiguous' || r.state === 'unknown').map((r) => ({ ...r, host: x.host, journal: x.journal ?? '' }))),
          // A host whose journal went on under another host id before the moment: who held the disk
          // through it is unknown, a row for each hold its published history last showed, or one alone
          // (before, none: the header alone read as "nobody"; review31b HIGH).
          ...a.hosts.flatMap((x) => {
            if (x.changed === undefined) return [];
            const note = changedNote(x).replace(/^note: /, '').trim();
            const last = x.unknown ?? [];
            return (last.length > 0 ? last.map((holder) => ({ holder: holder as HolderAt | undefined })) : [{ holder: undefined as HolderAt | undefined }]).map(({ holder }) => ({ holder, state: 'unknown' as const, reading: '', note, host: x.host, journal: x.journal ?? '' }));
          }),
        ].map(({ holder: h, state, reading, note, host, journal }) =>
            h === undefined
              ? [host, a.disk, a.at, '', '', '', '', '', '', '', '', journal, state, reading, note]
              : [host, a.disk, a.at, h.owner.uuid, h.owner.name, h.mode, h.generation, h.since, h.resource, h.seq, h.via, journal, state, reading, note],
          ),
      ),
    () => {
      const notes = a.hosts.map((x) => boundaryNote(x.answer, `host ${x.host}`) + changedNote(x)).join('');
      const unsure = a.hosts.filter((x) => x.answer.ambiguous !== undefined).map((x) => x.host);
      const unsureNote = unsure.length > 0 ? ` (ambiguous on ${unsure.join(', ')}: its clock stepped back over that time, see below)` : '';
      if (a.holders.length === 0) return `nobody held ${a.disk} at ${a.at} ${unsure.length > 0 ? 'surely ' : ''}on any of ${a.hosts.length} host(s) with history then${unsureNote}\n${notes}`;
      return (
        `${a.disk} at ${a.at}${unsureNote}:\n` +
        table([
          ['HOST', 'VM', 'UUID', 'MODE', 'GEN', 'SINCE', 'LAST FACT'],
          ...a.holders.map((h) => [h.host, h.owner.name ?? '-', h.owner.uuid, h.mode, h.generation === null ? '-' : String(h.generation), h.since, `${h.via} #${h.seq} (journal ${h.journal})`]),
        ]) +
        notes
      );
    },
  );
}

/** A host whose journal went on under another host id before the moment asked: its holds are unknown. */
function changedNote(x: ClusterHolders['hosts'][number]): string {
  const c = x.changed;
  if (c === undefined) return '';
  const last = x.unknown !== undefined && x.unknown.length > 0 ? ` (its published history last showed ${x.unknown.map((h) => `${h.owner.name ?? h.owner.uuid} holding it`).join(', ')})` : '';
  return (
    `note: host ${x.host}'s journal ${c.journal} went on as host ${c.to} from seq ${c.seq} at ${c.at} (the same state directory started under a new host_id); ` +
    `those facts are not published (VMLOCKD_ERR_PUBLISH_HOST), so who held the disk through it after ${c.at} is unknown${last}\n`
  );
}

/** `state` (last): "overlap", shown by the facts, or "possible": `a` is a coalesced range (review31a MEDIUM 5). */
const OVERLAP_COLUMNS = ['disk', 'from', 'to', 'host_a', 'vm_uuid_a', 'vm_name_a', 'mode_a', 'since_a', 'end_a', 'host_b', 'vm_uuid_b', 'vm_name_b', 'mode_b', 'since_b', 'end_b', 'state'] as const;

export function formatOverlaps(list: readonly Overlap[], format: Format, cs: ClusterSources): string {
  return inFormat(
    format,
    list,
    () => csvTable(OVERLAP_COLUMNS, list.map((o) => [o.disk, o.from, o.to, o.a.host, o.a.owner.uuid, o.a.owner.name, o.a.mode, o.a.from, o.a.to ?? '', o.b.host, o.b.owner.uuid, o.b.owner.name, o.b.mode, o.b.from, o.b.to ?? '', o.possible !== undefined ? 'possible' : 'overlap'])),
    () => {
      if (list.length === 0) return `no overlaps: no two hosts held one disk in conflicting modes at the same time (${cs.hosts.length} host(s) read)\n`;
      const who = (c: Overlap['a']) => `${c.owner.name ?? c.owner.uuid.slice(0, 8)} on ${c.host} (${c.mode}, ${c.from} .. ${c.to ?? 'still held'}${c.end ? `, ${c.end}` : ''})`;
      const maybe = (o: Overlap) => `${o.a.owner.name ?? (o.a.owner.uuid === '?' ? 'a VM' : o.a.owner.uuid.slice(0, 8))} on ${o.a.host} (unknown: its loss/re-take facts ${o.a.from} .. ${o.a.to} were coalesced, FactsDropped #${o.possible!.seq})`;
      const shown = list.filter((o) => o.possible === undefined).length;
      const possible = list.length - shown;
      return (
        table([
          ['DISK', 'FROM', 'TO', 'FIRST HOLDER', 'SECOND HOLDER'],
          ...list.map((o) => [o.disk, o.from, o.to ?? '(both still held)', o.possible !== undefined ? maybe(o) : who(o.a), who(o.b)]),
        ]) +
        (shown > 0 ? `${shown} overlap(s): two hosts' VMs both held the disk over these intervals, each by its own host's clock\n` : `no overlap shown by the facts (${cs.hosts.length} host(s) read), but:\n`) +
        (possible > 0 ? `${possible} possible overlap(s): a host's journal lacks its VM's loss/re-take facts there (coalesced while its disk was full), so whether it held the disk while the other did is unknown\n` : '')
      );
    },
  );
}

/** The cluster timeline CSV: `state` incomplete where the host's coalesced range meets an interval, and a row per coalesced range (review31a HIGH 2, MEDIUM 5). */
function timelineCsv(t: ClusterTimeline): string {
  const of = (host: string) => t.incomplete?.filter((c) => c.host === host);
  return csvTable(['host', 'disk', 'vm_uuid', 'vm_name', 'mode', 'from', 'to', 'end', 'crash_before', 'generation', 'state', 'note'], [
    ...t.intervals.map((i) => [i.host, t.disk, i.owner.uuid, i.owner.name ?? '', i.mode, i.from, i.to ?? '', i.end ?? '', i.crashBefore ?? '', i.generation ?? '', intervalState(i, of(i.host), t.to), '']),
    ...t.gaps.map((g) => [g.host, t.disk, '', '', '', g.from, g.to ?? '', g.how === 'stopped' ? 'daemon-stopped' : 'daemon-crashed', '', '', '', '']),
    ...(t.incomplete ?? []).map((c) => [c.host, ...coalescedCsvRows(t.disk, [c])[0]!]),
  ]);
}

/** The chart: per host, one line per VM and, when its daemon was down in the window, a line for that. */
export function formatClusterTimeline(t: ClusterTimeline, width: number): string {
  const t0 = Date.parse(t.from);
  const t1 = Math.max(Date.parse(t.to), t0 + 1);
  const head = `${t.disk}, ${t.from} .. ${t.to}\n`;
  const rows = new Map<string, string>();
  const key = (host: string, uuid: string) => `${host}\u0000${uuid}`;
  const label = (host: string, o: { uuid: string; name?: string }) => `${host}: ${o.name ? `${o.name} (${o.uuid.slice(0, 8)})` : o.uuid}`;
  for (const i of t.intervals) rows.set(key(i.host, i.owner.uuid), label(i.host, i.owner));
  for (const e of t.events) if (!rows.has(key(e.host, e.owner.uuid))) rows.set(key(e.host, e.owner.uuid), label(e.host, e.owner));
  const downHosts = [...new Set(t.gaps.map((g) => g.host))];
  for (const h of downHosts) rows.set(key(h, ''), `${h}: daemon down`);
  if (rows.size === 0) return `${head}nobody on any host held or asked for this disk in that window\n`;
  const ordered = [...rows].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const lw = Math.min(44, Math.max(...ordered.map(([, l]) => l.length)));
  const cols = Math.max(10, width - lw - 3);
  const slot = (t1 - t0) / cols;
  const col = (iso: string) => Math.min(cols - 1, Math.max(0, Math.floor((Date.parse(iso) - t0) / slot)));
  const lines: string[] = [];
  for (const [k, name] of ordered) {
    const [host, uuid] = k.split('\u0000') as [string, string];
    const cells = Array<string>(cols).fill(' ');
    if (uuid === '') {
      for (const g of t.gaps) {
        if (g.host !== host) continue;
        const a = Date.parse(g.from) < t0 ? 0 : col(g.from);
        const b = g.to === undefined ? cols - 1 : col(g.to);
        for (let c = a; c <= b; c++) cells[c] = g.how === 'stopped' ? '-' : '~';
      }
    } else {
      for (const i of t.intervals) {
        if (i.host !== host || i.owner.uuid !== uuid) continue;
        const a = Date.parse(i.from) < t0 ? 0 : col(i.from);
        const b = i.to === undefined ? cols - 1 : col(i.to);
        for (let c = a; c <= b; c++) cells[c] = i.mode === 'shared' ? '▒' : '█';
        if (i.end === 'crash' && i.crashBefore !== undefined) for (let c = b + 1; c <= col(i.crashBefore); c++) if (cells[c] === ' ') cells[c] = '?';
      }
      for (const e of t.events) if (e.host === host && e.owner.uuid === uuid) cells[col(e.at)] = e.kind === 'LeaseLost' ? '!' : 'x';
    }
    lines.push(`${name.slice(0, lw).padEnd(lw)} |${cells.join('')}|`);
  }
  const start = t.from.slice(0, 19) + 'Z';
  const end = t.to.slice(0, 19) + 'Z';
  const axis = `${''.padEnd(lw)} |${start}${end.padStart(Math.max(0, cols - start.length))}|`;
  return (
    `${head}${axis}\n${lines.join('\n')}\n` +
    `${''.padEnd(lw)}  █ exclusive  ▒ shared  ? until a crash in between  x refused  ! lease lost  - daemon stopped  ~ daemon crashed, down (1 column = ${humanMs(slot)})\n` +
    (t.incomplete ?? []).map((c) => `note: ${coalescedText(c, `host ${c.host}`, 'its bars there are not the whole story')}\n`).join('')
  );
}
