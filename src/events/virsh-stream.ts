// libvirt as an event source: `virsh -c URI event --all --loop --timestamp`, supervised, parsed, and
// mapped onto lock commands; plus reconciliation with libvirt's view on every (re)connect.
//
// Events arrive after the fact (the VM already runs, or already stopped). So a refused acquire is
// not a veto but a finding: the VM runs without its lock. It is journaled (LockRefused names both
// owners) and `on_conflict` decides what else happens. The synchronous veto is the qemu hook's job.
//
// Ordering: every event and every reconciliation runs through ONE serial queue. A reconciliation
// lists domains at one instant; an event that arrives while it runs is applied after it, so the
// newer information always lands last (e.g. "running at list time" then "Stopped" -> released).
import { spawn as nodeSpawn, execFile } from 'node:child_process';
import * as os from 'node:os';
import * as readline from 'node:readline';
import type { Readable } from 'node:stream';
import { refusalConflicts } from '../engine/conflict-line.js';
import { BadInputError } from '../engine/errors.js';
import { isHandOverRefusal } from '../engine/holder-record.js';
import type { Reply } from '../engine/pipeline.js';
import type { SourceContext, RunningSource } from '../engine/source.js';
import { heldBy } from '../engine/state.js';
import type { DiskRequest, HandOverOutcome, Owner } from '../engine/types.js';
import { fact, type LibvirtRef, type NewFact } from '../engine/facts.js';
import { applyLeaseRules, DEFAULT_LEASE_RULES, domainLocks, type DomainLocks, type LeaseRules } from './domain-locks.js';
import type { DomainInfo } from './domain-xml.js';
import { parseDomainXmlOffLoop } from './domain-xml-offload.js';
import { describeLibvirt, hostUuidOf, identityKey, judgeGone, sameLibvirt, type GoneVerdict } from './libvirt-identity.js';
import { mapLifecycle, parseVirshEventLine, type LibvirtEvent } from './virsh-events.js';

export type ConflictPolicy = 'report' | 'suspend';

/** Lock owners whose locks this source may correct: those taken by libvirt's own sources. */
export const LIBVIRT_SOURCES: ReadonlySet<string> = new Set(['virsh', 'virsh-reconcile', 'hook']);

// ---------------------------------------------------------------------------------------------
// Running virsh

export interface VirshResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `virsh -c URI ARGS...`; never rejects (a failure is a non-zero code with stderr). */
export type VirshRunner = (args: readonly string[]) => Promise<VirshResult>;

/** virsh translates its messages: LC_ALL=C keeps every line in the form the parser knows. */
export function virshEnv(): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: 'C', LANG: 'C' };
}

export function virshRunner(uri: string, timeoutMs = 30_000): VirshRunner {
  return (args) =>
    new Promise((resolve) => {
      execFile('virsh', ['-q', '-c', uri, ...args], { env: virshEnv(), timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        const why = err && code === 1 && !stderr ? (err as Error).message : stderr;
        resolve({ code, stdout: String(stdout), stderr: String(why ?? '') });
      });
    });
}

/** The first line of virsh's error output, for logs. */
function firstError(r: VirshResult): string {
  return (r.stderr.split('\n').find((l) => l.trim() !== '') ?? `exit status ${r.code}`).trim();
}

// ---------------------------------------------------------------------------------------------
// The event handler: parsed events and reconciliation -> commands

export interface HandlerOptions {
  readonly uri: string;
  readonly ctx: SourceContext;
  readonly virsh: VirshRunner;
  /** Read at every conflict: the config reloads live. */
  readonly onConflict: () => ConflictPolicy;
  readonly now?: () => Date;
  /** Schedule fn after ms; returns a cancel function (tests pass a fake). */
  readonly later?: (fn: () => void, ms: number) => () => void;
  /**
   * Delays between retries of an acquire refused only because this same VM still holds the disk on
   * another host: the migration source releases at "Suspended Migrated", which its host sees about
   * when we see "Resumed Migrated". Calling that a conflict would suspend a freshly migrated VM.
   */
  readonly handOverRetriesMs?: readonly number[];
  /** virtlockd's lease rules, read at every use (auto_disk_leases = 0: only <lease> elements are locked). */
  readonly leaseRules?: () => LeaseRules;
  /**
   * Delays before another reconcile after one that failed or could not finish (libvirt unreachable,
   * a volume or domain state that could not be read); the last one repeats.
   */
  readonly reconcileRetriesMs?: readonly number[];
  /** A reconcile this long after the last one, so nothing missed stays wrong for long; 0: none. */
  readonly periodicReconcileMs?: number;
  /**
   * After a (re)connect's reconcile, another this much later. virsh says nothing when its event
   * registration is in place, so a change in the gap before it would be neither an event nor (if
   * the first listing ran first) in a listing; the second listing, well after the registration,
   * shows it.
   */
  readonly settleReconcileMs?: number;
  /** The bound on an incoming migration's hand-over request (DEFAULT_INCOMING_WAIT_MS). */
  readonly incomingWaitMs?: number;
  /**
   * false: this stream's URI came in force by a live change of libvirt_uri. This libvirt may not be
   * the one running this host's VMs (the qemu hook keeps locking for the real one, before and after
   * the change); its saying "no such domain" or "shut off" about a VM is no evidence that it stopped
   * here, so a VM's locks are released on such an answer only if this libvirt has itself reported
   * that VM running (review25a F2; review25c F2: also for locks the hook takes after the change).
   * Default true: the stream the daemon starts with. Either way a VM's locks are released on "gone"
   * only by the libvirt that vouched for them (judgeGone, decision 0025).
   */
  readonly adoptHeld?: boolean;
  /** This machine's host name (os.hostname()): the qemu hook serves this host's qemu:///system. */
  readonly localHost?: string;
}

const DEFAULT_HAND_OVER_RETRIES_MS = [250, 500, 1000, 2000, 4000, 8000];
/**
 * How long an incoming migration seen on the event stream (Started Migrated) keeps its hand-over
 * request at most, when neither its resume, a conflict nor its stop ends it first.
 */
const DEFAULT_INCOMING_WAIT_MS = 30 * 60_000;
const DEFAULT_RECONCILE_RETRIES_MS = [2000, 5000, 15_000, 30_000, 60_000];
const DEFAULT_PERIODIC_RECONCILE_MS = 5 * 60_000;
const DEFAULT_SETTLE_RECONCILE_MS = 5000;

