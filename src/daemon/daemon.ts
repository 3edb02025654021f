// The composition root of `vmlockd serve`: config -> journal -> state -> locker -> pipeline -> servers -> shutdown.
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { config as rxConfig } from '../engine/rx.js';
import { VmlockdError } from '../engine/errors.js';
import { fact, type Fact, type NewFact } from '../engine/facts.js';
import { fromRow } from '../engine/journal-port.js';
import { Locker, type PassedFd } from '../engine/locker.js';
import { native } from '../engine/native.js';
import { publishMounts } from '../engine/host-mounts.js';
import { HostLock, listHosts } from '../engine/locker-hosts.js';
import { lastStartIds, lockspaceDirs, openLockspaces, type LockspaceContext } from '../engine/lockspaces.js';
import { Verifier, type Conflict } from '../watchers/verifier.js';
import { namingMismatchMessage } from '../engine/naming-check.js';
import { lookupBlockdevNames, runCommand } from '../events/blockdev-names.js';
import type { NamingRules } from '../engine/resolve.js';
import { Engine } from '../engine/pipeline.js';
import { FactClock } from '../engine/fact-clock.js';
import type { HandedConnection, RunningSource, SourceContext } from '../engine/source.js';
import { evolve, fromSnapshot, initialState, toSnapshot, type State } from '../engine/state.js';
import { Journal } from '../journal/journal.js';
import { onSharedFs } from '../engine/shared-fs.js';
import { Subject, type Subscription } from '../engine/rx.js';
import { CONFIG_KEYS, classifyChange, confName, fingerprint, type Config, type ConfigFlags, type ConfigKey, type LoadedConfig } from '../watchers/config.js';
import { watchConfig, type ConfigUpdate } from '../watchers/config-watcher.js';
import { createApiServer, type AuditQuery } from './api-server.js';
import { acquireInstanceGuard, type InstanceGuard } from './instance-guard.js';
import { Logger } from './log.js';
import { describe, logFact } from './log-facts.js';
import { VERSION } from '../version.js';
import { Meters, type MetricsSource } from './metrics.js';
import { MetricsEndpoint } from './metrics-endpoint.js';
import { socketAnswers } from '../events/socket-probe.js';
import { JournalWatch } from './journal-watch.js';
import { WaitingFacts } from './waiting-facts.js';
import { recordRound, writeJournaledRetakes } from './retake-records.js';
import { REGISTRY_FILE, recoverForgotten, scanDirs } from './found.js';
import { directAdoptedWarning, directGapWarning, directNote, directRetaken } from './direct-gap.js';
import { checkSocketPaths, startFailure } from './start-failure.js';
import { ServiceLink, bootId } from './service.js';
import { rebootReleases } from './boot.js';
import { closeConns, listenHandoff, type HandoffServer, type TakenOver } from './takeover.js';
import { socketActivation } from './activation.js';
import { InheritedListeners, isListenerName, listenerName, listenUnixPath, serverFd, type ListenerKind } from './listeners.js';
import { PUBLISH_KEYS, Publication, publishSettings } from './publisher.js';
import { envMs } from './env-ms.js';
import { collectWhenSettled } from './collect.js';
import { openJournalPatiently } from './journal-open.js';
import { diskByIdentity, leaseNames } from '../cli/disk-alias.js';
import { startMark } from './start-marks.js';

/** Snapshot after this many facts, so start-up replays at most this many (VMLOCKD_SNAPSHOT_EVERY: tests). */
const SNAPSHOT_EVERY = snapshotEvery();
/** How long after the threshold the snapshot is written (staged facts move into SQLite meanwhile). */
const SNAPSHOT_DELAY_MS = 2_000;
/** Start-up facts moved into SQLite before "listening on" when there are at most this many. */
const START_FLUSH_ROWS = 1_000;
const STOP_DEADLINE_MS = 4_500;
/** After a failed snapshot (a busy or full journal), the next try. */
const SNAPSHOT_RETRY_MS = 5_000;

let lastResortInstalled = false;
/**
 * The last resort: an error that escaped every timer's and callback's own error path is logged,
 * and the process, with every lock it holds, carries on. Dying would drop every VM's lock at once.
 */
function installLastResort(log: Logger): void {
  if (lastResortInstalled) return;
  lastResortInstalled = true;
  process.on('uncaughtException', (e) => log.error(`uncaught error (vmlockd carries on; its locks stay held): ${(e as Error).stack ?? e}`));
  process.on('unhandledRejection', (e) => log.error(`unhandled rejection (vmlockd carries on; its locks stay held): ${(e as Error)?.stack ?? e}`));
}
/** A take-over: how long connections accepted just before the stop get to send their request. */
const HANDOVER_GRACE_MS = 100;

/**
 * VMLOCKD_JOURNAL_FLUSH_MS: how long a staged fact may wait before it is moved into SQLite (default
 * 20 ms). Larger values batch more; tests set it very high so facts stay staged until a crash.
 */
function stageFlushMs(): { flushMs?: number } {
  const ms = envMs(process.env, 'VMLOCKD_JOURNAL_FLUSH_MS');
  return ms === undefined ? {} : { flushMs: ms };
}

function snapshotEvery(): number {
  const n = Number(process.env.VMLOCKD_SNAPSHOT_EVERY ?? '');
  return Number.isSafeInteger(n) && n >= 1 ? n : 10_000;
}

/**
 * VMLOCKD_TEST_WAITING_FACTS_MAX: how many of a running daemon's facts may wait in memory for room
 * (default WAITING_FACTS_MAX, 10,000); tests set it low to reach the bound with a handful of facts.
 */
function waitingFactsMax(): { max?: number } {
  const raw = process.env.VMLOCKD_TEST_WAITING_FACTS_MAX;
  const n = Number(raw);
  return raw !== undefined && raw !== '' && Number.isSafeInteger(n) && n >= 0 ? { max: n } : {};
}

/**
 * VMLOCKD_TEST_MAX_REQUEST_BYTES: the control API's bound on request bodies held at once (default
 * REQUEST_BYTES_MAX, 96 MiB); tests set it low to reach it with small bodies.
 */
function maxRequestBytes(): { maxRequestBytes?: number } {
  const n = Number(process.env.VMLOCKD_TEST_MAX_REQUEST_BYTES ?? '');
  return Number.isSafeInteger(n) && n >= 1 ? { maxRequestBytes: n } : {};
}

