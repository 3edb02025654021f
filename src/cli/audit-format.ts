// Output of `vmlockd audit`: a readable table, CSV (RFC 4180) or JSON, and the timeline chart.
import type { HolderInfo, Owner } from '../engine/types.js';
import type { StoredFact } from '../journal/journal.js';
import { otherParty, type CoalescedAt, type HolderAt, type HoldersAnswer, type Reading, type Timeline } from './audit-query.js';

export type Format = 'table' | 'csv' | 'json';

/** One fact flattened for a table or CSV: the fact's own party, and the other party of a conflict. */
export interface AuditRow {
  seq: number;
  at: string;
  host: string;
  kind: string;
  disk: string;
  vm_uuid: string;
  vm_name: string;
  mode: string;
  generation: string;
  other_host: string;
  other_vm_uuid: string;
  other_vm_name: string;
  other_mode: string;
  other_since: string;
  other_generation: string;
  detail: string;
  /** The time the client gave for the event, when it gave one (`at` is the daemon's). */
  client_at: string;
  /** audit --cluster: the id of the host's journal the fact is from (a host's new journal starts its seq at 1 again). */
  journal: string;
}

const CSV_COLUMNS: ReadonlyArray<keyof AuditRow> = [
  'seq', 'at', 'host', 'kind', 'disk', 'vm_uuid', 'vm_name', 'mode', 'generation',
  'other_host', 'other_vm_uuid', 'other_vm_name', 'other_mode', 'other_since', 'other_generation', 'detail', 'client_at',
];
/** audit --cluster: the host's journal too (seq counts within one journal); last, so the other columns keep their places. */
const CLUSTER_CSV_COLUMNS: ReadonlyArray<keyof AuditRow> = [...CSV_COLUMNS, 'journal'];

/** The fact CSV's columns for these options. */
export function factColumns(opts: TableOptions = {}): ReadonlyArray<keyof AuditRow> {
  return opts.journal !== undefined ? CLUSTER_CSV_COLUMNS : CSV_COLUMNS;
}

function text(v: unknown): string {
  return v === undefined || v === null ? '' : String(v);
}

function detailOf(f: StoredFact): string {
  const p = (f.payload ?? {}) as Record<string, unknown>;
  switch (f.kind) {
    case 'LockRefused':
      return text(p.message);
    case 'LockAcquired':
      return text(p.source);
    case 'Reacquired':
      return 'after restart';
    case 'LockReleased': {
      const to = p.handedTo as { host?: string; until?: string } | undefined;
      return to ? `${text(p.reason)}; reserved for the migration to host ${text(to.host)} until ${text(to.until)}` : text(p.reason);
    }
    case 'LeaseLost':
      return text(p.reason);
    case 'InputRejected':
    case 'CommandFailed':
      return `${text(p.source)}: ${text(p.message)}`;
    case 'DaemonStarted':
    case 'DaemonStopped':
      return `pid ${text(p.pid)}, ${text(p.held)} lock(s)${p.reason ? `, ${text(p.reason)}` : ''}`;
    case 'OwnerSeen':
      return `${text(p.event ?? 'seen')} via ${text(p.source)}`;
    case 'OwnerGone':
      return `pid ${text(p.pid)}, released ${text(p.released)}`;
    case 'HandOverWaiting':
      return `migration hand-over from host ${text(p.from)}: waiting for ${Array.isArray(p.disks) ? p.disks.length : 0} disk(s) via ${text(p.source)}`;
    case 'HandOverEnded':
      return `migration hand-over ${text(p.outcome)}${p.detail ? `: ${text(p.detail)}` : ''}`;
    case 'LibvirtVouched': {
      const l = (p.libvirt ?? {}) as { uri?: string; host?: string };
      return `libvirt ${text(l.uri)} on host ${text(l.host)} reports it running: its "gone" may release this VM's locks (${text(p.source)})`;
    }
    case 'ClockStepped':
      return `the clock stepped back ${text(p.backMs)} ms (seen ${p.seenBy === 'start' ? 'at the start' : 'while running'}): it had reached ${text(p.from)}, then read ${text(p.to)}; times in between came twice on this host`;
    case 'IdentityLearned': {
      const c = Array.isArray(p.conflict) ? (p.conflict as Array<{ disk?: string; owner?: Owner; mode?: string }>) : [];
      const learnt = `the disk was created under its lock: identity ${text(p.inode)} learnt (${text(p.source)})`;
      return c.length === 0 ? learnt : `${learnt}; DISK CONFLICT: the same file is held as ${c.map((x) => `${text(x.disk)} by ${text(x.owner?.name ?? x.owner?.uuid)} (${text(x.mode)})`).join(', ')}`;
    }
    default:
      return '';
  }
}