/** What libvirt says about one domain right now. */
export type DomainState =
  | { readonly kind: 'active'; readonly state: string }
  | { readonly kind: 'gone'; readonly state: string }
  | { readonly kind: 'unknown'; readonly error: string };

/** virsh's words when the domain does not exist (as opposed to libvirt not answering). */
const NO_DOMAIN_RE = /Domain not found|failed to get domain|no domain with matching/i;

/** Read `virsh domstate` output or failure: only "shut off" or "no such domain" mean the domain is gone. */
export function domainStateOf(r: VirshResult): DomainState {
  if (r.code === 0) {
    const state = r.stdout.trim().split('\n')[0]?.trim() ?? '';
    if (state === '') return { kind: 'unknown', error: 'virsh domstate printed nothing' };
    return isActiveState(state) ? { kind: 'active', state } : { kind: 'gone', state };
  }
  const error = firstError(r);
  return NO_DOMAIN_RE.test(r.stderr) ? { kind: 'gone', state: error } : { kind: 'unknown', error };
}

function who(owner: Owner): string {
  return owner.name ? `${owner.name} (uuid ${owner.uuid})` : owner.uuid;
}

type Refused = Extract<Reply, { status: 'refused' }>;

export class LibvirtEventHandler {
  private queue: Promise<void> = Promise.resolve();
  private uuidByName = new Map<string, string>();
  /** Per VM uuid: device alias -> the path locked for it, from the last dumpxml (device-removed names only the alias). */
  private readonly aliases = new Map<string, Map<string, string>>();
  private readonly timers = new Set<() => void>();
  /** The one scheduled reconcile (a retry or the periodic one), with when it is due. */
  private nextReconcile: { cancel: () => void; due: number } | undefined;
  private reconcileFailures = 0;
  /** The next finished reconcile schedules the settle one (after a connect) instead of the periodic one. */
  private settle = false;
  /** Set while a reconcile or event could not finish: the next reconcile is a retry, not a periodic one. */
  private incomplete: string | undefined;
  private closed = false;
  private readonly ctx: SourceContext;
  private readonly virsh: VirshRunner;
  private readonly now: () => Date;
  private readonly later: (fn: () => void, ms: number) => () => void;
  private readonly retries: readonly number[];
  /**
   * Incoming migrations (Started Migrated) waiting for the source to let go: uuid -> their disks
   * and the timer that bounds the wait. Their hand-over request makes the source's release reserve
   * the disks for this host (decision 0009); the resume's acquire, a conflict or the domain's stop
   * ends it (HandOverEnded).
   */
  private readonly waits = new Map<string, { owner: Owner; disks: DiskRequest[]; cancel: () => void }>();

  /**
   * VMs (uuid, or the name a domstate was asked by) this stream's libvirt has itself reported running.
   * With adoptHeld false only these may lose their locks on its "gone" (mayRelease); the set is
   * filled as this libvirt reports, so a lock the hook takes after the stream started is kept too.
   */
  private readonly vouched = new Set<string>();

  /** Which libvirt this URI reaches (`virsh uri`, `hostname`, `capabilities`), learnt at each (re)connect. */
  private identity: LibvirtRef | undefined;
  private identityStale = true;
  private identityError: string | undefined;
  /** VMs whose locks a "gone" did not release because this libvirt does not answer for them (status). */
  private readonly keptVms = new Map<string, { owner: Owner; said: string; reason: Exclude<GoneVerdict, { release: true }>['reason']; recorded?: LibvirtRef; since: string }>();

  constructor(private readonly opts: HandlerOptions) {
    this.ctx = opts.ctx;
    this.virsh = opts.virsh;
    this.now = opts.now ?? (() => new Date());
    this.later =
      opts.later ??
      ((fn, ms) => {
        const t = setTimeout(fn, ms);
        t.unref();
        return () => clearTimeout(t);
      });
    this.retries = opts.handOverRetriesMs ?? DEFAULT_HAND_OVER_RETRIES_MS;
  }

  private rules(): LeaseRules {
    return this.opts.leaseRules?.() ?? DEFAULT_LEASE_RULES;
  }

  /** One line of virsh output (stdout or stderr). Never throws: a bad line is journaled and skipped. */
  line(raw: string): void {
    const ev = parseVirshEventLine(raw);
    switch (ev.kind) {
      case 'garbled':
        this.ctx.reject('virsh', new BadInputError(`virsh event line not understood: ${ev.reason}`), ev.raw);
        return;
      case 'noise':
        return;
      case 'disconnected':
        this.ctx.log('warning', `libvirt ${this.opts.uri}: virsh lost its connection (${ev.reason})`);
        return;
      case 'error':
        this.ctx.log('warning', `libvirt ${this.opts.uri}: virsh: ${ev.message}`);
        return;
      case 'other':
        this.ctx.log('debug', `libvirt ${this.opts.uri}: ${ev.event} event for ${ev.domain}: no lock meaning`);
        return;
      case 'lifecycle':
      case 'device-added':
      case 'device-removed':
        void this.enqueue(() => this.apply(ev));
        return;
      default: {
        const _exhaustive: never = ev;
        return _exhaustive;
      }
    }
  }

  /** virsh's event stream (re)connected: reconcile now and once more when its registration has surely settled. */
  connected(): Promise<void> {
    this.settle = true;
    this.identityStale = true;
    return this.reconcile();
  }

  /**
   * Compare libvirt's domains with the locks held and correct the difference. One that fails or
   * cannot finish (something libvirt could not tell us now) is retried with backoff; after one
   * that finished, the next runs `periodicReconcileMs` later.
   */
  reconcile(): Promise<void> {
    return this.enqueue(async () => {
      this.incomplete = undefined;
      try {
        await this.doReconcile();
      } catch (e) {
        this.incomplete = (e as Error).message;
        this.ctx.log('error', `libvirt ${this.opts.uri}: ${(e as Error).message}`);
      }
      if (this.incomplete === undefined) {
        this.reconcileFailures = 0;
        const every = this.settle ? (this.opts.settleReconcileMs ?? DEFAULT_SETTLE_RECONCILE_MS) : (this.opts.periodicReconcileMs ?? DEFAULT_PERIODIC_RECONCILE_MS);
        this.settle = false;
        if (every > 0) this.scheduleReconcile(every, true);
        return;
      }
      const retries = this.opts.reconcileRetriesMs ?? DEFAULT_RECONCILE_RETRIES_MS;
      const delay = retries[Math.min(this.reconcileFailures, retries.length - 1)]!;
      this.reconcileFailures++;
      this.ctx.log('warning', `libvirt ${this.opts.uri}: reconcile incomplete (${this.incomplete}); retrying in ${(delay / 1000).toFixed(1)} s`);
      this.scheduleReconcile(delay, true);
    });
  }