/** Fold the journal: newest snapshot, then every fact after it. */
export function loadState(journal: Journal): State {
  const snap = journal.latestSnapshot();
  const state = snap ? fromSnapshot(snap.state) : initialState();
  if (snap) state.seq = snap.seq;
  for (const row of journal.readAfter(state.seq)) evolve(state, fromRow(row));
  return state;
}

export function lockView(state: State): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const res of state.resources.values()) {
    for (const h of res.holders.values()) {
      out.push({
        disk: res.ref.canonical,
        path: h.path,
        resource: res.ref.id,
        name: res.ref.name,
        lockspace: res.ref.lockspace,
        kind: res.ref.kind,
        mode: h.mode,
        vm: h.owner,
        since: h.since,
        source: h.source,
      });
    }
  }
  return out;
}


/** The naming rules a config gives (file lockspace or direct mode, LVM and SCSI lockspaces). */
export function namingRules(c: Config): NamingRules {
  return { fileLockspaceDir: c.fileLockspaceDir, lvmLockspaceDir: c.lvmLockspaceDir, scsiLockspaceDir: c.scsiLockspaceDir };
}

/** Keys a running daemon cannot change: they name its identity and its files. */
// max_clients too: the protocol server sizes its listener once, at start (a reload that claimed to
// change it would be reported but not in force).
const RESTART_ONLY: ReadonlySet<string> = new Set(['hostId', 'stateDir', 'journal', 'socket', 'virtlockdSocket', 'metricsAddress', 'maxClients']);

/** How often the daemon compares the wall clock with the monotonic one (a step back is journaled within this). */
const CLOCK_WATCH_MS = 1000;

/** The journal's last fact's time, and its wall time when it was made while the clock was set back. */
function lastFactTime(f: { at: string; payload: unknown } | undefined): { at: string; wallAt?: string } | undefined {
  if (f === undefined) return undefined;
  const wallAt = (f.payload as { wallAt?: unknown } | null)?.wallAt;
  return typeof wallAt === 'string' ? { at: f.at, wallAt } : { at: f.at };
}

export class Daemon {
  config: Config;
  /** SIGHUP: re-read the config files now. */
  readonly reload$ = new Subject<string>();
  private watch?: Subscription;
  private readonly sources: RunningSource[] = [];
  private guard?: InstanceGuard;
  private journal?: Journal;
  private locker?: Locker;
  engine?: Engine;
  private server?: http.Server;
  private factsSinceSnapshot = 0;
  private snapshotTimer: NodeJS.Timeout | undefined;
  /** Looks at the wall clock against the monotonic one (a step back is journaled: decision 0029). */
  private clockTimer: NodeJS.Timeout | undefined;
  /** Cancels the one collection after start-up's burst (src/daemon/collect.ts). */
  private cancelSettle: (() => void) | undefined;
  private snapshotFailures = 0;
  /** Prometheus counters, fed from the start on (src/daemon/metrics.ts). */
  readonly meters = new Meters({ version: VERSION });
  private metricsEndpoint?: MetricsEndpoint;
  private get metrics(): http.Server | undefined {
    return this.metricsEndpoint?.server;
  }
  private readonly startedAt = new Date().toISOString();
  private stopping?: Promise<void>;
  private fdLimit = 0;
  /** This process bound the control socket (so a stop may remove it). */
  private ownsSocket = false;
  /** The control socket is systemd's (socket activation): a stop leaves its queue to the next start. */
  private controlFromManager = false;
  /** The last config reload's outcome, for systemd's status line (STATUS=). */
  private reloadNote?: string;
  /** The start failed: the stop that cleans up writes no snapshot and says nothing more. */
  private startFailed = false;
  private hostLock?: HostLock;
  private lockspaceId?: string;
  /** What opening a lockspace checks against (src/engine/lockspaces.ts), kept for reloads. */
  private lockspaceCtx?: LockspaceContext;
  private verifier?: Verifier;
  /** Copies the journal into the lockspace for `audit --cluster` (src/daemon/publisher.ts). */
  private publication?: Publication;
  /** systemd: sd_notify, the descriptor store, descriptors handed back at start (src/daemon/service.ts). */
  service?: ServiceLink;
  /** `serve --takeover`: what the previous daemon handed over; the hand-off socket of this one. */
  takenOver?: TakenOver;
  private handoff?: HandoffServer;
  /** Listening sockets the previous daemon handed over (control, virtlockd, metrics). */
  inherited?: InheritedListeners;
  /** systemd handed this start descriptors (sockets, the store's locks): prefer degraded over a failed start. */
  managerHandedBack = false;
  /** A take-over failed after this daemon stopped: start serving again from these (its own) descriptors (src/main.ts). */
  resume?: (fds: PassedFd[], conns: HandedConnection[]) => Promise<void>;
  /** Client connections the previous daemon handed over, until the source serving their address takes them. */
  private handedConns: HandedConnection[] = [];
  /** How many of those a source took (for `vmlockd status`). */
  private connsAdopted = 0;
  /** The libvirt source's part of `status` (src/daemon/libvirt-source.ts): which libvirt, and locks kept as not its own. */
  libvirtStatus?: () => unknown;
  /** Called for every lost-lock conflict; the libvirt source adds `virsh suspend` for on_conflict=suspend. */
  readonly conflictHandlers: Array<(c: Conflict) => void> = [];

  readonly log: Logger;
  /** A full or read-only state directory: rate-limited log lines, status and metrics (journal-watch.ts). */
  readonly journalWatch: JournalWatch;
  /** Facts no client waits for that the journal could not take yet (a full state directory): src/daemon/waiting-facts.ts. */
  private waitingFacts?: WaitingFacts;

  /** Where each value of the running config came from (a file:line, a flag, "default"); see classifyChange. */
  private configSources: Record<ConfigKey, string>;

  constructor(
    readonly loaded: LoadedConfig,
    readonly flags: ConfigFlags = {},
  ) {
    this.config = loaded.config;
    this.configSources = { ...loaded.sources };
    this.log = new Logger(this.config.logLevel, { format: this.config.logFormat });
    this.journalWatch = new JournalWatch((level, msg) => this.log.log(level, msg), () => this.journal?.health());
  }

  /**
   * Start everything the config asks for, or nothing: a part that fails (the journal on a full disk,
   * the metrics port in use, an impossible virtlockd socket path) stops the start, and what was
   * already taken is given back before the error is thrown (one line, see start-failure.ts).
   */
  async start(): Promise<void> {
    try {
      await this.startAll();
    } catch (e) {
      const err = startFailure(e, this.config);
      this.startFailed = true;
      await this.stop(`start failed: ${err.message}`).catch((x: unknown) => this.log.warn(`cleaning up after a failed start: ${(x as Error).message}`));
      throw err;
    }
  }

