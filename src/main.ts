#!/usr/bin/env node
// vmlockd: the command line. `serve` runs the daemon; every other command talks to it over its socket
// (or, for `audit --state-dir` and `integrity`, reads a journal directly).
import * as fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ERROR_CODES, VmlockdError, exitCodeOf, type ErrorCode } from './engine/errors.js';
import type { Config, ConfigKey, LoadedConfig } from './watchers/config.js';
import * as path from 'node:path';
import type { Daemon } from './daemon/daemon.js';
// A client command loads this file, the usage table, errors and what it uses itself, nothing else
// (bench/cli-start.ts, test/cli/client-imports.int.ts): the daemon's client (and node:net) only for
// the commands that call the daemon, the text formats only for status and locks, the uuid check
// only for acquire, check and release; everything heavier (the daemon, rxjs, SQLite, the XML parser,
// the audit, even the config parser and node:crypto when --socket or $VMLOCKD_SOCKET names the
// socket) is imported by the command that needs it. Each ES module costs about a millisecond here.
const loadConfigModule = () => import('./watchers/config.js');
const loadClient = () => import('./cli/client.js');
const loadFormat = () => import('./cli/format.js');
const loadUuid = () => import('./events/uuid.js');
import { USAGE } from './cli/usage.js';


const COMMON = {
  socket: { type: 'string' },
  config: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const DEFAULT_SOCKET = 'vmlockd.sock in the default state directory (./var/vmlockd.sock; installed package: /run/vmlockd/vmlockd.sock)';

/** Each command's own usage, for `vmlockd COMMAND --help` and its usage errors. */
function usageOf(command: string): string {
  const lines = USAGE.split('\n');
  const at = lines.findIndex((l) => l.trimStart().startsWith(command === 'integrity' ? 'integrity' : command + ' ') || l.trim() === command);
  if (at < 0) return USAGE;
  const out = [lines[at]!.trimStart()];
  // Continuation lines (deeper indent) belong to the same command; `locks --cluster` and friends too.
  for (let i = at + 1; i < lines.length; i++) {
    const l = lines[i]!;
    if (/^ {4,}/.test(l)) out.push(l.trim());
    else if (l.trimStart().startsWith(command + ' ')) out.push(l.trimStart());
    else break;
  }
  return `usage: vmlockd ${out.join('\n       ')}\n\nClient commands find the daemon with --socket PATH, else $VMLOCKD_SOCKET, else socket = in --config FILE, else ${DEFAULT_SOCKET}.`;
}

let currentCommand = '';

/**
 * Parse a command's options strictly: unknown flags, a single-valued flag given twice and (unless
 * `positionals` allows them) positional arguments are usage errors (exit 2).
 */
function args<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, positionals: 'none' | 'some' = 'some') {
  const all = { ...COMMON, ...options } as NonNullable<ParseArgsConfig['options']>;
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    throw new VmlockdError('VMLOCKD_ERR_USAGE', `${(e as Error).message}\n\n${usageOf(currentCommand)}`);
  }
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || all[t.name]?.multiple === true) continue;
    if (seen.has(t.name)) throw new VmlockdError('VMLOCKD_ERR_USAGE', `--${t.name} is given more than once\n\n${usageOf(currentCommand)}`);
    seen.add(t.name);
  }
  if (positionals === 'none' && parsed.positionals.length > 0) {
    throw new VmlockdError('VMLOCKD_ERR_USAGE', `${currentCommand} takes no positional arguments, got ${JSON.stringify(parsed.positionals)}\n\n${usageOf(currentCommand)}`);
  }
  return parsed as unknown as ReturnType<typeof parseArgs<{ args: string[]; options: typeof COMMON & T; allowPositionals: true; strict: true }>>;
}