  /** Something libvirt could not tell us now: reconcile again soon (keeping what is held meanwhile). */
  private retrySoon(why: string): void {
    this.incomplete ??= why;
    const retries = this.opts.reconcileRetriesMs ?? DEFAULT_RECONCILE_RETRIES_MS;
    this.scheduleReconcile(retries[0]!, false);
  }

  /** Schedule a reconcile in `ms`; an earlier one already scheduled wins unless `replace`. */
  private scheduleReconcile(ms: number, replace: boolean): void {
    if (this.closed) return;
    const due = this.now().getTime() + ms;
    if (this.nextReconcile && !replace && this.nextReconcile.due <= due) return;
    this.nextReconcile?.cancel();
    this.nextReconcile = undefined;
    const cancel = this.later(() => {
      this.timers.delete(cancel);
      if (this.nextReconcile?.cancel === cancel) this.nextReconcile = undefined;
      void this.reconcile();
    }, ms);
    this.timers.add(cancel);
    this.nextReconcile = { cancel, due };
  }

  /** Resolves when everything queued so far is done (tests, shutdown). */
  idle(): Promise<void> {
    return this.queue;
  }

  close(): void {
    this.closed = true;
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    // The locker withdraws every request as the daemon stops.
    this.waits.clear();
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(async () => {
      if (this.closed) return;
      try {
        await task();
      } catch (e) {
        this.ctx.log('error', `libvirt ${this.opts.uri}: ${(e as Error).message}`);
      }
    });
    this.queue = run;
    return run;
  }

  private at(ev: { at: string | null }): string {
    return ev.at ?? this.now().toISOString();
  }

  private async apply(ev: Extract<LibvirtEvent, { kind: 'lifecycle' | 'device-added' | 'device-removed' }>): Promise<void> {
    const action = mapLifecycle(ev);
    const what = ev.kind === 'lifecycle' ? `${ev.word} ${ev.detail}` : `${ev.kind} ${ev.alias}`;
    this.ctx.log('debug', `libvirt ${this.opts.uri}: ${ev.domain}: ${what} -> ${action}`);
    // An incoming migration's QEMU exists (Prepare is over); it takes the disks at its resume.
    if (ev.kind === 'lifecycle' && ev.word === 'Started' && ev.detail === 'Migrated') return this.awaitIncoming(ev.domain, this.at(ev));
    switch (action) {
      case 'acquire':
        if (ev.kind === 'device-added') return this.acquireDevice(ev.domain, ev.alias, this.at(ev));
        // Only a migration's resume can meet this same VM still holding its disks on another host
        // (the source, until its Confirm); a boot or an unpause that meets it is a second copy.
        return this.acquireDomain(ev.domain, this.at(ev), 'virsh', ev.kind === 'lifecycle' && ev.word === 'Resumed' && (ev.detail === 'Migrated' || ev.detail === 'Post-copy') ? 0 : this.retries.length);
      case 'release':
        if (ev.kind === 'device-removed') return this.releaseDevice(ev.domain, ev.alias, this.at(ev));
        return this.releaseIfGone(ev.domain, this.at(ev), what);
      case 'release-if-gone':
        return this.releaseIfGone(ev.domain, this.at(ev), what);
      case 'keep':
      case 'ignore':
        return;
      default: {
        const _exhaustive: never = action;
        return _exhaustive;
      }
    }
  }

  // -- reading libvirt ------------------------------------------------------------------------

  private volPath = async (pool: string, volume: string): Promise<string | null> => {
    const r = await this.virsh(['vol-path', '--pool', pool, volume]);
    if (r.code !== 0) {
      this.ctx.log('warning', `libvirt ${this.opts.uri}: cannot resolve volume ${pool}/${volume}: ${firstError(r)}`);
      return null;
    }
    // virsh prints the path and one newline; the path itself may end in a space (src/events/xml-text.ts).
    const p = r.stdout.replace(/\n$/, '');
    return p === '' ? null : p;
  };

  /**
   * The live XML of a domain, or null when it cannot be had. A domain libvirt no longer knows is
   * null quietly (a later event says why); any other failure is logged and a reconcile retries.
   */
  private async fetchDomain(nameOrUuid: string, why: string): Promise<DomainInfo | null> {
    const r = await this.virsh(['dumpxml', nameOrUuid]);
    if (r.code !== 0) {
      if (NO_DOMAIN_RE.test(r.stderr)) {
        this.ctx.log('debug', `libvirt ${this.opts.uri}: dumpxml ${nameOrUuid}: ${firstError(r)}`);
      } else {
        this.ctx.log('warning', `libvirt ${this.opts.uri}: ${why}: virsh dumpxml ${nameOrUuid} failed (${firstError(r)}); a reconcile retries`);
        this.retrySoon(`dumpxml ${nameOrUuid} failed`);
      }
      return null;
    }
    let info: DomainInfo;
    try {
      info = await parseDomainXmlOffLoop(r.stdout);
    } catch (e) {
      this.ctx.reject('virsh', e, r.stdout);
      this.ctx.log('warning', `libvirt ${this.opts.uri}: ${why}: the XML of ${nameOrUuid} was rejected (${(e as Error).message}); nothing changes for it`);
      return null;
    }
    this.uuidByName.set(info.name, info.uuid);
    return info;
  }

  private async locksOf(info: DomainInfo, only?: (d: DomainInfo['disks'][number]) => boolean): Promise<DomainLocks> {
    const locks = applyLeaseRules(await domainLocks(info, this.volPath, only), this.rules());
    for (const u of locks.unprotected) {
      if (!this.rules().autoDiskLeases && !u.target.startsWith('lease:')) continue;
      this.ctx.log('info', `libvirt ${this.opts.uri}: VM ${info.name}: ${u.target} is not protected by a lock: ${u.reason}`);
    }
    return locks;
  }

  /** The uuid a domain name stands for: libvirt's answer if it still knows the name, else the last one seen. */
  private async uuidOf(name: string): Promise<string | undefined> {
    const r = await this.virsh(['domuuid', name]);
    const fresh = r.code === 0 ? r.stdout.trim() : '';
    if (/^[0-9a-f-]{36}$/i.test(fresh)) {
      this.uuidByName.set(name, fresh.toLowerCase());
      return fresh.toLowerCase();
    }
    const cached = this.uuidByName.get(name);
    if (cached) return cached;
    for (const o of this.ctx.state().owners.values()) if (o.name === name) return o.uuid;
    return undefined;
  }