  private async startAll(): Promise<void> {
    startMark('start');
    const c = this.config;
    checkSocketPaths(c);
    this.service = new ServiceLink((level, msg) => this.log.log(level, msg));
    // systemd handed descriptors back (sockets, the store's locks): a failed start now loops into the
    // start limit and systemd empties the store, freeing every lock. Degraded but up beats that.
    let handedBack = false;
    this.managerHandedBack = false;
    if (this.takenOver) {
      this.service.takenOver = this.takenOver.fds.filter((f) => !isListenerName(f.name));
      this.inherited = new InheritedListeners(this.takenOver.fds);
      this.handedConns = [...this.takenOver.conns];
    } else {
      handedBack = this.service.passed.length > 0;
      this.managerHandedBack = handedBack;
      // systemd's listening sockets (vmlockd.socket, vmlockd-virtlockd.socket), before the lock
      // descriptors of the same LISTEN_FDS are adopted (src/daemon/activation.ts).
      const act = socketActivation(this.service.passed, c, (level, msg) => this.log.log(level, msg));
      this.inherited = act?.listeners;
      this.service.sockets = act?.kinds ?? [];
    }
    fs.mkdirSync(c.stateDir, { recursive: true, mode: 0o700 });
    this.guard = acquireInstanceGuard(c.stateDir);
    let controlUnserved = false;
    if (!this.inherited?.has('control', c.socket) && (await socketAnswers(c.socket))) {
      if (!handedBack) throw new VmlockdError('VMLOCKD_ERR_ALREADY_RUNNING', `socket ${c.socket} is already served by another process; choose another --socket`);
      this.log.error(`socket ${c.socket} is already served by another process, and systemd handed this start descriptors (its sockets, the store's locks): serving no control socket rather than failing the start (that would empty the store and free every lock); fix the socket unit or the config, then systemctl restart vmlockd`);
      controlUnserved = true;
    }
    fs.mkdirSync(path.dirname(c.journal), { recursive: true, mode: 0o700 });
    // Staged: a fact is acknowledged once written to the staging file; a timer moves facts into
    // SQLite in batches, off the request's path (docs/decisions/0006).
    // Another process holding the journal (a sqlite3 shell, a backup, `journal compact`) is waited
    // for, never a reason to exit with the locks this start re-takes (src/daemon/journal-open.ts).
    const open = () => Journal.open(c.journal, {
      host: c.hostId,
      // Start-up's re-takes append one row per held lock at random places in the disk and VM indexes
      // of a large journal; SQLite's default 2 MiB cache spills and re-reads pages (10k rows into a
      // 10M-fact journal: 1.1 s with 2 MiB, 0.34 s with 8 MiB; bench/README.md).
      cacheSizeMb: 8,
      staged: {
        onError: (e) => this.journalWatch.sqliteFailed(e),
        onRecover: (what) => this.journalWatch.recovered(what),
        onDisplaced: (msg) => this.log.error(msg),
        sync: c.journalSync === 'fdatasync',
        // The moves into SQLite on a worker thread (decision 0021); VMLOCKD_JOURNAL_THREAD=0: on the event loop.
        thread: process.env.VMLOCKD_JOURNAL_THREAD !== '0',
        // The staging file's check before each append without fs.Stats objects (a binding built before it: through fs).
        ...(native.stageCheck ? { stageCheck: native.stageCheck.bind(native) } : {}),
        ...stageFlushMs(),
      },
    });
    const journal = await openJournalPatiently(open, {
      file: c.journal,
      log: (level, msg) => this.log.log(level, msg),
      waiting: (msg, nextMs) => this.service?.notifier.send(`STATUS=${msg.slice(0, 300)}\nEXTEND_TIMEOUT_USEC=${(nextMs + 15_000) * 1000}`, [], { periodic: true }),
    });
    this.journal = journal;
    startMark('journal-opened');
    journal.onStageSync = this.meters.stageSync;
    // Staged facts SQLite cannot take now (another process's write lock, a full disk) are read from
    // the staging file: never a wait for that lock here, where every lock is still to re-take.
    const state = journal.nonBlocking(() => loadState(journal));
    startMark('state-loaded');
    const renamed = namingMismatchMessage(state, namingRules(c));
    if (renamed !== null) {
      journal.close();
      this.guard.release();
      throw new VmlockdError('VMLOCKD_ERR_NAMING_CHANGED', renamed);
    }
    // Optional, so bound before any lock is taken: failing now drops nothing; with locks to keep it
    // degrades instead of taking them down (src/daemon/metrics-endpoint.ts, invariant 10).
    if (c.metricsAddress) {
      this.metricsEndpoint = new MetricsEndpoint(c.metricsAddress, this.meters, (level, msg) => this.log.log(level, msg));
      // A take-over that fails leaves the old daemon serving with every lock: failing is the safe way there.
      const keep = this.takenOver === undefined && (handedBack || [...state.resources.values()].some((r) => r.holders.size > 0));
      await this.metricsEndpoint.start(this.inherited?.take('metrics', c.metricsAddress), keep);
    }
    // One descriptor per held lock: a default soft limit of 1024 would cap this host at ~1000 disks.
    this.fdLimit = native.raiseNoFile().soft;
    // Never a new lockspace where this host knew one: a bare mount point (src/engine/lockspaces.ts).
    const lastStart = lastStartIds(journal.newest('DaemonStarted')?.payload);
    this.lockspaceCtx = { stateDir: c.stateDir, init: c.lockspaceInit, lastStart, state, log: (level, msg) => this.log.log(level, msg) };
    const lockspaces = openLockspaces(lockspaceDirs(c), this.lockspaceCtx);
    const locker = new Locker(c.hostId, { fileLockspaceDir: c.fileLockspaceDir, syncRecords: onSharedFs(c.fileLockspaceDir), generationFloor: (disk) => journal.maxGeneration(disk), ...(this.service.store ? { store: this.service.store } : {}) });
    // Lock files are created only while each lockspace is there (not a bare mount point): src/engine/locker.ts pinLockspace.
    for (const [dir, id] of lockspaces) locker.pinLockspace(dir, id);
    this.locker = locker;

    installLastResort(this.log);
    // rxjs reports an error no subscriber handles here instead of throwing it out of a timer.
    rxConfig.onUnhandledError = (e: unknown) => {
      this.log.error(`unhandled pipeline error: ${(e as Error).stack ?? e}`);
      process.exitCode = 1;
    };

    // Appends carry the facts that wait for room first: the start's, the verifier's... (src/daemon/waiting-facts.ts).
    const waitingFacts = new WaitingFacts(journal, {
      stageFile: `${c.journal}-stage`,
      log: (level, msg) => this.log.log(level, msg),
      remind: (msg) => this.journalWatch.limited('waiting-facts', 'error', msg),
      stored: (facts) => {
        if (this.engine && facts.length > 0) this.engine.state.seq = Math.max(this.engine.state.seq, facts[facts.length - 1]!.seq);
        // The re-take's LeaseLost is journaled now: its own record may go over the proof (review26a F3).
        // Not before the last of the start's facts (a retry journals them in chunks); a verifier's
        // re-take's not before its own LeaseLost and Reacquired (wait27), by their mark (engine29).
        if (this.locker) writeJournaledRetakes(this.locker, waitingFacts);
        this.afterFacts(facts);
      },
      lost: (f) => this.log.error(`${describe({ ...f, seq: 0, host: c.hostId } as Fact)?.msg ?? f.kind} (not journaled yet: the state directory is full; logged again with its seq once it is)`),
      vouchOf: (uuid) => this.engine?.state.vouchedBy.get(uuid),
      ...waitingFactsMax(),
    });
    this.waitingFacts = waitingFacts;
    const engine = new Engine({
      host: c.hostId,
      journal: waitingFacts,
      locker,
      rules: namingRules(c),
      blockdevNames: (paths, rules) => lookupBlockdevNames(paths, { lvmDir: rules.lvmLockspaceDir ?? null, scsiDir: rules.scsiLockspaceDir ?? null }, runCommand),
      state,
      // The journal's fold, then the facts still waiting for room (folded already before the failed commit).
      reload: () => {
        const s = journal.nonBlocking(() => loadState(journal));
        waitingFacts.foldInto((f) => evolve(s, f));
        return s;
      },
      onFacts: (facts) => this.afterFacts(facts),
      // A refused group commit's ClockStepped waits for room like the verifier's facts (review27c F2b).
      keep: (facts, e) => waitingFacts.later(facts, e),
      onCommand: (cmd) => this.verifier?.commandSeen(cmd),
      onReply: this.meters.reply,
      log: (level, msg) => this.journalWatch.engineLog(level, msg),
      // Times never go back along the journal, across this restart either; a step back of the clock
      // since the last fact is journaled with the start's facts (decision 0029).
      clock: new FactClock({ last: lastFactTime(journal.newest()) }),
    });
    this.engine = engine;
    // A step back while running is journaled and logged within a second, not at the next command.
    this.clockTimer = setInterval(() => engine.watchClock(), CLOCK_WATCH_MS);
    this.clockTimer.unref();

    // Re-take every lock the journal says we held; never steal one another owner took in the gap.
    const at = new Date().toISOString();
    // One daemon per host id in the whole cluster: its host file stays write-locked while it runs.
    if (c.fileLockspaceDir !== null) {
      this.lockspaceId = lockspaces.get(c.fileLockspaceDir);
      this.hostLock = HostLock.acquire(c.fileLockspaceDir, { host: c.hostId, started: at, version: VERSION, fingerprint: this.fingerprint(), lockspace: c.fileLockspaceDir });
      // For `vmlockd cluster`'s check that every host mounts a shared filesystem at one path.
      const notPublished = publishMounts(c.fileLockspaceDir, c.hostId);
      if (notPublished !== undefined) this.log.warn(`cannot publish this host's mounts in ${c.fileLockspaceDir}: ${notPublished}`);
    }
    // A new boot: owners no live process stands for are gone with it (after_reboot, src/daemon/boot.ts).
    const boot = bootId();
    const prevBoot = journal.newest('DaemonStarted')?.payload as { bootId?: string } | undefined;
    const rebooted = rebootReleases(state, prevBoot?.bootId, boot, c.afterReboot, at);
    // Folded in now, so neither adoption nor the re-take holds them again; journaled below, after
    // DaemonStarted, so audit reads the start in order (folding a release twice changes nothing).
    for (const f of rebooted) evolve(state, f);
    if (rebooted.length > 0) {
      this.log.warn(`the host rebooted: released ${rebooted.length} lock(s) of owners taken through the control API or JSON lines (after_reboot = release)`);
    }
    // Grants the journal forgot (its filesystem failed): found in the lockspace's records, re-taken below.
    const blockdevName = async (disk: string) => (await lookupBlockdevNames([disk], { lvmDir: c.lvmLockspaceDir, scsiDir: c.scsiLockspaceDir }, runCommand)).get(disk) ?? null;
    const found = await recoverForgotten(journal, state, { host: c.hostId, dirs: scanDirs(c, (d) => onSharedFs(d)), bootId: boot, at, registryFile: path.join(c.stateDir, REGISTRY_FILE), shared: (d) => onSharedFs(d), blockdevName }, (level, msg) => this.log.log(level, msg));
    // Descriptors systemd's store handed back first: those locks never went away (invariant 9).
    const adoption = this.service.adoptInto(locker, state, at);
    startMark('retake');
    const { facts, lost } = locker.reacquire(state, at);
    startMark('retaken');
    if (found.count > 0) this.service.start = { ...this.service.start, found: found.count };
    // Direct locks re-taken (not adopted): no record proves the gap was clean (src/daemon/direct-gap.ts).
    const retakenDirect = directRetaken(facts);
    // Adopted shared direct locks whose description may be a released one's (review27c F3): counted too.
    const adoptedDirect = adoption.unproven ?? [];
    const direct = [...retakenDirect, ...adoptedDirect];
    if (direct.length > 0) this.service.start = { ...this.service.start, directUnproven: direct.length, directNote: directNote(direct.length, adoptedDirect.length) };
    const s = this.service.start;
    const started = fact('DaemonStarted', at, { pid: process.pid, version: VERSION, lockspace: c.fileLockspaceDir, lockspaces: Object.fromEntries(lockspaces), held: locker.size, start: s.how, adopted: s.adopted, dropped: adoption.dropped, ...(boot ? { bootId: boot } : {}), ...(found.count > 0 ? { found: found.count } : {}), ...(direct.length > 0 ? { directUnproven: direct.length } : {}) });
    // A full state directory never fails the start: the locks are taken; their facts wait (decision 0023).
    waitingFacts.record([started, ...rebooted, ...found.mark(adoption.facts), ...found.mark(facts)], (f, wait) => engine.recordOrWait(f, wait), (f) => evolve(engine.state, f));
    // Only now, with the LeaseLost journaled, does a re-take write its record over an intrusion's proof
    // (and hand the descriptor to the store); while the facts wait, the proof stays (review26a F3).
    writeJournaledRetakes(locker, waitingFacts);
    startMark('journaled');
    const retaken = facts.filter((f) => f.kind === 'Reacquired').length;
    this.service.counted(retaken, lost.length);
    if (retaken > 0) this.log.info(`re-took ${retaken} lock(s) held before the restart`);
    const directWarning = directGapWarning(retakenDirect);
    if (directWarning) this.log.warn(directWarning);
    const adoptedWarning = directAdoptedWarning(adoptedDirect);
    if (adoptedWarning) this.log.warn(adoptedWarning);
    if (c.journalSync === 'write') this.log.warn(`journal_sync = "write": a reply waits for write(2) only; if ${path.dirname(c.journal)}'s filesystem fails, locks granted in the last seconds before it can be forgotten (docs/decisions/0002)`);

    this.server = createApiServer({
      engine,
      status: () => this.status(),
      locks: () => lockView(engine.state),
      audit: (q) => this.audit(q),
      leaseRules: () => ({ autoDiskLeases: this.config.autoDiskLeases, requireLeaseForDisks: this.config.requireLeaseForDisks }),
      log: (level, msg, fields) => this.log.log(level, msg, fields),
      ...maxRequestBytes(),
    });
    // The control socket the previous daemon handed over (its queue kept), else bound here.
    const controlFd = this.inherited?.take('control', c.socket);
    if (!controlUnserved) await listenUnixPath(this.server, c.socket, controlFd);
    // An inherited path is removed by a failed start only if the daemon it came from is gone too.
    this.ownsSocket = controlFd === undefined && !controlUnserved;
    this.controlFromManager = controlFd !== undefined && this.inherited?.isManaged('control', c.socket) === true;
    this.verifier = new Verifier({
      locker,
      state: () => engine.state,
      // A refused write: the round's facts (LeaseLost...) wait for room, in force meanwhile (decision 0026).
      // A re-take's own record goes into the lock file only with its LeaseLost and Reacquired durable;
      // while they wait, what its take found stays there (wait27): tied to those facts (engine29).
      record: (facts) => recordRound(locker, waitingFacts, facts, (f, kept) => this.later(f, kept)),
      intervalMs: () => this.config.verifyIntervalMs,
      beforeRound: (now) => {
        // A disk held before it existed is known by identity once created (review25a F1).
        engine.learn('verifier');
        // Re-establishes the host file after a cluster-filesystem remount (or throws, loudly); the
        // round's lock checks that follow re-verify this host's own locks.
        const notice = this.hostLock?.heartbeat(now, this.fingerprint());
        if (notice) this.log.warn(notice);
      },
      onConflict: (conflict) => {
        this.meters.conflict();
        for (const h of this.conflictHandlers) h(conflict);
      },
      log: (level, msg, fields) => this.log.log(level, msg, fields),
    });
    this.verifier.start();
    for (const start of this.sourceStarters) this.sources.push(await start(this.sourceContext(), this));
    if (this.handedConns.length > 0) {
      this.log.info(`takeover: closed ${this.handedConns.length} client connection(s) handed over (this start serves no such socket)`);
      closeConns(this.handedConns.splice(0));
    }
    // Publication exists before the status gauges are registered: they are read from it.
    this.publication = new Publication(journal, (level, msg) => this.log.log(level, msg));
    void this.publication.configure(publishSettings(c));
    // The status gauges, now that every part they read exists (the endpoint was bound before the locks).
    if (c.metricsAddress) this.meters.watch(this.metricsSource());
    if (this.loaded.files.length > 0) {
      this.watch = watchConfig(this.loaded.files, this.flags, () => this.config, { reload$: this.reload$ }).subscribe({
        next: (u) => this.onConfig(u),
        error: (e: unknown) => this.log.error(`config watcher stopped: ${(e as Error).message}`),
      });
    }
    // A start with few locks is wholly in SQLite before we say we listen, so a reader of the file
    // sees it at once; a large re-take (thousands of locks) moves in the background, in batches,
    // while we serve: the staging file already holds it durably.
    if (journal.pendingCount <= START_FLUSH_ROWS) {
      try {
        journal.nonBlocking(() => journal.flushStaged());
      } catch (e) {
        // SQLite is full but the staging file took the start's facts: serve (the locks stay held);
        // the background move retries until the disk has room (status shows it meanwhile).
        this.journalWatch.sqliteFailed(e as Error);
      }
    }
    for (const name of this.inherited?.closeRest() ?? []) this.log.info(`takeover: closed the handed-over ${name} (this start serves another address)`);
    this.ownsSocket = !this.controlFromManager && !controlUnserved;
    const where = c.fileLockspaceDir === null ? 'direct (image files)' : c.fileLockspaceDir;
    startMark('listening');
    process.stdout.write(
      `vmlockd ${VERSION} listening on ${c.socket} (host ${c.hostId}, lockspace ${where}, journal ${c.journal}, pid ${process.pid})\n`,
    );
    this.handoff = await listenHandoff(
      c.stateDir,
      {
        descriptors: () => locker.descriptors(),
        listeners: () => this.listenerFds(),
        connections: () => this.sources.flatMap((src) => src.handedConnections?.() ?? []),
        stop: (r) => this.stop(r),
        resume: (fds, conns) => (this.resume ? this.resume(fds, conns) : Promise.reject(new Error('no way to serve again'))),
      },
      (level, msg) => this.log.log(level, msg),
    );
    this.service.ready(() => this.statusLine());
    // Start-up's burst (the re-takes, their facts moving into SQLite, the snapshot they trigger)
    // leaves its garbage in the old generation: collect it once, when the start has settled.
    this.cancelSettle = collectWhenSettled(() => journal.pendingCount > 0 || this.snapshotTimer !== undefined, { afterMs: 1_000, everyMs: 250, maxMs: 60_000 });
  }