/** A fact made while the clock was behind its time after a step back keeps the clock's reading (decision 0029). */
function withWallAt(detail: string, wallAt: unknown): string {
  return typeof wallAt === 'string' ? `${detail}${detail ? ' ' : ''}(the clock read ${wallAt}: set back)` : detail;
}

export function toRow(f: StoredFact): AuditRow {
  const p = (f.payload ?? {}) as { owner?: Owner; mode?: string; generation?: number };
  const other: HolderInfo = otherParty(f) ?? {};
  return {
    seq: f.seq,
    at: f.at,
    host: f.host,
    kind: f.kind,
    disk: text(f.disk),
    vm_uuid: text(f.owner),
    vm_name: text(f.ownerName ?? p.owner?.name),
    mode: text(p.mode),
    generation: text(p.generation),
    other_host: text(other.host),
    other_vm_uuid: text(other.owner?.uuid),
    other_vm_name: text(other.owner?.name),
    other_mode: text(other.mode),
    other_since: text(other.since),
    other_generation: text(other.generation),
    detail: withWallAt(detailOf(f), (f.payload as { wallAt?: unknown } | null)?.wallAt),
    client_at: text((f.payload as { clientAt?: unknown } | null)?.clientAt),
    journal: text((f as { journal?: unknown }).journal),
  };
}