  /** Paths of locks `uuid` holds through libvirt's sources (never ones taken through the API or RPC). */
  private libvirtHeld(uuid: string, takenBefore?: number): string[] {
    const out: string[] = [];
    for (const res of heldBy(this.ctx.state(), uuid)) {
      const h = res.holders.get(uuid);
      if (!h || !LIBVIRT_SOURCES.has(h.source)) continue;
      if (takenBefore !== undefined && Date.parse(h.since) > takenBefore) continue;
      out.push(h.path);
    }
    return out;
  }

  // -- lock changes ---------------------------------------------------------------------------

  private async acquireDomain(nameOrUuid: string, at: string, source: string, attempt: number): Promise<void> {
    const info = await this.fetchDomain(nameOrUuid, `cannot take the locks of VM ${nameOrUuid}`);
    // Not running any more (a later event says why): taking locks now would hold them for a stopped VM.
    if (!info || info.id === undefined) return;
    this.vouched.add(info.uuid); // this libvirt runs it: it answers for its locks from now on
    this.keptVms.delete(info.uuid);
    const locks = await this.locksOf(info);
    this.aliases.set(info.uuid, locks.aliases);
    if (locks.unresolved.length > 0) this.retrySoon(`VM ${info.name}: ${locks.unresolved.map((u) => u.target).join(', ')} not resolved`);
    if (locks.disks.length === 0) return;
    const owner: Owner = { uuid: info.uuid, name: info.name };
    // A retry of a migration's resume while the source still holds the disks: its refusal was
    // journaled by the first attempt; the last one is journaled again (a conflict then).
    const quiet = attempt > 0 && attempt < this.retries.length;
    const reply = await this.ctx.submit({ kind: 'acquire', owner, disks: locks.disks, at, source, ...(quiet ? { quiet } : {}) });
    this.noteRunning(info.uuid);
    await this.afterAcquire(owner, reply, attempt, () => this.acquireDomain(info.uuid, this.now().toISOString(), source, attempt + 1));
  }

  private async acquireDevice(name: string, alias: string, at: string): Promise<void> {
    const info = await this.fetchDomain(name, `cannot take the lock of device ${alias} of VM ${name}`);
    if (!info || info.id === undefined) return;
    if (!info.disks.some((d) => d.alias === alias)) {
      this.ctx.log('debug', `libvirt ${this.opts.uri}: ${name}: device ${alias} is not a disk`);
      return;
    }
    const locks = await this.locksOf(info, (d) => d.alias === alias);
    const known = this.aliases.get(info.uuid) ?? new Map<string, string>();
    for (const [a, p] of locks.aliases) known.set(a, p);
    this.aliases.set(info.uuid, known);
    if (locks.unresolved.length > 0) this.retrySoon(`VM ${info.name}: device ${alias} not resolved`);
    if (locks.disks.length === 0) return;
    const owner: Owner = { uuid: info.uuid, name: info.name };
    const reply = await this.ctx.submit({ kind: 'acquire', owner, disks: locks.disks, at, source: 'virsh' });
    await this.afterAcquire(owner, reply, this.retries.length, async () => {});
  }

  /**
   * Started Migrated: file the hand-over request for the domain's disks (the `hand-over` command),
   * so that the source's release reserves them for this host and VM and no third host can take
   * them before this host's resume takes them.
   */
  private async awaitIncoming(name: string, at: string): Promise<void> {
    const info = await this.fetchDomain(name, `incoming migration of VM ${name}`);
    if (!info || info.id === undefined) return;
    const locks = await this.locksOf(info);
    this.aliases.set(info.uuid, locks.aliases);
    if (locks.disks.length === 0) return;
    const owner: Owner = { uuid: info.uuid, name: info.name };
    if (this.waits.has(owner.uuid)) return;
    const reply = await this.ctx.submit({ kind: 'hand-over', step: 'wait', owner, disks: locks.disks, from: '', at, source: 'virsh' });
    if (reply.status === 'error') {
      this.ctx.log('warning', `libvirt ${this.opts.uri}: VM ${who(owner)} migrates in, but its hand-over request could not be filed: ${reply.message}`);
      return;
    }
    const bound = this.opts.incomingWaitMs ?? DEFAULT_INCOMING_WAIT_MS;
    const cancel = this.later(() => {
      this.timers.delete(cancel);
      void this.enqueue(() => this.endWait(owner.uuid, 'timeout', `no resume or stop of the incoming VM in ${Math.round(bound / 1000)} s`));
    }, bound);
    this.timers.add(cancel);
    this.waits.set(owner.uuid, { owner, disks: locks.disks, cancel });
    this.ctx.log('info', `libvirt ${this.opts.uri}: VM ${who(owner)} migrates in; its disks are reserved for this host when the source lets go`);
  }

  /** End an incoming migration's wait (withdraw its hand-over request, journal HandOverEnded). */
  private async endWait(uuid: string, outcome: HandOverOutcome, detail: string): Promise<void> {
    const w = this.waits.get(uuid);
    if (!w) return;
    this.waits.delete(uuid);
    w.cancel();
    this.timers.delete(w.cancel);
    const r = await this.ctx.submit({ kind: 'hand-over', step: 'end', owner: w.owner, disks: w.disks, outcome, detail, at: this.now().toISOString(), source: 'virsh' });
    if (r.status === 'error') this.ctx.log('warning', `libvirt ${this.opts.uri}: VM ${who(w.owner)}: could not record the end of the migration hand-over: ${r.message}`);
  }

  /** `virsh domstate` of one domain, read as running / gone / could not tell. */
  private async domainState(nameOrUuid: string): Promise<DomainState> {
    const st = domainStateOf(await this.virsh(['domstate', nameOrUuid]));
    if (st.kind === 'active') this.noteRunning(nameOrUuid);
    return st;
  }

  /**
   * This libvirt reported `uuid` (or a name) running: it answers for the VM's locks from now on. For
   * a VM holding libvirt-taken locks, LibvirtVouched is journaled when the vouching libvirt changes,
   * so a restart knows it too (decision 0025).
   */
  private noteRunning(nameOrUuid: string): void {
    const f = this.vouchFact(nameOrUuid);
    if (f) this.ctx.record([f]);
  }