  /** The client connections handed over for this kind and address (each taken once). */
  takeConnections(kind: HandedConnection['kind'], addr: string): HandedConnection[] {
    const mine = this.handedConns.filter((c) => c.kind === kind && c.addr === addr);
    this.handedConns = this.handedConns.filter((c) => !mine.includes(c));
    this.connsAdopted += mine.length;
    return mine;
  }

  /** Copies of every listening socket, for a take-over (src/daemon/listeners.ts). */
  private listenerFds(): PassedFd[] {
    const out: PassedFd[] = [];
    // A socket of systemd's travels marked as such: the next daemon must not unlink its path either.
    const add = (kind: ListenerKind, addr: string, fd: number | undefined, managed = false) => {
      if (fd !== undefined) out.push({ name: listenerName(kind, addr, managed), fd: native.dupFd(fd) });
    };
    add('control', this.config.socket, serverFd(this.server), this.controlFromManager);
    if (this.config.metricsAddress) add('metrics', this.config.metricsAddress, serverFd(this.metrics));
    for (const src of this.sources) {
      const l = src.listener?.();
      if (l) add(l.kind, l.addr, l.fd, l.managed === true);
    }
    return out;
  }

  private statusLine(): string {
    const st = this.status();
    const v = st.verifiedAt ? `last verified ${String(st.verifiedAt)}` : 'not verified yet';
    const m = this.metricsEndpoint?.problem ? '; METRICS NOT SERVED (see the log)' : '';
    return `${String(st.locks)} lock(s) on ${String(st.resources)} resource(s); ${v}${this.reloadNote ? `; ${this.reloadNote}` : ''}${m}`;
  }