function configFlags(v: Record<string, unknown>): Partial<Record<ConfigKey, string | number | boolean | null>> {
  const flags: Partial<Record<ConfigKey, string | number | boolean | null>> = {};
  if (typeof v['state-dir'] === 'string') flags.stateDir = v['state-dir'];
  if (typeof v.lockspace === 'string') flags.fileLockspaceDir = v.lockspace;
  if (typeof v['host-id'] === 'string') flags.hostId = v['host-id'];
  if (typeof v.socket === 'string') flags.socket = v.socket;
  if (typeof v.journal === 'string') flags.journal = v.journal;
  if (typeof v['virtlockd-socket'] === 'string') flags.virtlockdSocket = v['virtlockd-socket'];
  if (typeof v.libvirt === 'string') flags.libvirtUri = v.libvirt;
  if (typeof v['verify-interval'] === 'string') flags.verifyIntervalMs = v['verify-interval'];
  if (typeof v['on-conflict'] === 'string') flags.onConflict = v['on-conflict'];
  if (typeof v['metrics-address'] === 'string') flags.metricsAddress = v['metrics-address'];
  if (typeof v['journal-sync'] === 'string') flags.journalSync = v['journal-sync'];
  if (typeof v.publish === 'string') flags.publish = v.publish;
  if (typeof v['publish-segment-bytes'] === 'string') flags.publishSegmentBytes = v['publish-segment-bytes'];
  if (typeof v['publish-retain-days'] === 'string') flags.publishRetainDays = v['publish-retain-days'];
  if (typeof v['log-level'] === 'string') flags.logLevel = v['log-level'];
  if (typeof v['log-format'] === 'string') flags.logFormat = v['log-format'];
  if (typeof v['lockspace-init'] === 'string') flags.lockspaceInit = v['lockspace-init'];
  return flags;
}

/** The one way every client command finds the daemon: --socket, $VMLOCKD_SOCKET, --config's socket, the default. */
async function socketOf(v: { socket?: string | undefined; config?: string[] | undefined }): Promise<string> {
  if (v.socket) return v.socket;
  if (process.env.VMLOCKD_SOCKET) return process.env.VMLOCKD_SOCKET;
  const { loadConfig } = await loadConfigModule();
  return loadConfig({ files: v.config ?? [], flags: {} }).config.socket;
}

/** The lockspace to read: --lockspace, else the running daemon's, else the config's. */
async function lockspaceOf(values: { lockspace?: string | undefined; socket?: string | undefined; config?: string[] | undefined }): Promise<string | null> {
  if (values.lockspace !== undefined) return values.lockspace === '' ? null : path.resolve(values.lockspace);
  try {
    const { call } = await loadClient();
    const r = await call(await socketOf(values), 'GET', '/v1/status');
    const ls = (r.body as { lockspace?: string | null } | null)?.lockspace;
    if (r.status === 200 && ls !== undefined) return ls;
  } catch {
    // no daemon here: fall back to the configuration
  }
  const { loadConfig } = await loadConfigModule();
  return loadConfig({ files: values.config ?? [], flags: {} }).config.fileLockspaceDir;
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text());
}

/** Turn a daemon reply into output and an exit code. */
function finish(res: { status: number; body: unknown }, json: boolean, ok: (body: any) => string): number {
  const body = res.body as { status?: string; code?: string; message?: string };
  if (body?.status === 'ok' || (res.status === 200 && body?.status === undefined)) {
    print(json, body, () => ok(body));
    return 0;
  }
  if (json) {
    // Every failure carries its stable code, a refusal too (docs/errors.md).
    const code = body?.code ?? (body?.status === 'refused' ? 'VMLOCKD_ERR_LOCK_HELD' : 'VMLOCKD_ERR_INTERNAL');
    process.stdout.write(JSON.stringify({ ...body, status: body?.status ?? 'error', code }, null, 2) + '\n');
  }
  if (body?.status === 'refused') {
    process.stderr.write(`vmlockd: refused: ${body.message}\n`);
    return 3;
  }
  process.stderr.write(`vmlockd: ${body?.message ?? `daemon answered HTTP ${res.status}`}\n`);
  return exitCodeOf(body?.code);
}