  /** noteRunning without the append: the LibvirtVouched fact to journal, if the vouching libvirt changes. */
  private vouchFact(nameOrUuid: string): NewFact | undefined {
    this.vouched.add(nameOrUuid);
    this.keptVms.delete(nameOrUuid);
    const me = this.identity;
    if (!me || this.libvirtHeld(nameOrUuid).length === 0) return undefined;
    const recorded = this.ctx.state().vouchedBy.get(nameOrUuid);
    if (recorded && recorded.uri === me.uri && sameLibvirt(recorded, me)) return undefined;
    const owner = this.ctx.state().owners.get(nameOrUuid) ?? { uuid: nameOrUuid };
    return fact('LibvirtVouched', this.now().toISOString(), { owner, libvirt: me, source: 'virsh' });
  }

  /**
   * Which libvirt this URI reaches: `virsh uri` (aliases and defaults resolved), `virsh hostname`,
   * and the host UUID of `virsh capabilities` if it has one. Learnt again after each (re)connect; a
   * failure keeps what was learnt before (the same URI), else leaves it unknown, and nothing is
   * released on a "gone" meanwhile unless this stream saw the VM running.
   */
  private async learnIdentity(): Promise<LibvirtRef | undefined> {
    if (!this.identityStale && this.identity) return this.identity;
    const [uri, host] = await Promise.all([this.virsh(['uri']), this.virsh(['hostname'])]);
    const u = uri.stdout.trim();
    const h = host.stdout.trim();
    if (uri.code !== 0 || host.code !== 0 || u === '' || h === '') {
      this.identityError = `virsh ${uri.code !== 0 || u === '' ? `uri: ${firstError(uri)}` : `hostname: ${firstError(host)}`}`;
      this.ctx.log('warning', `libvirt ${this.opts.uri}: cannot tell which libvirt this is (${this.identityError}); a VM it says is gone keeps its locks unless this stream saw it running`);
      this.retrySoon('which libvirt this is is unknown');
      return this.identity;
    }
    const caps = await this.virsh(['capabilities']);
    const hostUuid = caps.code === 0 ? hostUuidOf(caps.stdout) : undefined;
    const before = this.identity;
    this.identity = { uri: u, host: h, ...(hostUuid ? { hostUuid } : {}) };
    this.identityStale = false;
    this.identityError = undefined;
    if (!before || identityKey(before) !== identityKey(this.identity)) {
      this.ctx.log('info', `libvirt ${this.opts.uri}: connected to libvirt ${describeLibvirt(this.identity)}`);
    }
    return this.identity;
  }

  /**
   * May this libvirt's "gone" release the locks of `uuid`? Only if it answers for them (judgeGone):
   * it reported the VM running (in this process, or journaled before a restart: LibvirtVouched), or
   * the qemu hook took them and this is the libvirt the hook serves. Another libvirt (a wrong
   * libvirt_uri, at a start or set live) says nothing about whether the VM runs here.
   */
  private mayRelease(uuid: string, owner: Owner, said: string): boolean {
    const recorded = this.ctx.state().vouchedBy.get(uuid);
    const verdict = judgeGone({
      seenRunning: this.vouched.has(uuid),
      recorded,
      current: this.identity,
      hookLocks: this.heldBySource(uuid, 'hook'),
      localHost: this.opts.localHost ?? os.hostname(),
    });
    if (verdict.release) {
      this.keptVms.delete(uuid);
      return true;
    }
    const current = this.identity ? `this is ${describeLibvirt(this.identity)}` : `which libvirt this is is unknown (${this.identityError ?? 'not learnt yet'})`;
    const why = {
      'unknown-libvirt': current,
      'other-libvirt': `its locks are answered for by libvirt ${describeLibvirt(recorded ?? { uri: '?', host: '?' })}, and ${current}: another libvirt (a wrong libvirt_uri?)`,
      'not-hook-libvirt': `the qemu hook took its locks for qemu:///system on host ${this.opts.localHost ?? os.hostname()}, and ${current}`,
      unvouched: `no libvirt has reported it running since its locks were taken (journaled before vmlockd recorded which libvirt answers for a VM), and ${current}`,
    }[verdict.reason];
    const live = this.opts.adoptHeld === false ? ` (libvirt_uri was changed live to ${this.opts.uri})` : '';
    this.ctx.log(
      'warning',
      `libvirt ${this.opts.uri}: VM ${who(owner)} is ${said} here${live}, but ${why}: keeping its locks ` +
        '(this libvirt is no evidence that it stopped on this host; check libvirt_uri, or `vmlockd release --vm UUID` frees them if it did)',
    );
    if (!this.keptVms.has(uuid)) this.keptVms.set(uuid, { owner, said, reason: verdict.reason, ...(recorded ? { recorded } : {}), since: this.now().toISOString() });
    return false;
  }

  /** Does `uuid` hold a lock taken through `source`? */
  private heldBySource(uuid: string, source: string): boolean {
    return heldBy(this.ctx.state(), uuid).some((res) => res.holders.get(uuid)?.source === source);
  }

  /** For `vmlockd status`: the libvirt this stream reaches, and the VMs whose locks it kept as not its own. */
  status(): { uri: string; connectedTo: LibvirtRef | null; connectError: string | null; keptLocksOf: Array<{ vm: string; name?: string; said: string; reason: string; vouchedBy: LibvirtRef | null; since: string }> } {
    const keptLocksOf = [];
    for (const [uuid, k] of this.keptVms) {
      if (this.libvirtHeld(uuid).length === 0) continue;
      keptLocksOf.push({ vm: uuid, ...(k.owner.name ? { name: k.owner.name } : {}), said: k.said, reason: k.reason, vouchedBy: k.recorded ?? null, since: k.since });
    }
    return { uri: this.opts.uri, connectedTo: this.identity ?? null, connectError: this.identityError ?? null, keptLocksOf };
  }