  /** Sources started after the control API listens (virtlockd protocol server, virsh event stream). */
  readonly sourceStarters: Array<(ctx: SourceContext, daemon: Daemon) => Promise<RunningSource>> = [];

  sourceContext(): SourceContext {
    const engine = this.engine!;
    return {
      host: this.config.hostId,
      submit: (cmd) => engine.submit(cmd),
      dispatch: (cmd, done) => engine.dispatch(cmd, done),
      submitEvent: (ev) => engine.submitEvent(ev),
      reject: (source, error, raw) => engine.reject(source, error, raw),
      rejectThen: (source, error, raw, done) => engine.rejectThen(source, error, raw, done),
      record: (facts, opts) => facts.length === 0 || (opts?.answers ? this.journalWatch.record((f) => engine.record(f), facts) : this.later(facts)).length > 0,
      state: () => engine.state,
      log: (level, msg, fields) => this.log.log(level, msg, fields),
    };
  }

  /**
   * A config file changed (chokidar) or SIGHUP: apply what can change live, refuse the rest with the
   * reason, and journal both. Never re-names a held resource.
   */
  private onConfig(u: ConfigUpdate): void {
    if (!this.engine) return;
    if (this.service) this.service.reloading(() => this.applyConfig(u));
    else this.applyConfig(u);
  }

