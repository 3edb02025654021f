// `vmlockd config show`: with a daemon answering on the socket, the configuration in effect in that
// daemon (flags, live reloads and refusals included), each key marked where the files say otherwise;
// without one, what the files and flags give.
import { call } from './client.js';
import { CONFIG_KEYS, diffConfig, formatConfig, loadConfig, type Config, type ConfigFlags, type ConfigKey, type LoadedConfig } from '../watchers/config.js';

const STATUS_TIMEOUT_MS = 2000;

export interface ShownConfig {
  /** "daemon": the running daemon's effective config; "files": no daemon answered. */
  readonly from: 'daemon' | 'files';
  readonly pid?: number;
  readonly config: Config;
  /** Per key, where its value comes from. */
  readonly sources: Record<ConfigKey, string>;
  /** The config files compared against. */
  readonly files: readonly string[];
  /** Keys whose value in the daemon differs from what the files (and given flags) say now. */
  readonly differences: Array<{ key: ConfigKey; inEffect: unknown; files: unknown; filesSource: string }>;
  /** The files could not be read or parsed now (the daemon keeps its config). */
  readonly filesError?: string;
}

async function daemonStatus(socket: string): Promise<Record<string, unknown> | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), STATUS_TIMEOUT_MS)));
    const r = await Promise.race([call(socket, 'GET', '/v1/status'), timeout]);
    if (r === undefined || r.status !== 200) return undefined;
    const body = r.body as Record<string, unknown> | null;
    return body !== null && typeof body.config === 'object' && body.config !== null ? body : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

export async function showConfig(opts: { socket: string; files?: readonly string[]; flags: ConfigFlags }): Promise<ShownConfig> {
  const status = await daemonStatus(opts.socket);
  if (status === undefined) {
    const loaded = loadConfig({ files: opts.files ?? [], flags: opts.flags });
    return { from: 'files', config: loaded.config, sources: loaded.sources, files: loaded.files, differences: [] };
  }
  const config = status.config as Config;
  const startSources = (status.configSources ?? {}) as Partial<Record<ConfigKey, string>>;
  const files = opts.files ?? ((status.configFiles as string[] | undefined) ?? []);
  let onDisk: LoadedConfig | undefined;
  let filesError: string | undefined;
  try {
    onDisk = loadConfig({ files, flags: opts.flags });
  } catch (e) {
    filesError = (e as Error).message;
  }
  const differences = onDisk === undefined ? [] : diffConfig(config, onDisk.config).map((d) => ({ key: d.key, inEffect: d.from, files: d.to, filesSource: onDisk!.sources[d.key] }));
  const differs = new Set(differences.map((d) => d.key));
  const pid = typeof status.pid === 'number' ? status.pid : undefined;
  const sources = {} as Record<ConfigKey, string>;
  for (const key of CONFIG_KEYS) {
    const start = startSources[key];
    const daemon = `in effect in the daemon${pid !== undefined ? ` (pid ${pid})` : ''}${start !== undefined && start.startsWith('--') ? `, from ${start}` : ''}`;
    sources[key] = differs.has(key) ? daemon : (onDisk?.sources[key] ?? start ?? 'daemon');
  }
  return { from: 'daemon', ...(pid !== undefined ? { pid } : {}), config, sources, files, differences, ...(filesError !== undefined ? { filesError } : {}) };
}

/** conf-file lines, each with where its value comes from, and for a difference what the files say. */
export function formatShownConfig(s: ShownConfig): string {
  const lines = formatConfig({ config: s.config, sources: s.sources, files: [...s.files], unused: [] }).trimEnd().split('\n');
  const fileLine = (key: ConfigKey, value: unknown): string => {
    // The files' value in conf syntax: format a copy of the config with that one value.
    const i = CONFIG_KEYS.indexOf(key);
    const text = formatConfig({ config: { ...s.config, [key]: value }, sources: s.sources, files: [], unused: [] }).split('\n')[i] ?? '';
    return text.split('  # ')[0]!.replace(/^[^=]*= /, '');
  };
  const out = lines.map((line, i) => {
    const d = s.differences.find((x) => x.key === CONFIG_KEYS[i]);
    return d === undefined ? line : `${line}; the files say ${fileLine(d.key, d.files)} (${d.filesSource})`;
  });
  const head =
    s.from === 'daemon'
      ? `# in effect in the running daemon${s.pid !== undefined ? ` (pid ${s.pid})` : ''}; files: ${s.files.length > 0 ? s.files.join(', ') : 'none'}` +
        `${s.differences.length > 0 ? `; ${s.differences.length} key(s) differ from the files (marked)` : ''}\n`
      : '';
  const err = s.filesError !== undefined ? `# the files do not load now, the daemon keeps its config: ${s.filesError}\n` : '';
  return head + err + out.join('\n') + '\n';
}