  /**
   * Stopped, Crashed or Undefined of domain `name`: release what the domain held, but only for an
   * incarnation libvirt says is gone. The event names the domain only; the uuids it may stand for
   * are libvirt's current one for the name and every owner of that name holding libvirt-taken
   * locks (a transient VM's name reused by another uuid). Each is asked about by uuid:
   * - running, paused, crashed with QEMU kept (on_crash=preserve), restarting after a panic
   *   (on_crash=restart), a crash kernel loading (Crashed Crashloaded), or a newer run the hook has
   *   just locked: it keeps its locks; the event is of an earlier run or QEMU lives on;
   * - shut off, or unknown to libvirt: released;
   * - libvirt cannot tell now (domstate failed otherwise): kept, and a reconcile retries.
   */
  private async releaseIfGone(name: string, at: string, what: string): Promise<void> {
    const named = await this.uuidOf(name);
    if (named && this.waits.has(named)) {
      // An incoming migration that failed here (Stopped Failed): its wait ends once libvirt says so.
      const st = await this.domainState(named);
      if (st.kind === 'gone') await this.endWait(named, 'gone', `${what}; virsh domstate says ${st.state}`);
    }
    const candidates = new Map<string, boolean>(); // uuid -> release every lock (true) or libvirt-taken ones only
    let namedRuns = false;
    if (named) candidates.set(named, true);
    for (const o of this.ctx.state().owners.values()) {
      if (o.name === name && !candidates.has(o.uuid) && this.libvirtHeld(o.uuid).length > 0) candidates.set(o.uuid, false);
    }
    for (const [uuid, all] of candidates) {
      if (heldBy(this.ctx.state(), uuid).length === 0) {
        this.aliases.delete(uuid);
        continue;
      }
      const owner: Owner = this.ctx.state().owners.get(uuid) ?? { uuid, name };
      const st = await this.domainState(uuid);
      switch (st.kind) {
        case 'active':
          if (uuid === named) namedRuns = true;
          this.ctx.log('info', `libvirt ${this.opts.uri}: ${what} for VM ${who(owner)}, but libvirt says it is ${st.state}: an event of an earlier run, or its QEMU lives on; it keeps its locks`);
          continue;
        case 'unknown':
          this.ctx.log('warning', `libvirt ${this.opts.uri}: ${what} for VM ${who(owner)}, but virsh domstate failed (${st.error}): keeping its locks until libvirt says it is gone; a reconcile retries`);
          this.retrySoon(`domstate ${uuid} failed`);
          if (uuid === named) namedRuns = true;
          continue;
        case 'gone':
          break;
      }
      await this.learnIdentity();
      if (!this.mayRelease(uuid, owner, `${what}: ${st.state}`)) continue;
      this.aliases.delete(uuid);
      // A stopped VM writes nothing: everything it holds goes, whichever source took it.
      const paths = all ? undefined : this.libvirtHeld(uuid);
      const reply = await this.ctx.submit({ kind: 'release', owner, ...(paths ? { paths } : {}), at, source: 'virsh' });
      if (reply.status === 'error') this.ctx.log('error', `libvirt ${this.opts.uri}: could not release the locks of VM ${who(owner)}: ${reply.message}`);
    }
    if (what.startsWith('Undefined') && !namedRuns) this.uuidByName.delete(name);
  }

  private async releaseDevice(name: string, alias: string, at: string): Promise<void> {
    const uuid = await this.uuidOf(name);
    if (!uuid) return;
    const known = this.aliases.get(uuid);
    const path = known?.get(alias);
    let paths: string[];
    if (path !== undefined) {
      known!.delete(alias);
      paths = [path];
    } else {
      // The alias was never seen (added while vmlockd was away): release whatever libvirt-taken
      // lock the domain's current XML no longer names, if the XML says which disks it wants.
      const info = await this.fetchDomain(uuid, `device-removed ${alias} of VM ${name}`);
      if (!info) return;
      const locks = await this.locksOf(info);
      this.aliases.set(uuid, locks.aliases);
      if (locks.unresolved.length > 0) {
        this.ctx.log(
          'warning',
          `libvirt ${this.opts.uri}: device-removed ${alias} of VM ${name}: ${locks.unresolved.map((u) => u.target).join(', ')} cannot be resolved now, so which disk went is unknown; keeping its locks, a reconcile retries`,
        );
        this.retrySoon(`VM ${name}: volume not resolved`);
        return;
      }
      const wanted = new Set(locks.disks.map((d) => d.path));
      paths = this.libvirtHeld(uuid).filter((p) => !wanted.has(p));
    }
    if (paths.length === 0) return;
    const reply = await this.ctx.submit({ kind: 'release', owner: { uuid, name }, paths, at, source: 'virsh' });
    if (reply.status === 'error') this.ctx.log('error', `libvirt ${this.opts.uri}: could not release ${paths.join(', ')} of VM ${name}: ${reply.message}`);
  }

  // -- refusals -------------------------------------------------------------------------------

  /** Every refusal names this same VM on another host: a live migration not yet handed over. */
  private isHandOver(owner: Owner, reply: Refused): boolean {
    return reply.refusals.length > 0 && reply.refusals.every((r) => isHandOverRefusal(r.holder, owner, this.ctx.host));
  }

  private async afterAcquire(owner: Owner, reply: Reply, attempt: number, retry: () => Promise<void>): Promise<void> {
    if (reply.status === 'ok') return this.endWait(owner.uuid, 'taken', 'this host holds the disks');
    if (reply.status === 'error') {
      this.ctx.log('error', `libvirt ${this.opts.uri}: could not take the locks of VM ${who(owner)}: ${reply.message}`);
      return;
    }
    if (this.isHandOver(owner, reply) && attempt < this.retries.length) {
      const delay = this.retries[attempt]!;
      this.ctx.log('info', `libvirt ${this.opts.uri}: VM ${who(owner)} still holds its disks on host ${reply.refusals[0]!.holder.host} (migration hand-over); retrying in ${delay} ms`);
      const cancel = this.later(() => {
        this.timers.delete(cancel);
        void this.enqueue(retry);
      }, delay);
      this.timers.add(cancel);
      return;
    }
    await this.endWait(owner.uuid, 'conflict', reply.message);
    // One line per refused disk, each with the disk, the VM, its holder and the LockRefused's seq.
    for (const c of refusalConflicts(owner, reply.refusals, this.ctx.host)) {
      this.ctx.log('error', `CONFLICT: VM ${who(owner)} is running without its disk lock: ${c.message} (on_conflict = "${this.opts.onConflict()}")`, c.fields);
    }
    await this.applyConflictPolicy(owner, reply.message);
  }