  private applyConfig(u: ConfigUpdate): void {
    if (!this.engine) return;
    const at = new Date().toISOString();
    if (u.kind === 'rejected') {
      this.log.error(`config rejected, the running config stays in force: ${u.error}`);
      this.reloadNote = `config rejected at ${at} (the running config stays)`;
      this.record([fact('ConfigRejected', at, { file: u.file, error: u.error, trigger: 'watch' })]);
      return;
    }
    const locksHeld = (this.locker?.size ?? 0) > 0;
    const { apply, refuse } = classifyChange(u.diff, locksHeld, u.loaded.sources, { sources: this.configSources, files: this.loaded.files });
    const refused = [...refuse];
    const next: Record<string, unknown> = { ...this.config };
    const applied: typeof apply = [];
    for (const d of apply) {
      if (RESTART_ONLY.has(d.key)) {
        refused.push({ key: d.key, reason: `${confName(d.key)} changed: needs a restart to take effect` });
        continue;
      }
      if ((d.key === 'lvmLockspaceDir' || d.key === 'scsiLockspaceDir') && typeof d.to === 'string') {
        try {
          this.openLockspace(d.key === 'lvmLockspaceDir' ? 'LVM lockspace' : 'SCSI lockspace', d.to);
        } catch (e) {
          refused.push({ key: d.key, reason: `${confName(d.key)} cannot change: ${(e as Error).message}` });
          continue;
        }
      }
      if (d.key === 'fileLockspaceDir') {
        // The host file moves with the lockspace; if this host id is taken there, keep the old one.
        try {
          this.moveHostLock(d.to as string | null, at);
        } catch (e) {
          refused.push({ key: d.key, reason: `file_lockspace_dir cannot change: ${(e as Error).message}` });
          continue;
        }
      }
      next[d.key] = d.to;
      applied.push(d);
    }
    const config = next as unknown as Config;
    // Where each running value comes from now: a refused key keeps its old source (review25c F1).
    const kept = new Set(refused.map((r) => r.key));
    this.configSources = Object.fromEntries(CONFIG_KEYS.map((k) => [k, kept.has(k) ? this.configSources[k] : u.loaded.sources[k]])) as Record<ConfigKey, string>;
    this.reloadNote = `config reloaded at ${at}: ${applied.length} change(s) applied` + (refused.length > 0 ? `, ${refused.length} refused` : '');
    if (applied.length > 0) {
      this.config = config;
      this.log.level = config.logLevel;
      this.log.format = config.logFormat;
      this.engine.setRules(namingRules(config));
      if (applied.some((d) => d.key === 'verifyIntervalMs')) this.verifier?.reschedule();
      if (applied.some((d) => PUBLISH_KEYS.has(d.key))) void this.publication?.configure(publishSettings(config));
      for (const d of applied) this.log.info(`config: ${confName(d.key)} changed from ${JSON.stringify(d.from)} to ${JSON.stringify(d.to)}`);
      this.record([fact('ConfigChanged', at, { changes: applied, fingerprint: this.fingerprint(), trigger: 'watch' })]);
      try {
        this.hostLock?.heartbeat(at, this.fingerprint());
      } catch (e) {
        this.log.error(`host heartbeat failed: ${(e as Error).message}`);
      }
    }
    if (refused.length > 0) {
      for (const r of refused) this.log.warn(`config: ${r.reason}`);
      this.record([fact('ConfigRejected', at, { refused, trigger: 'watch' })]);
    }
  }

  private record(facts: readonly NewFact[]): void {
    this.later(facts);
  }

  /**
   * Journal facts no client is answered for (the verifier's, a reload's, a source's notes, the stop's):
   * a refused write keeps them waiting in memory, in force and journaled first once there is room
   * (src/daemon/waiting-facts.ts, decision 0026); any other failure is logged. Returns the stored facts.
   */
  /** `kept`: the facts wait for room (WaitingFacts.later took them), with that mark. */
  private later(facts: readonly NewFact[], kept?: (mark: number) => void): Fact[] {
    const engine = this.engine;
    const waiting = this.waitingFacts;
    if (!engine || !waiting) return [];
    return this.journalWatch.record((f) => {
      const stored = engine.recordOrWait(f, (timed, e) => {
        if (!waiting.later(timed, e)) return false;
        kept?.(waiting.mark);
        return true;
      });
      // Folded in now: the owners' vouches as the running state has them (waiting-facts.ts settle()).
      waiting.settle();
      return stored;
    }, facts);
  }

