// vmlockd's configuration: the keys, their defaults and checks, merging of files and flags,
// where each value came from, the fingerprint hosts compare, and how two configs differ.
//
// Sources, later wins: embedded defaults < conf files in the order given < command-line flags.
// Relative paths (in files or flags) are resolved against the process cwd at load time, NOT
// against the conf file's directory: that is what a flag like `--state-dir ./var` means, and one
// rule for both keeps `vmlockd config show` and the running daemon in agreement.
// A missing or unreadable file is a problem, never "use the defaults": silently falling back to
// the default lockspace would make this host name disks differently from the rest of the cluster.

import { createHash } from 'node:crypto';
import { closeSync, constants as fsc, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { VmlockdError, fileKind } from '../engine/errors.js';
import { installLayout, type InstallLayout } from '../install-layout.js';
import { describeValue, formatProblem, parseConf, renderValue, type ConfValue } from './conf-syntax.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error';
export type OnConflict = 'report' | 'suspend';

export interface Config {
  hostId: string;
  stateDir: string;
  socket: string;
  journal: string;
  /** null: direct mode, lock the disk image itself (conf: file_lockspace_dir = ""). */
  fileLockspaceDir: string | null;
  lvmLockspaceDir: string | null;
  scsiLockspaceDir: string | null;
  autoDiskLeases: boolean;
  requireLeaseForDisks: boolean;
  maxClients: number;
  logLevel: LogLevel;
  /** Log lines on stderr: `text` (time level message fields) or `json` (one object a line). Under systemd the journal's native protocol is used either way (docs/operations.md). */
  logFormat: 'text' | 'json';
  virtlockdSocket: string | null;
  libvirtUri: string | null;
  onConflict: OnConflict;
  verifyIntervalMs: number;
  metricsAddress: string | null;
  /** After a reboot: release (default) or retake the locks of owners no live process stands for (control API, JSON lines). */
  afterReboot: 'release' | 'retake';
  /**
   * Who creates a lockspace (its `.vmlockd-lockspace-id`) that this host never knew: `auto` (default)
   * the daemon's first start, `explicit` only `vmlockd lockspace init DIR` (a cluster filesystem's
   * bare mount point is then never mistaken for a new lockspace, even by a first start). A lockspace
   * this host knew is never created again either way (docs/decisions/0015).
   */
  lockspaceInit: 'auto' | 'explicit';
  /**
   * What a reply waits for: `fdatasync` (default) the journal's staging file is on disk, so an
   * acknowledged lock survives the state directory's filesystem failing; `write` only in the
   * kernel (survives the process; a filesystem failure can lose the last seconds). See decision 0002.
   */
  journalSync: 'fdatasync' | 'write';
  /**
   * Copy this host's journal (facts and hash chain) into `<file_lockspace_dir>/.journal/<host_id>/`
   * for `audit --cluster` (docs/decisions/0016). Off the request path; nothing to do in direct mode.
   */
  publish: boolean;
  /** Published segments are sealed and a new one begun at this size. */
  publishSegmentBytes: number;
  /** Published segments whose facts are all older than this many days are pruned by this daemon; 0 keeps all. */
  publishRetainDays: number;
}

export type ConfigKey = keyof Config;

/** What a flag may carry. Values are in the conf file's units (verifyIntervalMs takes seconds, like verify_interval). */
export type FlagValue = string | number | boolean | null;
export type ConfigFlags = Partial<Record<ConfigKey, FlagValue>>;

export interface LoadedConfig {
  config: Config;
  /** Per key: "default", "/etc/libvirt/qemu-lockd.conf:12" or the flag, e.g. "--lockspace". */
  sources: Record<ConfigKey, string>;
  /** The files read, resolved to absolute paths, in merge order. */
  files: string[];
  /** virtlockd keys accepted for compatibility and checked, but without effect (log_filters, ...). */
  unused: Array<{ key: string; value: string; source: string }>;
}

export interface ConfigProblem {
  /** The file, or the flag, the problem is in. */
  readonly file: string;
  readonly line?: number;
  readonly message: string;
}

export class ConfigError extends VmlockdError {
  readonly problems: readonly ConfigProblem[];
  constructor(problems: readonly ConfigProblem[]) {
    super('VMLOCKD_ERR_CONFIG', problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

// ---------------------------------------------------------------------------------------------
// The key table: the one place that maps conf-file names to Config fields and flags.

/** A value on its way in: from a conf file, or a flag turned into the same shapes. */
type Raw = ConfValue | { readonly type: 'null' } | { readonly type: 'boolean'; readonly value: boolean };
type Check<T> = { ok: true; value: T } | { ok: false; expected: string };

interface KeySpec<K extends ConfigKey = ConfigKey> {
  readonly key: K;
  /** The name operators write in conf files and read in messages. */
  readonly conf: string;
  readonly flag: string;
  readonly check: (raw: Raw, cwd: string) => Check<Config[K]>;
  /** Defaults may depend on keys listed before them in KEY_SPECS, and on the install layout (null: a checkout). */
  readonly fallback: (earlier: Partial<Config>, cwd: string, layout: InstallLayout | null) => Config[K];
  readonly toConf: (value: Config[K]) => ConfValue;
}

const str = (value: string): ConfValue => ({ type: 'string', value });
const int = (value: number): ConfValue => ({ type: 'integer', value, raw: String(value) });
const orEmpty = (value: string | null): ConfValue => str(value ?? '');

function checkString(raw: Raw, expected: string, valid: (s: string) => boolean): Check<string> {
  return raw.type === 'string' && valid(raw.value) ? { ok: true, value: raw.value } : { ok: false, expected };
}

function checkPath(raw: Raw, cwd: string): Check<string> {
  const s = checkString(raw, 'a "string" holding a non-empty path', (v) => v !== '' && !v.includes('\0'));
  return s.ok ? { ok: true, value: resolve(cwd, s.value) } : s;
}

/** "" (or a null flag) switches the setting off. */
function checkOptionalPath(raw: Raw, cwd: string): Check<string | null> {
  if (raw.type === 'null' || (raw.type === 'string' && raw.value === '')) return { ok: true, value: null };
  const s = checkString(raw, 'a "string" holding a path, or "" for none', (v) => !v.includes('\0'));
  return s.ok ? { ok: true, value: resolve(cwd, s.value) } : s;
}

function checkOptionalString(raw: Raw, expected: string, valid: (s: string) => boolean): Check<string | null> {
  if (raw.type === 'null' || (raw.type === 'string' && raw.value === '')) return { ok: true, value: null };
  return checkString(raw, `${expected}, or "" for none`, valid);
}

/** libvirt's booleans are the unsigned integers 0 and 1; flags may also say true/false. */
function checkBool(raw: Raw): Check<boolean> {
  if (raw.type === 'boolean') return { ok: true, value: raw.value };
  if (raw.type === 'integer' && !raw.raw.startsWith('-') && (raw.value === 0 || raw.value === 1)) {
    return { ok: true, value: raw.value === 1 };
  }
  return { ok: false, expected: '0 or 1' };
}

function checkInt(raw: Raw, min: number, max: number): Check<number> {
  if (raw.type === 'integer' && raw.value >= min && raw.value <= max) return { ok: true, value: raw.value };
  return { ok: false, expected: `an integer from ${min} to ${max}` };
}

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warning', 'error'];

function checkLogLevel(raw: Raw): Check<LogLevel> {
  if (raw.type === 'integer' && raw.value >= 1 && raw.value <= 4) return { ok: true, value: LOG_LEVELS[raw.value - 1]! };
  if (raw.type === 'string' && (LOG_LEVELS as readonly string[]).includes(raw.value)) {
    return { ok: true, value: raw.value as LogLevel };
  }
  return { ok: false, expected: '1 (debug), 2 (info), 3 (warning) or 4 (error)' };
}

const HOST_ID = /^[^\s\0-\x1f\x7f/]{1,255}$/u;
const HOST_PORT = /^(?:[^\s:]*|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$/;
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:\S*$/;

const VERIFY_MAX_S = 86_400;
/** Segment sizes: small enough for tests of the rotation, at most 1 GiB (a reader re-reads one whole segment at most). */
const PUBLISH_SEGMENT_MIN = 4096;
const PUBLISH_SEGMENT_MAX = 1024 * 1024 * 1024;
/** publish_retain_days: at most 100 years (0 keeps every segment). */
const PUBLISH_RETAIN_MAX_DAYS = 36_500;

const spec = <K extends ConfigKey>(s: KeySpec<K>): KeySpec<K> => s;

const KEY_SPECS = [
  spec({
    key: 'hostId',
    conf: 'host_id',
    flag: '--host-id',
    check: (raw) => checkString(raw, 'a "string" of 1 to 255 characters without blanks or "/"', (v) => HOST_ID.test(v)),
    fallback: () => hostname(),
    toConf: str,
  }),
  spec({
    key: 'stateDir',
    conf: 'state_dir',
    flag: '--state-dir',
    check: checkPath,
    // A checkout: ./var of the working directory; the installed package: /var/lib/vmlockd.
    fallback: (_, cwd, layout) => layout?.stateDir ?? resolve(cwd, 'var'),
    toConf: str,
  }),
  spec({
    key: 'socket',
    conf: 'socket',
    flag: '--socket',
    check: checkPath,
    // Installed: /run/vmlockd/vmlockd.sock (vmlockd.socket's path) while state_dir is the package's.
    fallback: (c, _, layout) => (layout !== null && c.stateDir === layout.stateDir ? join(layout.runtimeDir, 'vmlockd.sock') : join(c.stateDir!, 'vmlockd.sock')),
    toConf: str,
  }),
  spec({
    key: 'journal',
    conf: 'journal',
    flag: '--journal',
    check: checkPath,
    fallback: (c) => join(c.stateDir!, 'journal.db'),
    toConf: str,
  }),
  spec({
    key: 'fileLockspaceDir',
    conf: 'file_lockspace_dir',
    flag: '--lockspace',
    check: checkOptionalPath,
    fallback: (c) => join(c.stateDir!, 'lockspace'),
    toConf: orEmpty,
  }),
  spec({
    key: 'lvmLockspaceDir',
    conf: 'lvm_lockspace_dir',
    flag: '--lvm-lockspace-dir',
    check: checkOptionalPath,
    fallback: () => null,
    toConf: orEmpty,
  }),
  spec({
    key: 'scsiLockspaceDir',
    conf: 'scsi_lockspace_dir',
    flag: '--scsi-lockspace-dir',
    check: checkOptionalPath,
    fallback: () => null,
    toConf: orEmpty,
  }),
  spec({
    key: 'autoDiskLeases',
    conf: 'auto_disk_leases',
    flag: '--auto-disk-leases',
    check: checkBool,
    fallback: () => true,
    toConf: (v) => int(v ? 1 : 0),
  }),
  spec({
    key: 'requireLeaseForDisks',
    conf: 'require_lease_for_disks',
    flag: '--require-lease-for-disks',
    check: checkBool,
    // libvirt: without automatic leases, a disk without an explicit <lease> is refused by default.
    fallback: (c) => !c.autoDiskLeases,
    toConf: (v) => int(v ? 1 : 0),
  }),
  spec({
    key: 'maxClients',
    conf: 'max_clients',
    flag: '--max-clients',
    check: (raw) => checkInt(raw, 1, 1_000_000),
    fallback: () => 1024,
    toConf: int,
  }),
  spec({
    key: 'logLevel',
    conf: 'log_level',
    flag: '--log-level',
    check: checkLogLevel,
    fallback: (): LogLevel => 'warning',
    toConf: (v) => int(LOG_LEVELS.indexOf(v) + 1),
  }),
  spec({
    key: 'logFormat',
    conf: 'log_format',
    flag: '--log-format',
    check: (raw): Check<'text' | 'json'> =>
      raw.type === 'string' && (raw.value === 'text' || raw.value === 'json') ? { ok: true, value: raw.value } : { ok: false, expected: '"text" or "json"' },
    fallback: (): 'text' | 'json' => 'text',
    toConf: str,
  }),
  spec({
    key: 'virtlockdSocket',
    conf: 'virtlockd_socket',
    flag: '--virtlockd-socket',
    check: checkOptionalPath,
    fallback: () => null,
    toConf: orEmpty,
  }),
  spec({
    key: 'libvirtUri',
    conf: 'libvirt_uri',
    flag: '--libvirt-uri',
    check: (raw) => checkOptionalString(raw, 'a "string" URI such as "qemu:///system"', (v) => URI.test(v)),
    fallback: () => null,
    toConf: orEmpty,
  }),
  spec({
    key: 'onConflict',
    conf: 'on_conflict',
    flag: '--on-conflict',
    check: (raw): Check<OnConflict> =>
      raw.type === 'string' && (raw.value === 'report' || raw.value === 'suspend')
        ? { ok: true, value: raw.value }
        : { ok: false, expected: '"report" or "suspend"' },
    fallback: (): OnConflict => 'report',
    toConf: str,
  }),
  spec({
    key: 'afterReboot',
    conf: 'after_reboot',
    flag: '--after-reboot',
    check: (raw): Check<'release' | 'retake'> =>
      raw.type === 'string' && (raw.value === 'release' || raw.value === 'retake')
        ? { ok: true, value: raw.value }
        : { ok: false, expected: '"release" or "retake"' },
    fallback: (): 'release' | 'retake' => 'release',
    toConf: str,
  }),
  spec({
    key: 'lockspaceInit',
    conf: 'lockspace_init',
    flag: '--lockspace-init',
    check: (raw): Check<'auto' | 'explicit'> =>
      raw.type === 'string' && (raw.value === 'auto' || raw.value === 'explicit') ? { ok: true, value: raw.value } : { ok: false, expected: '"auto" or "explicit"' },
    fallback: (): 'auto' | 'explicit' => 'auto',
    toConf: str,
  }),
  spec({
    key: 'journalSync',
    conf: 'journal_sync',
    flag: '--journal-sync',
    check: (raw): Check<'fdatasync' | 'write'> =>
      raw.type === 'string' && (raw.value === 'fdatasync' || raw.value === 'write')
        ? { ok: true, value: raw.value }
        : { ok: false, expected: '"fdatasync" or "write"' },
    fallback: (): 'fdatasync' | 'write' => 'fdatasync',
    toConf: str,
  }),
  spec({
    key: 'verifyIntervalMs',
    conf: 'verify_interval',
    flag: '--verify-interval',
    check: (raw) => {
      const s = checkInt(raw, 1, VERIFY_MAX_S);
      return s.ok ? { ok: true, value: s.value * 1000 } : { ok: false, expected: `${s.expected} (seconds)` };
    },
    fallback: () => 10_000,
    toConf: (v) => int(v / 1000),
  }),
  spec({
    key: 'publish',
    conf: 'publish',
    flag: '--publish',
    check: checkBool,
    fallback: () => true,
    toConf: (v) => int(v ? 1 : 0),
  }),
  spec({
    key: 'publishSegmentBytes',
    conf: 'publish_segment_bytes',
    flag: '--publish-segment-bytes',
    check: (raw) => checkInt(raw, PUBLISH_SEGMENT_MIN, PUBLISH_SEGMENT_MAX),
    fallback: () => 8 * 1024 * 1024,
    toConf: int,
  }),
  spec({
    key: 'publishRetainDays',
    conf: 'publish_retain_days',
    flag: '--publish-retain-days',
    check: (raw) => checkInt(raw, 0, PUBLISH_RETAIN_MAX_DAYS),
    fallback: () => 90,
    toConf: int,
  }),
  spec({
    key: 'metricsAddress',
    conf: 'metrics_address',
    flag: '--metrics-address',
    check: (raw) =>
      checkOptionalString(raw, 'a "string" host:port such as "127.0.0.1:9477"', (v) => {
        const m = HOST_PORT.exec(v);
        return m !== null && Number(m[1]) <= 65535;
      }),
    fallback: () => null,
    toConf: orEmpty,
  }),
] as const;

// Compile-time check that the table names every Config field (distinctness: config.unit.ts).
type TableKeys = (typeof KEY_SPECS)[number]['key'];
const _everyKeyInTable: Record<Exclude<ConfigKey, TableKeys>, never> = {};
void _everyKeyInTable;

const SPEC_BY_KEY = new Map<ConfigKey, KeySpec>(KEY_SPECS.map((s) => [s.key, s as unknown as KeySpec]));
const SPEC_BY_CONF = new Map<string, KeySpec>(KEY_SPECS.map((s) => [s.conf, s as unknown as KeySpec]));

/** virtlockd.conf keys that vmlockd checks and accepts, but that change nothing. */
const UNUSED_KEYS: ReadonlyMap<string, (raw: Raw) => Check<unknown>> = new Map<string, (raw: Raw) => Check<unknown>>([
  ['log_filters', (raw: Raw) => checkString(raw, 'a "string"', () => true)],
  ['log_outputs', (raw: Raw) => checkString(raw, 'a "string"', () => true)],
  ['admin_max_clients', (raw: Raw) => checkInt(raw, 0, 1_000_000)],
]);

export const CONFIG_KEYS: readonly ConfigKey[] = KEY_SPECS.map((s) => s.key);

/** The conf-file name of a Config field, for every message an operator reads. */
export function confName(key: ConfigKey): string {
  return SPEC_BY_KEY.get(key)!.conf;
}

export function flagName(key: ConfigKey): string {
  return SPEC_BY_KEY.get(key)!.flag;
}

export const LIVE_KEYS: ReadonlySet<ConfigKey> = new Set<ConfigKey>([
  'logLevel',
  'logFormat',
  'onConflict',
  'verifyIntervalMs',
  'maxClients',
  'libvirtUri',
  'lockspaceInit',
  // Publication is a copy for readers, not a lock: on, off, or another segment size at any time.
  'publish',
  'publishSegmentBytes',
  'publishRetainDays',
]);

export const LOCK_RELEVANT_KEYS: ReadonlySet<ConfigKey> = new Set<ConfigKey>([
  'fileLockspaceDir',
  'lvmLockspaceDir',
  'scsiLockspaceDir',
  'autoDiskLeases',
  'requireLeaseForDisks',
  'hostId',
  'stateDir',
  'journal',
]);

/** The naming rules every host of a cluster must share; host-specific settings stay out. */
const FINGERPRINT_KEYS: readonly ConfigKey[] = [
  'fileLockspaceDir',
  'lvmLockspaceDir',
  'scsiLockspaceDir',
  'autoDiskLeases',
  'requireLeaseForDisks',
];

/** Keys a live reload never takes from their default: they decide how (and where) disks are locked. */
const NAMING_KEYS: ReadonlySet<ConfigKey> = new Set(FINGERPRINT_KEYS);


// ---------------------------------------------------------------------------------------------
// Loading

/** A conf file's text, or why it could not be read. */
export type ConfSource = { readonly file: string; readonly text: string } | { readonly file: string; readonly readError: string };

/**
 * Reads the files (relative to `cwd`) and merges them; throws ConfigError listing every problem.
 * Installed (an install-layout marker next to dist/, src/install-layout.ts): the system defaults, and
 * with no files given the package's config file if it exists (`layout: null` forces a checkout's).
 */
export function loadConfig(opts: { files: readonly string[]; flags: ConfigFlags; cwd?: string; layout?: InstallLayout | null }): LoadedConfig {
  const cwd = opts.cwd ?? process.cwd();
  const layout = opts.layout !== undefined ? opts.layout : installLayout();
  return buildConfig(readSources(defaultFiles(opts.files, layout), cwd), opts.flags, cwd, layout);
}

/** The files to read: those given, else the installed package's config file when it exists (a conffile an operator may delete). */
export function defaultFiles(files: readonly string[], layout: InstallLayout | null): readonly string[] {
  if (files.length > 0 || layout === null) return files;
  return existsSync(layout.configFile) ? [layout.configFile] : [];
}

/** The pure half of loadConfig: texts in, config out. */
export function buildConfig(sources: readonly ConfSource[], flags: ConfigFlags, cwd: string, layout: InstallLayout | null = null): LoadedConfig {
  const result = collect(sources, flags, cwd, layout);
  if (result.loaded === null) throw new ConfigError(result.problems);
  return result.loaded;
}

/** For `vmlockd config check`: every problem in the files, without flags. */
export function checkConfigFiles(files: readonly string[]): { ok: boolean; problems: string[] } {
  const cwd = process.cwd();
  const { problems } = collect(readSources(files, cwd), {}, cwd);
  return { ok: problems.length === 0, problems: problems.map(formatProblem) };
}

function readSources(files: readonly string[], cwd: string): ConfSource[] {
  return files.map((f) => readConfFile(resolve(cwd, f)).source);
}

/** A config file larger than this is refused: a config is a few KiB; a multi-GiB file or /dev/zero must not be read whole. */
export const MAX_CONF_BYTES = 1024 * 1024;

/** What a config file was when read: its text (or why not) and a stamp that changes when the file does. */
export interface ConfRead {
  readonly source: ConfSource;
  /** dev:ino:size:mtime:ctime of the file read (or the error): two equal stamps and texts mean it did not change between. */
  readonly stamp: string;
}

/**
 * Reads one config file without ever blocking on it: opened non-blocking (a FIFO opens at once
 * without a writer), then anything but a regular file of at most MAX_CONF_BYTES is refused with a
 * message naming what it is. A FIFO, a socket, /dev/zero or a device behind a symlink would
 * otherwise hang the event loop (every request, and SIGTERM) or fill the memory.
 */
export function readConfFile(file: string): ConfRead {
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    return { source: { file, readError: code }, stamp: `error:${code}` };
  }
  try {
    const st = fstatSync(fd);
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (!st.isFile()) return { source: { file, readError: `${fileKind(st)}, not a regular file; a config file must be a regular file` }, stamp };
    if (st.size > MAX_CONF_BYTES) return { source: { file, readError: tooLarge(st.size) }, stamp };
    const buf = Buffer.alloc(MAX_CONF_BYTES + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      // It grew while being read: judged by what it is now, not by its first MiB.
      if (n > MAX_CONF_BYTES) return { source: { file, readError: tooLarge(n) }, stamp };
    }
    return { source: { file, text: buf.toString('utf8', 0, n) }, stamp };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    return { source: { file, readError: code }, stamp: `error:${code}` };
  } finally {
    closeSync(fd);
  }
}

function tooLarge(size: number): string {
  return `${size} bytes or more, larger than the ${MAX_CONF_BYTES} bytes a config file may have`;
}

interface Setting {
  value: unknown;
  source: string;
}

function collect(
  inputs: readonly ConfSource[],
  flags: ConfigFlags,
  cwd: string,
  layout: InstallLayout | null = null,
): { loaded: LoadedConfig | null; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const explicit = new Map<ConfigKey, Setting>();
  const unused = new Map<string, { value: string; source: string }>();

  for (const source of inputs) {
    const file = source.file;
    if ('readError' in source) {
      problems.push({ file, message: `cannot read the file (${source.readError})` });
      continue;
    }
    const parsed = parseConf(source.text, file);
    const seen = new Map<string, number>();
    for (const entry of parsed.entries) {
      const at = { file, line: entry.line };
      const first = seen.get(entry.key);
      if (first !== undefined) {
        // libvirt silently uses the first of two; an operator appending a line expects the last.
        problems.push({ ...at, message: `duplicate key "${entry.key}" (already set at line ${first}); keep one` });
        continue;
      }
      seen.set(entry.key, entry.line);
      const s = SPEC_BY_CONF.get(entry.key);
      if (s !== undefined) {
        const c = s.check(entry.value, cwd);
        if (c.ok) explicit.set(s.key, { value: c.value, source: `${file}:${entry.line}` });
        else problems.push({ ...at, message: wrongValue(s.conf, c.expected, entry.value) });
        continue;
      }
      const unusedCheck = UNUSED_KEYS.get(entry.key);
      if (unusedCheck !== undefined) {
        const c = unusedCheck(entry.value);
        if (c.ok) unused.set(entry.key, { value: renderValue(entry.value), source: `${file}:${entry.line}` });
        else problems.push({ ...at, message: wrongValue(entry.key, c.expected, entry.value) });
        continue;
      }
      problems.push({ ...at, message: unknownKey(entry.key) });
    }
    if (parsed.error !== null) problems.push(parsed.error);
  }

  for (const [key, flagValue] of Object.entries(flags) as Array<[string, FlagValue | undefined]>) {
    if (flagValue === undefined) continue;
    const s = SPEC_BY_KEY.get(key as ConfigKey);
    if (s === undefined) {
      problems.push({ file: 'command line', message: `unknown setting "${key}"` });
      continue;
    }
    const candidates = flagCandidates(flagValue);
    const c = candidates.map((raw) => s.check(raw, cwd)).find((r) => r.ok) ?? s.check(candidates.at(-1)!, cwd);
    if (c.ok) explicit.set(s.key, { value: c.value, source: s.flag });
    else problems.push({ file: 'command line', message: wrongValue(s.flag, c.expected, candidates.at(-1)!) });
  }

  if (problems.length > 0) return { loaded: null, problems };

  const config: Partial<Config> = {};
  const sources = {} as Record<ConfigKey, string>;
  for (const s of KEY_SPECS as readonly KeySpec[]) {
    const set = explicit.get(s.key);
    const value = set !== undefined ? set.value : s.fallback(config, cwd, layout);
    (config as Record<string, unknown>)[s.key] = value;
    sources[s.key] = set?.source ?? 'default';
  }
  // The host name is the one default not chosen by us; an odd one must not reach lock records.
  const host = checkString(str(config.hostId!), 'usable as host_id', (v) => HOST_ID.test(v));
  if (!host.ok) problems.push({ file: 'default', message: `the host name ${JSON.stringify(config.hostId)} is not usable as host_id; set host_id` });
  if (problems.length > 0) return { loaded: null, problems };
  return {
    loaded: {
      config: config as Config,
      sources,
      files: inputs.map((s) => s.file),
      unused: [...unused].map(([key, v]) => ({ key, ...v })),
    },
    problems,
  };
}

/**
 * What a flag may mean, most specific first: the command line hands over text, so "5" may be the
 * integer 5 (max_clients) or the string "5" (host_id); the key's own check picks.
 */
function flagCandidates(v: FlagValue): Raw[] {
  if (v === null) return [{ type: 'null' }];
  if (typeof v === 'boolean') return [{ type: 'boolean', value: v }];
  if (typeof v === 'number') {
    return [Number.isSafeInteger(v) ? { type: 'integer', value: v, raw: String(v) } : { type: 'string', value: String(v) }];
  }
  const text: Raw = { type: 'string', value: v };
  if (/^[+-]?[0-9]+$/.test(v) && Number.isSafeInteger(Number(v))) return [{ type: 'integer', value: Number(v), raw: v }, text];
  if (v === 'true' || v === 'false') return [{ type: 'boolean', value: v === 'true' }, text];
  return [text];
}

function describeRaw(raw: Raw): string {
  switch (raw.type) {
    case 'null':
      return 'null';
    case 'boolean':
      return `boolean ${raw.value}`;
    case 'string':
    case 'integer':
    case 'list':
      return describeValue(raw);
    default: {
      const _exhaustive: never = raw;
      return _exhaustive;
    }
  }
}

function wrongValue(name: string, expected: string, raw: Raw): string {
  return `${name} must be ${expected}, got ${describeRaw(raw)}`;
}

const KNOWN_CONF_NAMES: readonly string[] = [...SPEC_BY_CONF.keys(), ...UNUSED_KEYS.keys()];

function unknownKey(key: string): string {
  const near = nearestKey(key);
  return near === null ? `unknown key "${key}"` : `unknown key "${key}" (did you mean "${near}"?)`;
}

/** The known key closest in edit distance, when close enough to be a plausible typo. */
export function nearestKey(key: string): string | null {
  const squash = (s: string): string => s.toLowerCase().replace(/[_-]/g, '');
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const known of KNOWN_CONF_NAMES) {
    // "fileLockspaceDir" or "FILE_LOCKSPACE_DIR" are the right key in the wrong spelling.
    const d = squash(known) === squash(key) ? 0 : editDistance(key, known);
    if (d < bestDistance) {
      best = known;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

// ---------------------------------------------------------------------------------------------
// Comparing and showing

/** sha256 hex over the naming rules only: two hosts with equal fingerprints name every disk alike. */
/**
 * `lockspaceId`: the id stored in the file lockspace itself (see engine/locker-hosts.ts). With it, two
 * hosts that mount one shared lockspace at different paths agree, and two different directories at
 * the same path do not.
 */
export function fingerprint(config: Config, lockspaceId?: string): string {
  const value = (k: ConfigKey) => (k === 'fileLockspaceDir' && lockspaceId !== undefined && config.fileLockspaceDir !== null ? `lockspace-id:${lockspaceId}` : config[k]);
  const body = JSON.stringify(['vmlockd-naming/1', ...FINGERPRINT_KEYS.map((k) => [confName(k), value(k)])]);
  return createHash('sha256').update(body).digest('hex');
}

export function diffConfig(a: Config, b: Config): Array<{ key: ConfigKey; from: unknown; to: unknown }> {
  return CONFIG_KEYS.filter((k) => !Object.is(a[k], b[k])).map((key) => ({ key, from: a[key], to: b[key] }));
}

/** For `vmlockd config show`: valid conf syntax, one `key = value  # source` line per key. */
export function formatConfig(loaded: LoadedConfig): string {
  const lines = (KEY_SPECS as readonly KeySpec[]).map(
    (s) => `${s.conf} = ${renderValue(s.toConf(loaded.config[s.key]))}  # ${loaded.sources[s.key]}`,
  );
  for (const u of loaded.unused) lines.push(`${u.key} = ${u.value}  # ${u.source} (accepted for virtlockd, no effect)`);
  return lines.join('\n') + '\n';
}

/**
 * `vmlockd config show --defaults`, and the package's /etc/vmlockd/vmlockd.conf (generated from it at
 * build time): every key commented out with its default in this layout, in `config show`'s syntax
 * and order. host_id's default is the host name of the machine that runs it, so it is not written in.
 */
export function formatDefaults(layout: InstallLayout | null, cwd: string): string {
  const loaded = buildConfig([], { hostId: 'unused' }, cwd, layout);
  const head = [
    `# vmlockd's configuration${layout !== null ? ` (${layout.configFile})` : ''}: libvirt's conf syntax, see vmlockd.conf(5)`,
    '# and docs/configuration.md. Every key is shown commented out with its default; uncomment a line to',
    '# change it. `vmlockd config show` prints what is in effect, `vmlockd config check FILE` checks a file,',
    '# `systemctl reload vmlockd` applies the keys that may change live.',
    '',
  ];
  const lines = (KEY_SPECS as readonly KeySpec[]).map((s) =>
    s.key === 'hostId'
      ? `#${s.conf} = ""  # default: this machine's host name (hostname); unique in the lockspace`
      : `#${s.conf} = ${renderValue(s.toConf(loaded.config[s.key]))}  # default`,
  );
  return [...head, ...lines].join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Which changes a running daemon may take

export type ConfigDiff = ReturnType<typeof diffConfig>;

const WHY_LOCK_RELEVANT: Readonly<Partial<Record<ConfigKey, string>>> = {
  fileLockspaceDir: 'it decides which lock file stands for each disk, so held disks could be locked again under another name',
  lvmLockspaceDir: 'it decides which lock file stands for each LVM disk, so held disks could be locked again under another name',
  scsiLockspaceDir: 'it decides which lock file stands for each SCSI disk, so held disks could be locked again under another name',
  autoDiskLeases: 'it decides which disks get locks, so held locks would no longer match the rule',
  requireLeaseForDisks: 'it decides which disks get locks, so held locks would no longer match the rule',
  hostId: 'held locks are recorded under the current host id, and other hosts name their holder by it',
  stateDir: 'the journal that records the held locks lives there',
  journal: 'the held locks are recorded in the current journal',
};

/**
 * Splits a diff into what a running daemon may apply now and what it must refuse, with a reason
 * an operator can act on. Pure; the daemon decides what to do with the answer.
 */
/**
 * Where a source stands in the merge order: 0 the default, 1.. the files in the order given, above
 * them the flags; undefined for a source not recognized (then no precedence rule is applied).
 */
function precedence(source: string, files: readonly string[]): number | undefined {
  if (source === 'default') return 0;
  if (source.startsWith('--')) return files.length + 1;
  const m = /^(.*):\d+$/.exec(source);
  const i = m ? files.indexOf(m[1]!) : -1;
  return i >= 0 ? i + 1 : undefined;
}

/** "/etc/vmlockd/site.conf:3" -> "/etc/vmlockd/site.conf"; a flag or "default" as it is. */
function sourceFile(source: string): string {
  return /^(.*):\d+$/.exec(source)?.[1] ?? source;
}

/**
 * `sources`: where each key of the new config comes from. `before`: where each key of the running
 * config came from, and the files in merge order. A naming key whose new value comes from a source
 * of lower precedence than its running value's (an earlier --config file, or the default) changed
 * only because the line that set it disappeared: refused, locks held or not (decision 0022).
 */
export function classifyChange(
  diff: ConfigDiff,
  locksHeld: boolean,
  sources?: Readonly<Record<ConfigKey, string>>,
  before?: { readonly sources: Readonly<Record<ConfigKey, string>>; readonly files: readonly string[] },
): { apply: ConfigDiff; refuse: Array<{ key: ConfigKey; reason: string }> } {
  const apply: ConfigDiff = [];
  const refuse: Array<{ key: ConfigKey; reason: string }> = [];
  for (const d of diff) {
    const name = confName(d.key);
    const was = before?.sources[d.key];
    const now = sources?.[d.key];
    const wasRank = was !== undefined && before ? precedence(was, before.files) : undefined;
    const nowRank = now !== undefined && before ? precedence(now, before.files) : undefined;
    if (NAMING_KEYS.has(d.key) && was !== undefined && now !== undefined && now !== 'default' && wasRank !== undefined && nowRank !== undefined && nowRank < wasRank) {
      // The line in the later file is gone (caught half-written, a template that lost it, a removed
      // override): the value falls back to an earlier file's, e.g. a host-local lockspace no other
      // host sees. Never on the evidence of a missing line; locks held or not (docs/decisions/0022).
      refuse.push({
        key: d.key,
        reason:
          `${name} is no longer set by ${sourceFile(was)} (a file read half-written, or its line removed), so it would fall back to ${JSON.stringify(d.to)} from ${now}; ` +
          `a live reload never moves a lockspace or naming rule because the line that set it disappeared: set ${name} in ${sourceFile(was)} again (with the new value to change it live), ` +
          `or restart to take the value from ${sourceFile(now)}`,
      });
    } else if (NAMING_KEYS.has(d.key) && now === 'default') {
      // The key's line is gone (a file caught half-written, a template that lost it, a removed
      // override): its value would fall back to the default, e.g. a local <state_dir>/lockspace no
      // other host sees. Never on the evidence of a missing line; locks held or not (docs/decisions/0022).
      refuse.push({
        key: d.key,
        reason:
          `${name} is no longer set in the config files${was !== undefined && was !== 'default' ? ` (${sourceFile(was)} set it)` : ''} (a file read half-written, or its line removed), so it would fall back to its default ${JSON.stringify(d.to)}; ` +
          `a live reload never moves a lockspace or naming rule to a default it does not name: set ${name} explicitly (e.g. ${name} = ${renderValue(SPEC_BY_KEY.get(d.key)!.toConf(d.to as never))}), or restart to take the default`,
      });
    } else if (LIVE_KEYS.has(d.key)) apply.push(d);
    else if (LOCK_RELEVANT_KEYS.has(d.key)) {
      if (!locksHeld) apply.push(d);
      else
        refuse.push({
          key: d.key,
          reason:
            `${name} changed while locks are held: ${WHY_LOCK_RELEVANT[d.key] ?? 'it decides how locks are named'}; ` +
            'it takes effect at the next start when no locks are held; release all locks (vmlockd locks) and restart',
        });
    } else refuse.push({ key: d.key, reason: `${name} changed: needs a restart to take effect` });
  }
  return { apply, refuse };
}