function diskLines(verb: string, list: Array<{ path: string; mode: string; disk: string }>): string {
  return list.map((d) => `${verb} ${d.path} (${d.mode}${d.disk !== d.path ? `, as ${d.disk}` : ''})\n`).join('');
}

/** Commands whose --help this file answers (audit and journal answer their own, with more detail). */
const OWN_HELP = new Set(['serve', 'acquire', 'release', 'check', 'locks', 'who', 'generation', 'cluster', 'ingest', 'status', 'integrity', 'config', 'hook', 'lockspace']);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  currentCommand = command ?? '';
  // --help never runs the command (no daemon started, no ./var created), wherever it stands.
  if (command !== undefined && OWN_HELP.has(command) && rest.some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(usageOf(command) + '\n');
    return 0;
  }
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return command === undefined ? 2 : 0;

    case '--version':
    case 'version':
      process.stdout.write(`vmlockd ${(await import('./version.js')).VERSION}\n`);
      return 0;

    case 'hook':
      return (await import('./cli/hook.js')).runHook(rest);

    case 'serve': {
      // A long-lived daemon: keep V8's young generation at its initial size. Start-up's burst (one
      // held-lock entry, fact and record per re-taken lock) otherwise grows it to 16 MiB semi-spaces
      // that V8 never gives back (docs/decisions/0007). Every worker thread resets the flag: the
      // daemon starts them through startThread, which sets it again (src/journal/young-generation.ts).
      (await import('./journal/young-generation.js')).holdYoungGeneration();
      const { values } = args(rest, {
        config: { type: 'string', multiple: true },
        'state-dir': { type: 'string' },
        lockspace: { type: 'string' },
        'host-id': { type: 'string' },
        journal: { type: 'string' },
        'virtlockd-socket': { type: 'string' },
        libvirt: { type: 'string' },
        'verify-interval': { type: 'string' },
        'on-conflict': { type: 'string' },
        'metrics-address': { type: 'string' },
        'journal-sync': { type: 'string' },
        publish: { type: 'string' },
        'publish-segment-bytes': { type: 'string' },
        'publish-retain-days': { type: 'string' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        'lockspace-init': { type: 'string' },
        takeover: { type: 'boolean' },
      }, 'none');
      const { takeover, ...configValues } = values;
      const flags = configFlags(configValues);
      const { loadConfig } = await loadConfigModule();
      const { storedLocksNote } = await import('./daemon/start-failure.js');
      const held = storedLocksNote();
      let loaded: LoadedConfig;
      try {
        loaded = loadConfig({ files: values.config ?? [], flags });
      } catch (e) {
        // A config rejected at a restart: the stored locks must not look forgotten (review14).
        if (held !== '' && e instanceof Error) e.message += held;
        throw e;
      }
      const [{ Daemon }, { registerVirtlockd }, { registerLibvirt }, { servingAgain, takeOver }, { refuseTakeoverUnderManager }, { startMark }] = await Promise.all([
        import('./daemon/daemon.js'),
        import('./daemon/virtlockd-source.js'),
        import('./daemon/libvirt-source.js'),
        import('./daemon/takeover.js'),
        import('./daemon/takeover-guard.js'),
        import('./daemon/start-marks.js'),
      ]);
      startMark('imported');
      // A take-over that fails after this daemon stopped serves again through a new Daemon holding
      // the same descriptors (src/daemon/takeover.ts): the factory wires each one the same way.
      const make = (from: LoadedConfig): Daemon => {
        const d = new Daemon(from, flags);
        registerVirtlockd(d);
        registerLibvirt(d);
        d.resume = async (fds, conns) => {
          let again = from;
          try {
            again = loadConfig({ files: values.config ?? [], flags });
          } catch (e) {
            d.log.warn(`serving again with the config this daemon started with: ${(e as Error).message}`);
          }
          const next = make(again);
          next.takenOver = servingAgain(fds, conns);
          daemon = next;
          await next.start();
        };
        return d;
      };
      let daemon = make(loaded);
      process.on('SIGHUP', () => {
        daemon.log.info('SIGHUP received: re-reading the config');
        daemon.reload$.next('SIGHUP');
      });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        daemon.log.info(`${signal} received: stopping (VMs are not touched)`);
        const hard = setTimeout(() => {
          daemon.log.error('stop took longer than 5 s; exiting');
          process.exit(1);
        }, 5000);
        hard.unref();
        daemon.stop(signal).then(
          () => process.exit(0),
          (e: unknown) => {
            daemon.log.error(`stop failed: ${(e as Error).message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      try {
        // --takeover: the running daemon on this state directory hands its lock descriptors over
        // and exits (src/daemon/takeover.ts); none running: a normal start.
        if (takeover) refuseTakeoverUnderManager(loaded.config.stateDir);
        if (takeover) daemon.takenOver = takeOver(loaded.config.stateDir, (level, msg) => daemon.log.log(level, msg));
        await daemon.start();
        // Only now may the old daemon close its copies of the locks and exit.
        daemon.takenOver?.confirm();
      } catch (e) {
        daemon.takenOver?.abandon();
        if (held !== '' && e instanceof Error) e.message += held;
        // start() gave back what it took; anything still open (a watcher, a timer) must not keep
        // a daemon that failed to start alive.
        process.exit(reportError(e, false));
      }
      return new Promise<number>(() => {}); // runs until a signal
    }

    case 'acquire':
    case 'check': {
      const { values, positionals } = args(rest, {
        vm: { type: 'string' },
        name: { type: 'string' },
        shared: { type: 'boolean' },
        readonly: { type: 'boolean' },
        create: { type: 'boolean' },
      });
      if (!values.vm) throw new VmlockdError('VMLOCKD_ERR_USAGE', `${command} needs --vm UUID`);
      if (positionals.length === 0) throw new VmlockdError('VMLOCKD_ERR_USAGE', `${command} needs at least one DISK path`);
      const { checkUuid } = await loadUuid();
      const vm = { uuid: checkUuid(values.vm, '--vm'), ...(values.name ? { name: values.name } : {}) };
      const disks = positionals.map((p) => ({ path: p, readonly: !!values.readonly, shareable: !!values.shared, ...(values.create ? { create: true } : {}) }));
      if (values.readonly) {
        // Read-only disks take no lock (as with virtlockd); say so rather than silently succeed.
        print(!!values.json, { status: 'ok', acquired: [], skipped: positionals }, () => positionals.map((p) => `not locked (read-only) ${p}\n`).join(''));
        return 0;
      }
      const { call } = await loadClient();
      const res = await call(await socketOf(values), 'POST', `/v1/${command}`, { vm, disks });
      return finish(res, !!values.json, (b) =>
        command === 'check'
          ? diskLines('free', b.free) + diskLines('already held', b.already)
          : diskLines('acquired', b.acquired) + diskLines('already held', b.already),
      );
    }

    case 'release': {
      const { values, positionals } = args(rest, { vm: { type: 'string' } });
      if (!values.vm) throw new VmlockdError('VMLOCKD_ERR_USAGE', 'release needs --vm UUID');
      const [{ checkUuid }, { call }] = await Promise.all([loadUuid(), loadClient()]);
      const body = { vm: { uuid: checkUuid(values.vm, '--vm') }, ...(positionals.length ? { disks: positionals } : {}) };
      const res = await call(await socketOf(values), 'POST', '/v1/release', body);
      return finish(res, !!values.json, (b) => (b.released.length ? diskLines('released', b.released) : 'nothing to release\n'));
    }

    case 'locks': {
      const { values } = args(rest, { cluster: { type: 'boolean' }, lockspace: { type: 'string' } }, 'none');
      if (values.cluster) {
        const lockspace = await lockspaceOf(values);
        if (lockspace === null) throw new VmlockdError('VMLOCKD_ERR_USAGE', 'locks --cluster needs a file lockspace (direct mode keeps no shared records)');
        const { clusterLocks, formatClusterLocks } = await import('./cli/cluster-view.js');
        const list = clusterLocks(lockspace);
        print(!!values.json, list, () => formatClusterLocks(list));
        return 0;
      }
      const [{ call }, { formatLocks }] = await Promise.all([loadClient(), loadFormat()]);
      const res = await call(await socketOf(values), 'GET', '/v1/locks');
      return finish(res, !!values.json, (b) => formatLocks(b));
    }

    case 'who':
    case 'generation': {
      const { values, positionals } = args(rest, { lockspace: { type: 'string' } });
      if (positionals.length !== 1) throw new VmlockdError('VMLOCKD_ERR_USAGE', `${command} needs exactly one DISK path`);
      const { formatWho, who } = await import('./cli/cluster-view.js');
      const answer = who(positionals[0]!, await lockspaceOf(values));
      if (command === 'generation') print(!!values.json, { disk: answer.canonical, generation: answer.generation, state: answer.state }, () => `${answer.generation}\n`);
      else print(!!values.json, answer, () => formatWho(answer));
      return 0;
    }

    case 'cluster': {
      const { values } = args(rest, { lockspace: { type: 'string' } }, 'none');
      const lockspace = await lockspaceOf(values);
      if (lockspace === null) throw new VmlockdError('VMLOCKD_ERR_USAGE', 'cluster needs a file lockspace (direct mode keeps no shared records)');
      const { clusterView, formatCluster } = await import('./cli/cluster-view.js');
      const view = clusterView(lockspace);
      print(!!values.json, view, () => formatCluster(view));
      return 0;
    }

    case 'status': {
      const { values } = args(rest, {}, 'none');
      const [{ call }, { formatStatus }] = await Promise.all([loadClient(), loadFormat()]);
      const res = await call(await socketOf(values), 'GET', '/v1/status');
      return finish(res, !!values.json, (b) => formatStatus(b));
    }

    case 'ingest': {
      const { values, positionals } = args(rest, {});
      if (positionals.length !== 1) throw new VmlockdError('VMLOCKD_ERR_USAGE', 'ingest needs exactly one FILE, or - for standard input');
      const file = positionals[0]!;
      let input: NodeJS.ReadableStream & import('node:stream').Readable;
      if (file === '-') input = process.stdin;
      else {
        // Opened before the daemon is called, so a missing or unreadable file is one line, exit 2.
        let fd: number;
        try {
          fd = fs.openSync(file, 'r');
          if (fs.fstatSync(fd).isDirectory()) throw Object.assign(new Error(`EISDIR: is a directory, open '${file}'`), { code: 'EISDIR' });
        } catch (e) {
          throw new VmlockdError('VMLOCKD_ERR_BAD_INPUT', `ingest: cannot read ${file}: ${(e as Error).message}`);
        }
        input = fs.createReadStream('', { fd });
      }
      let worst = 0;
      const { streamEvents } = await loadClient();
      await streamEvents(await socketOf(values), input, (line) => {
        process.stdout.write(line + '\n');
        try {
          const r = JSON.parse(line) as { status: string; code?: string };
          const code = r.status === 'ok' ? 0 : r.status === 'refused' ? 3 : exitCodeOf(r.code);
          // Report the most serious outcome: a failure (1) over a refusal (3) over bad input (2).
          const rank = (c: number) => [0, 3, 1, 2][c] ?? 0;
          if (rank(code) > rank(worst)) worst = code;
        } catch {
          worst = 1;
        }
      });
      return worst;
    }

    case 'audit':
      return (await import('./cli/audit.js')).runAudit(rest);

    case 'journal':
      return (await import('./cli/audit.js')).runJournal(rest);

    case 'integrity':
      return (await import('./cli/audit.js')).runJournal(['verify', ...rest]);

    case 'lockspace': {
      const [sub, ...more] = rest;
      if (sub !== 'init') throw new VmlockdError('VMLOCKD_ERR_USAGE', `lockspace needs "init", got ${JSON.stringify(sub ?? '')}\n\n${usageOf('lockspace')}`);
      const { values, positionals } = args(more, { 'state-dir': { type: 'string' }, lockspace: { type: 'string' } });
      const { loadConfig } = await loadConfigModule();
      const loaded = loadConfig({ files: values.config ?? [], flags: configFlags(values) });
      const { configuredDirs, formatInit, initLockspaces } = await import('./cli/lockspace-init.js');
      const dirs = positionals.length > 0 ? positionals : configuredDirs(loaded.config);
      if (dirs.length === 0) throw new VmlockdError('VMLOCKD_ERR_USAGE', 'lockspace init: no lockspace configured (direct mode) and no DIR given');
      const r = initLockspaces(loaded.config.stateDir, dirs);
      print(!!values.json, r, () => formatInit(r));
      return 0;
    }

    case 'config': {
      const [sub, ...more] = rest;
      if (sub === 'check') {
        const { positionals, values } = args(more, {});
        if (positionals.length === 0) throw new VmlockdError('VMLOCKD_ERR_USAGE', 'config check needs at least one FILE');
        const { checkConfigFiles } = await loadConfigModule();
        const r = checkConfigFiles(positionals);
        print(!!values.json, r, () => (r.ok ? positionals.map((f) => `${f}: ok\n`).join('') : r.problems.map((p) => p + '\n').join('')));
        return r.ok ? 0 : 2;
      }
      if (sub === 'show') {
        const { values } = args(more, {
          'state-dir': { type: 'string' },
          lockspace: { type: 'string' },
          'host-id': { type: 'string' },
          journal: { type: 'string' },
          defaults: { type: 'boolean' },
        }, 'none');
        if (values.defaults) {
          // This installation's defaults, every key commented out (the package's vmlockd.conf): no daemon, no files.
          const [{ formatDefaults }, { installLayout }] = await Promise.all([import('./watchers/config.js'), import('./install-layout.js')]);
          process.stdout.write(formatDefaults(installLayout(), process.cwd()));
          return 0;
        }
        // A running daemon answers with the config in effect; the files are compared against it.
        const { formatShownConfig, showConfig } = await import('./cli/config-show.js');
        const shown = await showConfig({ socket: await socketOf(values), ...(values.config !== undefined ? { files: values.config } : {}), flags: configFlags(values) });
        print(!!values.json, shown, () => formatShownConfig(shown));
        return 0;
      }
      throw new VmlockdError('VMLOCKD_ERR_USAGE', `config needs "show" or "check", got ${JSON.stringify(sub ?? '')}`);
    }

    default:
      throw new VmlockdError('VMLOCKD_ERR_USAGE', `unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  }
}

export type { Config };

/**
 * An error in one line on stderr (and, with --json, as JSON with its stable code on stdout); returns
 * the exit code. A stack only for what can only be a bug (TypeError and friends) or with VMLOCKD_DEBUG=1.
 */
function reportError(e: unknown, json: boolean): number {
  const raw = (e as { code?: unknown })?.code;
  const code: string =
    typeof raw === 'string' && raw.startsWith('VMLOCKD_ERR_') ? raw : typeof raw === 'string' && /^E[A-Z]+$/.test(raw) ? 'VMLOCKD_ERR_IO' : 'VMLOCKD_ERR_INTERNAL';
  const message = e instanceof Error ? e.message : String(e);
  const exit = code in ERROR_CODES ? ERROR_CODES[code as ErrorCode].exit : exitCodeOf(code);
  if (json) {
    // The usage text stays on stderr; the JSON carries the one-line reason.
    process.stdout.write(JSON.stringify({ status: 'error', code, message: message.split('\n\n')[0] }, null, 2) + '\n');
  }
  process.stderr.write(`vmlockd: ${message}\n`);
  const bug = e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError || e instanceof SyntaxError || !(e instanceof Error);
  if (bug || process.env.VMLOCKD_DEBUG === '1') process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
  return exit;
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = reportError(e, argv.includes('--json'));
  },
);