  private moveHostLock(dir: string | null, at: string): void {
    let next: HostLock | undefined;
    let id: string | undefined;
    if (dir !== null) {
      id = this.openLockspace('file lockspace', dir);
      next = HostLock.acquire(dir, { host: this.config.hostId, started: this.startedAt, version: VERSION, fingerprint: fingerprint(this.config, id), lockspace: dir });
      publishMounts(dir, this.config.hostId);
    }
    this.hostLock?.release(at);
    this.hostLock = next;
    this.lockspaceId = id;
  }

  /** A reload names a lockspace directory: open it as a start would (lockspaces.ts) and pin it. */
  private openLockspace(what: string, dir: string): string {
    const id = openLockspaces([[what, dir]], { ...this.lockspaceCtx!, state: this.engine?.state }).get(dir)!;
    this.locker?.pinLockspace(dir, id);
    return id;
  }

  private afterFacts(facts: readonly Fact[]): void {
    this.verifier?.factsSeen(facts);
    this.factsSinceSnapshot += facts.length;
    this.meters.factsSeen(facts);
    this.publication?.notify(this.engine?.state.seq ?? 0, facts[0]?.seq);
    // One line per fact worth reading, naming its seq (src/daemon/log-facts.ts); LeaseLost among them.
    for (const f of facts) logFact(this.log, f);
    // Not now: a snapshot moves every staged fact into SQLite first, and after start-up's re-takes
    // that would block the first requests; a snapshot a moment later replays the same.
    if (this.factsSinceSnapshot >= SNAPSHOT_EVERY && this.snapshotTimer === undefined) {
      this.snapshotTimer = setTimeout(() => {
        this.snapshotTimer = undefined;
        this.snapshot();
      }, SNAPSHOT_DELAY_MS);
      this.snapshotTimer.unref();
    }
  }

  private snapshot(): void {
    if (this.snapshotTimer !== undefined) clearTimeout(this.snapshotTimer);
    this.snapshotTimer = undefined;
    if (!this.journal || !this.engine) return;
    // Not while facts wait for room in the journal (a full disk): the state already holds their
    // effects, and a snapshot stamped with the journal's seq would carry them without the facts (a
    // lock a waiting LeaseLost removed, neither re-taken nor recorded as lost after a crash).
    if ((this.waitingFacts?.pending ?? 0) > 0) {
      if (this.stopping) return;
      this.snapshotTimer = setTimeout(() => this.snapshot(), SNAPSHOT_RETRY_MS);
      this.snapshotTimer.unref();
      return;
    }
    const journal = this.journal;
    const state = this.engine.state;
    try {
      // Never wait out SQLite's busy timeout here: the snapshot can wait, the event loop cannot. A
      // running daemon leaves a backlog to the writer thread (the snapshot is retried); a stop moves it.
      if (this.stopping) journal.nonBlocking(() => journal.flushStaged());
      journal.nonBlocking(() => journal.writeSnapshot(state.seq, toSnapshot(state)));
      this.factsSinceSnapshot = 0;
    } catch (e) {
      // The facts are journaled; a snapshot only shortens the next start's replay: a failed one
      // (SQLITE_BUSY, SQLITE_FULL) must never take the daemon and its locks down. Retried later.
      this.snapshotFailures++;
      this.journalWatch.limited('snapshot', 'warning', `journal: snapshot not written, the daemon carries on with its locks held (retried in ${SNAPSHOT_RETRY_MS / 1000} s): ${(e as Error).message}`);
      if (this.stopping) return;
      this.snapshotTimer = setTimeout(() => this.snapshot(), SNAPSHOT_RETRY_MS);
      this.snapshotTimer.unref();
    }
  }

  /** The lock-relevant settings' fingerprint, published in the host record for `vmlockd cluster`. */
  fingerprint(): string {
    return fingerprint(this.config, this.lockspaceId);
  }

  /** What the metrics read: the state, the lockspace's hosts, the status gauges (src/daemon/metrics.ts). */
  private metricsSource(): MetricsSource {
    return {
      state: () => this.engine?.state,
      hosts: () => (this.config.fileLockspaceDir === null ? null : { entries: listHosts(this.config.fileLockspaceDir), self: this.config.hostId, fingerprint: this.fingerprint() }),
      gauges: () => {
        const st = this.status();
        return {
          locks_held: { help: 'Locks held by VMs on this host (one per VM and disk).', value: Number(st.locks) },
          resources_held: { help: 'Lock files this host holds open.', value: Number(st.resources) },
          last_seq: { help: 'Sequence number of the last journaled fact.', value: Number(st.lastSeq) },
          seconds_since_verified: { help: 'Seconds since every held lock last checked out.', value: Number(st.sinceVerifiedMs ?? 0) / 1000 },
          last_verified_timestamp_seconds: { help: 'Unix time at which every held lock last checked out.', value: st.verifiedAt ? Date.parse(String(st.verifiedAt)) / 1000 : 0 },
          verify_errors_total: { help: 'Lock checks that failed with an error (not a loss) since start.', value: Number(st.verifyErrors ?? 0) },
          unverified_locks: { help: 'Held locks whose last check failed with an error.', value: Number(st.unverified ?? 0) },
          snapshot_failures_total: { help: 'Journal snapshots that failed (retried later) since start.', value: Number(st.snapshotFailures ?? 0) },
          fd_limit: { help: 'RLIMIT_NOFILE soft limit (one descriptor per held lock).', value: Number(st.fdLimit) },
          ...this.journalWatch.gauges(),
          ...(this.waitingFacts?.gauges() ?? {}),
          ...this.log.gauges(),
          ...(this.publication?.gauges(Number(st.lastSeq)) ?? {}),
        };
      },
    };
  }