  /**
   * A VM runs without its lock (an event-stream acquire refused after the fact, or a lock the
   * verifier found lost to another owner): apply on_conflict and journal what was done.
   */
  async applyConflictPolicy(owner: Owner, message: string): Promise<void> {
    const policy = this.opts.onConflict();
    switch (policy) {
      case 'report':
        return;
      case 'suspend': {
        const r = await this.virsh(['suspend', owner.uuid]);
        const at = this.now().toISOString();
        if (r.code === 0) {
          this.ctx.log('error', `on_conflict = "suspend": suspended VM ${who(owner)}; resume it (virsh resume) once the disk is free`);
          this.ctx.record([fact('ConflictAction', at, { owner, action: 'suspend', result: 'done', message, source: 'virsh' })]);
        } else {
          this.ctx.log('error', `on_conflict = "suspend": could not suspend VM ${who(owner)}: ${firstError(r)}`);
          this.ctx.record([fact('ConflictAction', at, { owner, action: 'suspend', result: 'failed', error: firstError(r), message, source: 'virsh' })]);
        }
        return;
      }
      default: {
        const _exhaustive: never = policy;
        return _exhaustive;
      }
    }
  }

  // -- reconciliation -------------------------------------------------------------------------

  private async doReconcile(): Promise<void> {
    await this.learnIdentity();
    const listStart = this.now().getTime();
    const all = await this.virsh(['list', '--all', '--uuid', '--name']);
    if (all.code !== 0) throw new Error(`reconcile: virsh list failed: ${firstError(all)}`);
    const names = new Map<string, string>();
    for (const line of all.stdout.split('\n')) {
      const m = /^\s*([0-9a-f-]{36})\s+(.+?)\s*$/i.exec(line);
      if (m) names.set(m[2]!, m[1]!.toLowerCase());
    }
    this.uuidByName = names;
    const act = await this.virsh(['list', '--uuid']);
    if (act.code !== 0) throw new Error(`reconcile: virsh list failed: ${firstError(act)}`);
    const active = new Set(act.stdout.split('\n').map((l) => l.trim().toLowerCase()).filter((l) => /^[0-9a-f-]{36}$/.test(l)));
    for (const uuid of active) this.vouched.add(uuid);
    const at = new Date(listStart).toISOString();
    let took = 0;
    let released = 0;
    const kept: string[] = [];

    for (const uuid of active) {
      const info = await this.fetchDomain(uuid, 'reconcile');
      if (!info) {
        // Listed as running, XML not readable now: what it holds stays (fetchDomain scheduled a retry).
        if (this.libvirtHeld(uuid).length > 0) kept.push(uuid);
        continue;
      }
      if (info.id === undefined) continue;
      const locks = await this.locksOf(info);
      this.aliases.set(uuid, locks.aliases);
      const owner: Owner = { uuid: info.uuid, name: info.name };
      if (locks.disks.length > 0) {
        const reply = await this.ctx.submit({ kind: 'acquire', owner, disks: locks.disks, at, source: 'virsh-reconcile' });
        if (reply.status === 'ok') took += reply.acquired.length;
        await this.afterAcquire(owner, reply, 0, () => this.acquireDomain(uuid, this.now().toISOString(), 'virsh-reconcile', 1));
      }
      // Disks detached while nobody listened. A disk whose path cannot be resolved now is unknown,
      // not unwanted: with any such disk, nothing of this VM counts as stale.
      const wanted = new Set(locks.disks.map((d) => d.path));
      const stale = this.libvirtHeld(uuid).filter((p) => !wanted.has(p));
      if (stale.length > 0 && locks.unresolved.length > 0) {
        this.ctx.log(
          'warning',
          `libvirt ${this.opts.uri}: VM ${who(owner)}: ${locks.unresolved.map((u) => `${u.target} (${u.reason})`).join(', ')}; ` +
            `keeping its ${stale.length} other held lock(s) (${stale.join(', ')}) until the volume resolves; a reconcile retries`,
        );
        kept.push(uuid);
        this.retrySoon(`VM ${info.name}: volume not resolved`);
        continue;
      }
      if (locks.unresolved.length > 0) this.retrySoon(`VM ${info.name}: volume not resolved`);
      if (stale.length > 0) released += await this.release(owner, stale, at);
    }
    // Listed running by this libvirt: it answers for these VMs' locks from now on, after a restart
    // too. One append for them all: the first reconcile after an upgrade vouches for every VM.
    const vouches = [...active].map((uuid) => this.vouchFact(uuid)).filter((f) => f !== undefined);
    if (vouches.length > 0) this.ctx.record(vouches);

    for (const [uuid] of this.ctx.state().byOwner) {
      if (active.has(uuid)) continue;
      // A lock taken after the listing began belongs to a VM that started since (the hook's prepare).
      const paths = this.libvirtHeld(uuid, listStart);
      if (paths.length === 0) continue;
      const owner = this.ctx.state().owners.get(uuid) ?? { uuid };
      const st = await this.domainState(uuid);
      if (st.kind === 'active') continue;
      if (st.kind === 'unknown') {
        this.ctx.log('warning', `libvirt ${this.opts.uri}: reconcile: VM ${who(owner)} is not listed as running, but virsh domstate failed (${st.error}): keeping its locks; a reconcile retries`);
        kept.push(uuid);
        this.retrySoon(`domstate ${uuid} failed`);
        continue;
      }
      if (!this.mayRelease(uuid, owner, `not running (${st.state})`)) {
        kept.push(uuid);
        continue;
      }
      released += await this.release(owner, paths, at);
    }
    this.ctx.log(
      'info',
      `libvirt ${this.opts.uri}: reconciled: ${active.size} active domain(s), ${took} lock(s) taken, ${released} released` +
        (kept.length > 0 ? `, the locks of ${kept.length} VM(s) kept as unknown (${kept.join(', ')})` : ''),
    );
  }

  private async release(owner: Owner, paths: string[], at: string): Promise<number> {
    const reply = await this.ctx.submit({ kind: 'release', owner, paths, at, source: 'virsh-reconcile' });
    if (reply.status !== 'ok') {
      this.ctx.log('error', `libvirt ${this.opts.uri}: reconcile could not release ${paths.join(', ')} of VM ${who(owner)}: ${reply.message}`);
      return 0;
    }
    this.ctx.log('info', `libvirt ${this.opts.uri}: reconcile released ${reply.released.length} lock(s) of VM ${who(owner)}, which is not running`);
    return reply.released.length;
  }
}

/**
 * `virsh domstate` output of a domain whose QEMU still exists and so still owns its disks: running,
 * paused, in shutdown, pmsuspended, and "crashed" (libvirt keeps a crashed domain's QEMU with
 * on_crash=preserve; with destroy or restart the state is "shut off" or running again). Only
 * "shut off" means no QEMU.
 */
export function isActiveState(stdout: string): boolean {
  const s = stdout.trim().split('\n')[0]?.trim() ?? '';
  return s !== '' && !s.startsWith('shut off');
}