export function csvField(v: unknown): string {
  const s = text(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvHeader(columns: readonly string[] = CSV_COLUMNS): string {
  return columns.join(',') + '\r\n';
}

/** A whole CSV document: the header, then one line per row (each value as csvField writes it). */
export function csvTable(columns: readonly string[], rows: ReadonlyArray<readonly unknown[]>): string {
  return csvHeader(columns) + rows.map((r) => r.map(csvField).join(',') + '\r\n').join('');
}

/** One answer in the asked format: json is the answer itself, csv and table are built only when asked. */
export function inFormat(format: Format, answer: unknown, csv: () => string, text: () => string): string {
  switch (format) {
    case 'json':
      return JSON.stringify(answer, null, 2) + '\n';
    case 'csv':
      return csv();
    case 'table':
      return text();
    default: {
      const _exhaustive: never = format;
      return _exhaustive;
    }
  }
}

export function csvRows(rows: readonly AuditRow[], columns: ReadonlyArray<keyof AuditRow> = CSV_COLUMNS): string {
  return rows.map((r) => columns.map((c) => csvField(r[c])).join(',') + '\r\n').join('');
}

function vmLabel(uuid: string, name: string): string {
  if (uuid === '' && name === '') return '-';
  return name !== '' ? `${name} (${uuid.slice(0, 8)})` : uuid;
}

function otherLabel(r: AuditRow): string {
  if (r.other_host === '' && r.other_vm_uuid === '' && r.other_mode === '') return '';
  const who = r.other_vm_uuid !== '' || r.other_vm_name !== '' ? vmLabel(r.other_vm_uuid, r.other_vm_name) : 'unknown owner';
  const bits = [r.other_mode, r.other_generation !== '' ? `gen ${r.other_generation}` : ''].filter((b) => b !== '');
  return `${who}${r.other_host !== '' ? ` on ${r.other_host}` : ''}${bits.length ? ` (${bits.join(', ')})` : ''}`;
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n').join('');
}

export interface TableOptions {
  /** Leave the DISK column out (every row is the same disk). */
  oneDisk?: boolean;
  /**
   * audit --cluster: each fact's journal id, in the CSV ('csv') and in the table as well ('table': some
   * host has more than one journal, so a host's seq alone does not say which fact it is). JSON has it always.
   */
  journal?: 'csv' | 'table';
}

export const TABLE_HEADER = ['SEQ', 'AT', 'HOST', 'KIND', 'VM', 'DISK', 'MODE', 'GEN', 'OTHER PARTY', 'DETAIL'];

/** The table's columns for these options, as indexes into TABLE_HEADER (-1: JOURNAL, after HOST). */
function tableColumns(opts: TableOptions): number[] {
  const cols = TABLE_HEADER.map((_, i) => i).filter((i) => !(opts.oneDisk === true && i === 5));
  if (opts.journal === 'table') cols.splice(3, 0, -1);
  return cols;
}

export function tableCells(r: AuditRow, opts: TableOptions = {}): string[] {
  const detail = r.client_at !== '' ? `${r.detail}${r.detail ? ' ' : ''}(client's time ${r.client_at})` : r.detail;
  const cells = [String(r.seq), r.at, r.host, r.kind, vmLabel(r.vm_uuid, r.vm_name), r.disk || '-', r.mode || '-', r.generation || '-', otherLabel(r) || '-', detail];
  return tableColumns(opts).map((i) => (i === -1 ? r.journal || '-' : cells[i]!));
}

export function tableHeader(opts: TableOptions = {}): string[] {
  return tableColumns(opts).map((i) => (i === -1 ? 'JOURNAL' : TABLE_HEADER[i]!));
}

export function formatFactTable(facts: readonly StoredFact[], opts: TableOptions = {}): string {
  if (facts.length === 0) return 'no facts match\n';
  return table([tableHeader(opts), ...facts.map((f) => tableCells(toRow(f), opts))]);
}

export function formatFacts(facts: readonly StoredFact[], format: Format, opts: TableOptions = {}): string {
  switch (format) {
    case 'json':
      return JSON.stringify(facts, null, 2) + '\n';
    case 'csv':
      return csvHeader(factColumns(opts)) + csvRows(facts.map(toRow), factColumns(opts));
    case 'table':
      return formatFactTable(facts, opts);
    default: {
      const _exhaustive: never = format;
      return _exhaustive;
    }
  }
}

/** `as`: the name the hold's facts gave the disk when it is not the one asked about (a lease's lock file). */
/**
 * The holders CSV's columns: the holder's, then (last, so the others keep their places) the answer's
 * `state` (agreed, ambiguous, incomplete), the `reading` a row is from (an ambiguous answer: one row per
 * pass's reading, "before" or "after step #N"), and a `note` (the coalesced ranges). Before, only holder
 * rows were printed: an incomplete answer came out as a plain holder row and an ambiguous one as the
 * header alone, the CSV of "nobody held it" (review31a HIGH 2).
 */
const HOLDER_COLUMNS = ['disk', 'at', 'vm_uuid', 'vm_name', 'host', 'mode', 'generation', 'since', 'resource', 'seq', 'via', 'as', 'state', 'reading', 'note'] as const;

/** One row of a holders CSV: a holder (none: a reading or a mark without one), the answer's state, the reading, the note. */
export interface AnswerRow {
  readonly holder?: HolderAt;
  readonly state: 'agreed' | 'ambiguous' | 'incomplete' | 'unknown';
  readonly reading: string;
  readonly note: string;
}

/**
 * An answer as CSV rows: agreed, a row per holder (none: no row, the CSV of "nobody"); ambiguous, a
 * row per holder of each reading, a reading with none a row of its own; incomplete (a coalesced range
 * over the moment), its rows so marked, and a row even when nobody is listed.
 */
export function answerRows(a: HoldersAnswer): AnswerRow[] {
  const note = (a.incomplete ?? [])
    .map((c) => `FactsDropped #${c.seq}: ${c.count > 0 ? c.count : 'some'} loss/re-take fact(s) of ${c.ownerName ?? c.owner} (${c.resource}) between ${c.from} and ${c.to} coalesced`)
    .join('; ');
  if (a.ambiguous !== undefined) {
    return a.ambiguous.readings.flatMap((r) => {
      const reading = `${r.pass === 'before' ? 'before the step' : `after step #${r.step}${r.merged !== undefined ? ' (merged)' : ''}`}, after seq ${r.asOf}${r.holders.length === 0 ? `: ${readingText(r)}` : ''}`;
      return r.holders.length === 0 ? [{ state: 'ambiguous' as const, reading, note }] : r.holders.map((holder) => ({ holder, state: 'ambiguous' as const, reading, note }));
    });
  }
  // A journal from before 0029 whose times go back across a restart: the answer may be the other
  // pass's (the table says so), never a plain agreed row (review31b MEDIUM).
  const step = a.unmarkedStep !== undefined ? `the journal goes back in time at seq ${a.unmarkedStep.seq} (${a.unmarkedStep.at} after ${a.unmarkedStep.before}): ${a.at} came twice, this may be the other pass's answer` : '';
  const noted = [note, step].filter((n) => n !== '').join('; ');
  const state = step !== '' ? ('ambiguous' as const) : a.incomplete !== undefined ? ('incomplete' as const) : ('agreed' as const);
  const rows: AnswerRow[] =
    a.holders.length === 0 ? (state === 'agreed' ? [] : [{ state, reading: '', note: noted }]) : a.holders.map((holder) => ({ holder, state, reading: '', note: noted }));
  // Holds a crash ended at a moment not journaled: whether they lasted until the moment is unknown, a
  // row each (before, the CSV left them out: the header alone, the CSV of "nobody"; review31b HIGH).
  if (a.crash !== undefined) {
    const why = a.crash.notRestarted === true ? `vmlockd is not running and did not stop cleanly after ${a.crash.after}` : `vmlockd crashed between ${a.crash.after} and ${a.crash.before}`;
    for (const holder of a.crash.holds) rows.push({ holder, state: 'unknown', reading: '', note: [`${why}: whether this hold lasted until ${a.at} is unknown`, noted].filter((n) => n !== '').join('; ') });
  }
  return rows;
}

/**
 * What a stop or a crash around the moment did, in one line (empty when neither). `where` names the
 * host: "this host" for a host's own journal, "host X" for one host of the cluster's history.
 */
export function boundaryNote(a: HoldersAnswer, where = 'this host'): string {
  const lines: string[] = [];
  if (a.unmarkedStep !== undefined) {
    const u = a.unmarkedStep;
    lines.push(
      `the journal of ${where} goes back in time at seq ${u.seq}: that DaemonStarted is at ${u.at}, after a fact at ${u.before} (the clock was set back across the restart, under a vmlockd before 0029 that did not journal it): ` +
        `${a.at} came twice there, and this answer follows the times as they are, so it may be the other pass's: compare with the facts around seq ${u.seq}`,
    );
  }
  const steps = a.ambiguous?.steps ?? a.clockSteps ?? [];
  if (steps.length > 0) {
    const said = steps.map((s) => `ClockStepped #${s.seq}: it had reached ${s.from}, then read ${s.to}${s.merged !== undefined ? `; it stands for ${s.merged} steps merged while the journal's disk was full, whose passes cannot be told apart or ordered, so every answer the disk had along its pass is listed` : ''}`).join('; ');
    const passes = steps.reduce((n, s) => n + (s.merged ?? 1), 1);
    const head = `the clock on ${where} stepped back over ${a.at} (${said}): it showed that time ${passes === 2 ? 'twice' : `${passes} times`}`;
    if (a.current !== undefined) lines.push(`${head}; "now" is answered by the current pass (after step #${a.current.step}, after seq ${a.current.asOf}), not the earlier ones`);
    else if (a.ambiguous === undefined) lines.push(`${head}, and each pass gives this answer`);
    else {
      const each = a.ambiguous.readings.map((r) => `  ${r.pass === 'before' ? 'before the step' : `after step #${r.step}`}${r.merged !== undefined ? ' (one of its passes)' : ''} (after seq ${r.asOf}): ${readingText(r)}`);
      lines.push(`${head}, and the passes' answers differ, so none is picked (decision 0029):\n${each.join('\n')}`);
    }
  }
  for (const c of a.incomplete ?? []) lines.push(coalescedText(c, where, `whether it held the disk at ${a.at} is not in the journal`));
  if (a.stopped !== undefined) {
    lines.push(`vmlockd on ${where} stopped at ${a.stopped.at}${a.stopped.restarted ? ` and started again at ${a.stopped.restarted}` : ''}: every lock it held was dropped at the stop${a.holders.length > 0 ? ' except those the next start adopted (listed)' : ''}`);
  }
  if (a.crash?.notRestarted === true) {
    lines.push(
      `vmlockd on ${where} is not running and did not stop cleanly: its last fact is at ${a.crash.after}. ${a.crash.holds.length} hold(s) ended when it died, ` +
        `unless a service manager's descriptor store (systemd) keeps them until the next start adopts them; the journal cannot tell which, so whether they lasted until ${a.at} is unknown`,
    );
  } else if (a.crash !== undefined) {
    lines.push(
      `vmlockd on ${where} crashed between ${a.crash.after} and ${a.crash.before}: ${a.crash.holds.length} hold(s) ended at the crash, ` +
        `at a moment not journaled, so whether they lasted until ${a.at} is unknown (--timeline shows them "until crash")`,
    );
  }
  return lines.map((l) => `note: ${l}\n`).join('');
}

export function formatHolders(a: HoldersAnswer, format: Format): string {
  const { disk, at, holders } = a;
  return inFormat(
    format,
    a,
    () =>
      csvTable(
        HOLDER_COLUMNS,
        answerRows(a).map(({ holder: h, state, reading, note }) =>
          h === undefined
            ? [disk, at, '', '', '', '', '', '', '', '', '', '', state, reading, note]
            : [disk, at, h.owner.uuid, h.owner.name, h.host, h.mode, h.generation, h.since, h.resource, h.seq, h.via, h.as ?? '', state, reading, note],
        ),
      ),
    () => {
      // A hold journaled under another name of the disk (a lease's lock file) says which.
      const as = holders.some((h) => h.as !== undefined);
      return holders.length === 0
        ? `${a.ambiguous !== undefined ? `who held ${disk} at ${at} through this host is ambiguous` : `nobody held ${disk} at ${at} through this host`}\n${boundaryNote(a)}`
        : `${disk} at ${at}:\n` +
          table([
            ['VM', 'UUID', 'HOST', 'MODE', 'GEN', 'SINCE', 'LAST FACT', ...(as ? ['AS'] : [])],
            ...holders.map((h) => [h.owner.name ?? '-', h.owner.uuid, h.host, h.mode, h.generation === null ? '-' : String(h.generation), h.since, `${h.via} #${h.seq}`, ...(as ? [h.as ?? '-'] : [])]),
          ]) +
          boundaryNote(a);
    },
  );
}

/**
 * A timeline's interval is `incomplete` when a coalesced range of its owner (or of an owner not
 * journaled) meets it: the journal lacks some of its loss / re-take facts there (review31a HIGH 2: the
 * timeline CSV printed the intervals alone, unmarked).
 */
export function intervalState(i: { readonly owner: { readonly uuid: string }; readonly from: string; readonly to?: string }, incomplete: readonly CoalescedAt[] | undefined, end: string): string {
  const to = i.to ?? end;
  return (incomplete ?? []).some((c) => (c.owner === i.owner.uuid || c.owner === '?') && c.from <= to && c.to >= i.from) ? 'incomplete' : '';
}

/** The timeline CSV's rows for the coalesced ranges themselves: `end` "coalesced", `state` incomplete. */
export function coalescedCsvRows(disk: string, incomplete: readonly CoalescedAt[] | undefined): unknown[][] {
  return (incomplete ?? []).map((c) => [disk, c.owner, c.ownerName ?? '', '', c.from, c.to, 'coalesced', '', '', 'incomplete', `FactsDropped #${c.seq}: ${c.count > 0 ? c.count : 'some'} loss/re-take fact(s) coalesced`]);
}

/** A holding whose loss / re-take facts were coalesced on a full disk (FactsDropped `coalesced`, aud31), in one line. */
export function coalescedText(c: CoalescedAt, where: string, so: string): string {
  return (
    `the journal's disk was full on ${where}; ${c.count > 0 ? c.count : 'some'} loss/re-take fact(s) of ${c.owner === '?' && c.ownerName === undefined ? 'a lock (owner not journaled' : `${c.ownerName ?? c.owner}'s lock (${c.owner.slice(0, 8)}`}, ${c.resource}) between ${c.from} and ${c.to} were coalesced ` +
    `(FactsDropped #${c.seq}: the last loss and re-take stand for them): ${so}`
  );
}

function readingText(r: Reading): string {
  const held = r.holders.map((h) => `${h.owner.name ?? h.owner.uuid} (${h.owner.uuid.slice(0, 8)}, ${h.mode}, since ${h.since}${h.sinceClock !== undefined ? ` when the clock read ${h.sinceClock}` : ''}, ${h.via} #${h.seq})`);
  const why = r.stopped !== undefined ? 'the daemon was stopped' : r.crash !== undefined ? `unknown: the daemon crashed between ${r.crash.after} and ${r.crash.before}` : 'nobody';
  return held.length > 0 ? held.join(', ') : why;
}

/**
 * A step back of a host's clock that meets the window asked about, for stderr: the facts' times there
 * are labels on the journal's order (decision 0029).
 */
export function clockStepNote(f: StoredFact, where = 'this host', bothPasses = true): string {
  const p = f.payload as { from?: string; to?: string };
  return (
    `vmlockd: note: the clock on ${where} stepped back (ClockStepped #${f.seq}: it had reached ${p.from}, then read ${p.to}): ` +
    `its facts until its clock passed ${p.from} again are given at ${p.from}, in journal order, with the clock's reading in their detail (wallAt); ` +
    `times from ${p.to} to ${p.from} came twice there${bothPasses ? ', and a list up to such a time has the facts of both passes' : ', and this answer goes by the times given (the one-host audit of that host also lists by its clock\'s reading)'}\n`
  );
}

/** The text chart: one line per VM, one column per slice of the window. */
export function formatTimeline(t: Timeline, width: number): string {
  const t0 = Date.parse(t.from);
  const t1 = Math.max(Date.parse(t.to), t0 + 1);
  const names = new Map<string, string>();
  for (const i of t.intervals) names.set(i.owner.uuid, i.owner.name ? `${i.owner.name} (${i.owner.uuid.slice(0, 8)})` : i.owner.uuid);
  for (const e of t.events) if (!names.has(e.owner.uuid)) names.set(e.owner.uuid, e.owner.name ? `${e.owner.name} (${e.owner.uuid.slice(0, 8)})` : e.owner.uuid);
  const head = `${t.disk}, ${t.from} .. ${t.to}\n`;
  if (names.size === 0) return `${head}nobody held or asked for this disk in that window\n`;
  const label = Math.min(36, Math.max(...[...names.values()].map((n) => n.length)));
  const cols = Math.max(10, width - label - 3);
  const slot = (t1 - t0) / cols;
  const col = (iso: string) => Math.min(cols - 1, Math.max(0, Math.floor((Date.parse(iso) - t0) / slot)));
  const lines: string[] = [];
  for (const [uuid, name] of names) {
    const cells = Array<string>(cols).fill(' ');
    for (const i of t.intervals) {
      if (i.owner.uuid !== uuid) continue;
      const a = Date.parse(i.from) < t0 ? 0 : col(i.from);
      const b = i.to === undefined ? cols - 1 : col(i.to);
      for (let c = a; c <= b; c++) cells[c] = i.mode === 'shared' ? '▒' : '█';
      // Until a crash: held surely until `to`, then ended at a moment between it and crashBefore.
      if (i.end === 'crash' && i.crashBefore !== undefined) for (let c = b + 1; c <= col(i.crashBefore); c++) if (cells[c] === ' ') cells[c] = '?';
    }
    for (const e of t.events) if (e.owner.uuid === uuid) cells[col(e.at)] = e.kind === 'LeaseLost' ? '!' : 'x';
    lines.push(`${name.slice(0, label).padEnd(label)} |${cells.join('')}|`);
  }
  const start = t.from.slice(0, 19) + 'Z';
  const end = t.to.slice(0, 19) + 'Z';
  const axis = `${''.padEnd(label)} |${start}${end.padStart(Math.max(0, cols - start.length))}|`;
  const scale = `1 column = ${humanMs(slot)}`;
  const notes = (t.incomplete ?? []).map((c) => `note: ${coalescedText(c, 'this host', 'its bars there are not the whole story')}\n`).join('');
  return `${head}${axis}\n${lines.join('\n')}\n${''.padEnd(label)}  █ exclusive  ▒ shared  ? until a crash in between  x refused  ! lease lost  (${scale})\n${notes}`;
}

export function humanMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}