  status(): Record<string, unknown> {
    const c = this.config;
    const state = this.engine?.state;
    return {
      version: VERSION,
      host: c.hostId,
      pid: process.pid,
      startedAt: this.startedAt,
      socket: c.socket,
      stateDir: c.stateDir,
      journal: c.journal,
      lockspace: c.fileLockspaceDir,
      mode: c.fileLockspaceDir === null ? 'direct' : 'file',
      locks: state ? [...state.resources.values()].reduce((n, r) => n + r.holders.size, 0) : 0,
      resources: this.locker?.size ?? 0,
      owners: state?.owners.size ?? 0,
      // The last acknowledged fact's seq (durable in the staging file before any reply names it).
      // journalMovedSeq: the last fact moved on into SQLite (every ~20 ms), where another process
      // reading journal.db (audit --journal, sqlite3) finds it; the two differ by the staged backlog.
      lastSeq: state?.seq ?? 0,
      journalMovedSeq: Math.max(0, (state?.seq ?? 0) - (this.journal?.pendingCount ?? 0)),
      logLevel: c.logLevel,
      onConflict: c.onConflict,
      verifyIntervalMs: c.verifyIntervalMs,
      maxClients: c.maxClients,
      libvirtUri: c.libvirtUri,
      libvirt: this.libvirtStatus?.() ?? null,
      fingerprint: this.fingerprint(),
      lockspaceId: this.lockspaceId ?? null,
      configFiles: this.loaded.files,
      // `config show` prints these: the config in effect (flags and live reloads included).
      config: c,
      configSources: this.loaded.sources,
      fdLimit: this.fdLimit,
      verifiedAt: this.verifier?.lastOkAt ?? null,
      sinceVerifiedMs: this.verifier ? this.verifier.sinceLastOkMs() : null,
      verifyErrors: this.verifier?.errorsTotal ?? 0,
      unverified: this.verifier?.unverified.size ?? 0,
      pendingRetakes: this.verifier?.pendingCount ?? 0,
      snapshotFailures: this.snapshotFailures,
      hostFile: this.hostLock?.file ?? null,
      journalTrouble: this.journalWatch.status(),
      startFactsWaiting: this.waitingFacts?.startStatus() ?? null,
      // Facts no client waits for that the journal refused: in force, waiting in memory (decision 0026).
      factsWaiting: this.waitingFacts?.status() ?? null,
      // How this start got its locks (fresh, store, takeover; resumed: a failed take-over's old
      // daemon serving again) and, for a take-over, how many protocol client connections came along.
      started: this.service ? { ...this.service.info(), ...(this.takenOver?.resumed ? { how: 'resumed' } : {}), connections: this.connsAdopted } : null,
      hostFileProblem: this.hostLock?.problem ?? null,
      publication: this.publication?.status(state?.seq ?? 0) ?? null,
      metricsProblem: this.metricsEndpoint?.problem ?? null,
    };
  }

  private audit(q: AuditQuery): unknown[] {
    if (!this.journal) return [];
    // Never wait out another process's write lock here (decision 0021): a busy journal answers
    // VMLOCKD_ERR_JOURNAL_BUSY, try again.
    const journal = this.journal;
    // A disk is asked about under every name its facts use: every other journaled name of the same
    // file (a hard link, a loop device: review27 F2) and a virtlockd-protocol lease's lock file. Index
    // probes only (scan false: the event loop's question).
    return journal.nonBlocking(() => {
      if (!q.disk) return journal.query({ ...q, ...(q.owner ? { owner: q.owner } : {}) });
      const probe = { disksWithInode: (inodes: readonly string[]) => journal.disksWithInode(inodes, false) };
      const named = [q.disk, ...(diskByIdentity(q.disk, [probe])?.disks.filter((d) => d !== q.disk) ?? [])];
      return journal.query({ ...q, ...(q.owner ? { owner: q.owner } : {}), disk: [...named, ...leaseNames(named, named, [journal], false).filter((d) => !named.includes(d))] });
    });
  }

  /** SIGTERM: journal the stop and exit. VMs are never touched (invariant 7). */
  stop(reason: string): Promise<void> {
    this.waitingFacts?.stop();
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    this.service?.stopping(reason);
    this.cancelSettle?.();
    this.watch?.unsubscribe();
    this.verifier?.stop();
    this.metricsEndpoint?.close();
    const handingOver = this.handoff?.handingOver ?? false;
    const connections = this.handoff?.handsConnections ?? false;
    await Promise.all(this.sources.map((src) => src.stop({ handingOver, connections }).catch((e: unknown) => this.log.warn(`stopping a source: ${(e as Error).message}`))));
    let closed: Promise<void>;
    if ((handingOver || this.controlFromManager) && this.server) {
      // Stop accepting, but keep the connections accepted just now: http's close() would drop them
      // as idle before their request is read. The next daemon (taking over, or started by systemd
      // on the same socket) accepts from the same queue.
      const server = this.server;
      closed = new Promise<void>((r) => net.Server.prototype.close.call(server, () => r()));
      await new Promise((r) => setTimeout(r, HANDOVER_GRACE_MS));
    } else closed = this.server ? new Promise<void>((r) => this.server!.close(() => r())) : Promise.resolve();
    this.server?.closeIdleConnections();
    const deadline = new Promise<void>((r) => setTimeout(r, STOP_DEADLINE_MS / 2).unref());
    await Promise.race([closed, deadline]);
    this.server?.closeAllConnections();
    if (this.clockTimer !== undefined) clearInterval(this.clockTimer);
    if (this.engine) {
      this.engine.stop();
      const held = this.locker?.size ?? 0;
      // The kernel drops our locks when this process exits; the journal keeps them as held, so
      // the next start re-takes them (or records LeaseLost). That is what lets a restart spare the VMs.
      const stopped = [fact('DaemonStopped', new Date().toISOString(), { pid: process.pid, reason, held })];
      if (this.startFailed) {
        try {
          this.engine.record(stopped);
        } catch {
          // the start's own error says what is wrong
        }
      } else this.record(stopped);
      if (!this.startFailed) this.snapshot();
      this.waitingFacts?.abandon();
      if (held > 0) this.log.info(`stopping with ${held} lock(s) held; they will be re-taken at the next start`);
    }
    // Its last batch, if the lockspace answers within a moment; the next start resumes the rest.
    await this.publication?.close();
    try {
      this.journal?.close();
    } catch (e) {
      // Facts that could not move into SQLite stay in the staging file; the next start moves them.
      if (!this.startFailed) this.log.warn(`journal: ${(e as Error).message}`);
    }
    // Close only, never unlock: a copy in systemd's store (or the daemon taking over) keeps each lock.
    // A take-over keeps them open until the new daemon is up (src/daemon/takeover.ts).
    if (!this.handoff?.handingOver) this.locker?.closeAll();
    this.service?.close();
    this.hostLock?.release(new Date().toISOString());
    if (this.ownsSocket && !handingOver) {
      try {
        fs.unlinkSync(this.config.socket);
      } catch {
        // already gone
      }
    }
    this.guard?.release();
    this.handoff?.afterStop();
  }
}