// ---------------------------------------------------------------------------------------------
// The process supervisor

/** The part of a ChildProcess the supervisor uses (tests pass a fake). */
export interface ChildLike {
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal?: NodeJS.Signals): boolean;
  once(event: 'exit', cb: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'error', cb: (e: Error) => void): this;
}

export type SpawnFn = (cmd: string, args: readonly string[], env: NodeJS.ProcessEnv) => ChildLike;

export interface SupervisorOptions {
  readonly uri: string;
  readonly onLine: (line: string) => void;
  /** The listener has been up for `connectedAfterMs`: its registration is done; reconcile now. */
  readonly onConnected: () => void;
  readonly log: SourceContext['log'];
  readonly spawn?: SpawnFn;
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  /** A run at least this long resets the backoff. */
  readonly healthyMs?: number;
  readonly connectedAfterMs?: number;
  readonly now?: () => number;
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface Supervisor {
  stop(): Promise<void>;
  /** Restarts so far (tests). */
  readonly restarts: number;
  /** The delays waited before each restart (tests). */
  readonly delays: readonly number[];
}

const realSpawn: SpawnFn = (cmd, args, env) => nodeSpawn(cmd, [...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

export function superviseVirshEvents(opts: SupervisorOptions): Supervisor {
  const spawn = opts.spawn ?? realSpawn;
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? abortableSleep;
  const initial = opts.initialDelayMs ?? 500;
  const max = opts.maxDelayMs ?? 30_000;
  const healthy = opts.healthyMs ?? 60_000;
  const connectedAfter = opts.connectedAfterMs ?? 500;
  const abort = new AbortController();
  let child: ChildLike | undefined;
  const state = { restarts: 0, delays: [] as number[] };

  const runOnce = (): Promise<{ code: number | null; signal: NodeJS.Signals | null; lastError: string }> =>
    new Promise((resolve) => {
      let lastError = '';
      let settled = false;
      const c = spawn('virsh', ['-c', opts.uri, 'event', '--all', '--loop', '--timestamp'], virshEnv());
      child = c;
      const timer = setTimeout(() => {
        if (!settled && !abort.signal.aborted) opts.onConnected();
      }, connectedAfter);
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child = undefined;
        resolve({ code, signal, lastError });
      };
      for (const [stream, isErr] of [[c.stdout, false], [c.stderr, true]] as const) {
        if (!stream) continue;
        readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
          if (isErr && line.trim() !== '' && lastError === '') lastError = line.trim();
          if (!abort.signal.aborted) opts.onLine(line);
        });
      }
      c.once('error', (e) => {
        lastError = `cannot run virsh: ${e.message}`;
        finish(null, null);
      });
      c.once('exit', (code, signal) => finish(code, signal));
    });

  const loop = async (): Promise<void> => {
    let delay = initial;
    while (!abort.signal.aborted) {
      const started = now();
      const r = await runOnce();
      if (abort.signal.aborted) break;
      const ran = now() - started;
      if (ran >= healthy) delay = initial;
      state.restarts++;
      state.delays.push(delay);
      opts.log(
        'warning',
        `libvirt ${opts.uri}: the virsh event stream exited (${r.signal ? `signal ${r.signal}` : `code ${r.code}`}${r.lastError ? `: ${r.lastError}` : ''}) ` +
          `after ${(ran / 1000).toFixed(1)} s; restart #${state.restarts} in ${(delay / 1000).toFixed(1)} s`,
      );
      await sleep(delay, abort.signal);
      delay = Math.min(delay * 2, max);
    }
  };
  const done = loop().catch((e: unknown) => opts.log('error', `libvirt ${opts.uri}: event stream supervisor stopped: ${(e as Error).stack ?? e}`));

  return {
    get restarts() {
      return state.restarts;
    },
    get delays() {
      return state.delays;
    },
    async stop() {
      abort.abort();
      child?.kill('SIGTERM');
      await done;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The source: supervisor + handler

export interface VirshSourceOptions {
  readonly uri: string;
  readonly onConflict: () => ConflictPolicy;
  /** Which disks get locks: the same rule as the hook's (qemu-lockd.conf, read at every use). */
  readonly leaseRules?: () => LeaseRules;
  readonly virsh?: VirshRunner;
  readonly supervisor?: Partial<Omit<SupervisorOptions, 'uri' | 'onLine' | 'onConnected' | 'log'>>;
  /** See HandlerOptions.adoptHeld: false for a stream started by a live change of libvirt_uri. */
  readonly adoptHeld?: boolean;
}

export interface VirshSource extends RunningSource {
  readonly handler: LibvirtEventHandler;
  readonly supervisor: Supervisor;
}

/**
 * The running event stream's `virsh domstate`, for the hook's migration hand-over (daemon/hook-route):
 * one daemon has at most one libvirt source, and the hook must not wait for the disks of a VM that
 * libvirt says is not on this host. Unset without a libvirt URI.
 */
let current: { readonly uri: string; readonly state: (nameOrUuid: string) => Promise<DomainState> } | undefined;

/** This host's libvirt (`state`: virsh domstate through the configured URI); undefined when no libvirt URI is configured. */
export function localLibvirt(): { readonly uri: string; state(nameOrUuid: string): Promise<DomainState> } | undefined {
  return current;
}

export function startVirshSource(ctx: SourceContext, opts: VirshSourceOptions): VirshSource {
  const virsh = opts.virsh ?? virshRunner(opts.uri);
  const mine = { uri: opts.uri, state: async (id: string) => domainStateOf(await virsh(['domstate', id])) };
  current = mine;
  const handler = new LibvirtEventHandler({
    uri: opts.uri,
    ctx,
    virsh,
    onConflict: opts.onConflict,
    ...(opts.leaseRules ? { leaseRules: opts.leaseRules } : {}),
    ...(opts.adoptHeld !== undefined ? { adoptHeld: opts.adoptHeld } : {}),
  });
  ctx.log('info', `libvirt ${opts.uri}: listening to the virsh event stream`);
  const supervisor = superviseVirshEvents({
    ...opts.supervisor,
    uri: opts.uri,
    log: (level, msg) => ctx.log(level, msg),
    onLine: (line) => handler.line(line),
    onConnected: () => void handler.connected(),
  });
  return {
    handler,
    supervisor,
    async stop() {
      if (current === mine) current = undefined;
      await supervisor.stop();
      handler.close();
      await handler.idle();
    },
  };
}
