// The daemon's side of its service manager (systemd, docs/operations.md): the sd_notify protocol
// (READY, STATUS, STOPPING, RELOADING, WATCHDOG), the file descriptor store that keeps every lock's
// open file description alive while the daemon restarts (FDSTORE / FDSTOREREMOVE), and the
// descriptors handed back at start (LISTEN_FDS). No libsystemd: an AF_UNIX datagram to
// $NOTIFY_SOCKET through the native binding. Invariant 9: a held lock outlives the daemon's restart.
import * as fs from 'node:fs';
import { isLockFdName, type Adoption, type DescriptorStore, type Locker, type PassedFd } from '../engine/locker.js';
import type { State } from '../engine/state.js';
import { FD_CLOEXEC, native as defaultNative, type NativeBinding } from '../engine/native.js';

/** SCM_MAX_FD: the kernel refuses more descriptors in one message. */
export const MAX_FDS_PER_MESSAGE = 253;
const SD_LISTEN_FDS_START = 3;

export type Logf = (level: 'debug' | 'info' | 'warning' | 'error', msg: string) => void;

/** A message the manager's queue had no room for yet; `fds` are this notifier's own copies. */
interface Pending {
  readonly text: string;
  fds: number[];
  /** FDNAME= of an FDSTORE message: dropped if the lock goes before it is delivered. */
  readonly storeName?: string;
  /** FDNAME= of an FDSTOREREMOVE message: never dropped, one per name. */
  readonly removeName?: string;
  /** Taken out of the backlog where it stands (dropStore, or room made for another): skipped. */
  dropped?: boolean;
}

/** How often a backlog is retried (ms). */
const RETRY_MS = 100;
/**
 * A backlog beyond this drops its oldest messages that are neither an FDSTORE nor an FDSTOREREMOVE
 * (READY, RELOADING, STOPPING) first, then refuses new FDSTOREs (the lock is then not in the store:
 * the next start re-takes it from the journal). An FDSTOREREMOVE is never dropped nor refused: one
 * waits per name at most (they are coalesced), so they are bounded by the names of the locks.
 */
export const MAX_BACKLOG = 50_000;

/**
 * sd_notify: one datagram per call to $NOTIFY_SOCKET ('@' = abstract name). Never blocks the event
 * loop: a manager that does not read (frozen, busy, a stale variable) fills its queue
 * (net.unix.max_dgram_qlen, 10 by default) and the send fails with EAGAIN at once (MSG_DONTWAIT);
 * the message then waits in a backlog, in order, retried from a timer. A lock whose FDSTORE is still
 * in the backlog when the daemon dies is not in the store: the next start re-takes it from the journal
 * (or reports LeaseLost if another took it meanwhile). A lock released before its FDSTORE went out is
 * dropped from the backlog (its descriptor copy closed), so the backlog never holds a lock.
 */
export class Notifier {
  readonly addr: string | null;
  private fd: number | undefined;
  /** The first failure is logged; later ones only counted (a gone manager would flood the log). */
  failures = 0;
  /**
   * Messages waiting for room in the manager's queue (in order), from `head` on; a dropped one stays
   * in place (marked) until the flush passes it, so dropping is O(1) (a 50,000-message backlog was
   * filtered whole at every release).
   */
  private backlog: Pending[] = [];
  private head = 0;
  /** Messages waiting (not dropped). */
  private live = 0;
  /** Waiting messages without descriptors that are no removal: the ones room is made from. */
  private droppable = 0;
  /** Waiting FDSTOREs by name; waiting FDSTOREREMOVEs by name. */
  private readonly stores = new Map<string, Pending[]>();
  private readonly removals = new Set<string>();
  /** Messages that had to wait, since start. */
  deferred = 0;
  private retry: NodeJS.Timeout | undefined;
  private readonly maxBacklog: number;

  constructor(
    env: NodeJS.ProcessEnv = process.env,
    private readonly log: Logf = () => {},
    private readonly nat: NativeBinding = defaultNative,
    opts: { maxBacklog?: number } = {},
  ) {
    this.addr = env.NOTIFY_SOCKET ? env.NOTIFY_SOCKET : null;
    // Children (virsh) must not talk to our manager as if they were us.
    delete env.NOTIFY_SOCKET;
    this.maxBacklog = opts.maxBacklog ?? MAX_BACKLOG;
  }

  get enabled(): boolean {
    return this.addr !== null;
  }

  /** Messages waiting for the manager to read its queue. */
  get pending(): number {
    return this.live;
  }

  /**
   * Send `text` (KEY=VALUE lines) with `fds` (at most 253), now or, when the manager's queue is full,
   * later in order. false when it cannot be sent at all. `periodic`: a STATUS/WATCHDOG line, not worth
   * a place in a backlog (the next one says the same).
   */
  send(text: string, fds: readonly number[] = [], opts: { storeName?: string; removeName?: string; periodic?: boolean } = {}): boolean {
    if (this.addr === null) return false;
    if (fds.length > MAX_FDS_PER_MESSAGE) throw new RangeError(`at most ${MAX_FDS_PER_MESSAGE} descriptors per notify message, got ${fds.length}`);
    if (this.live > 0) {
      if (opts.periodic) return true;
      return this.defer(text, fds, opts);
    }
    const r = this.trySend(text, fds);
    if (r === 'sent') return true;
    if (r === 'failed') return false;
    if (opts.periodic) return true;
    return this.defer(text, fds, opts);
  }

  /** A released lock's FDSTORE that never went out: dropped (its copy closed). */
  dropStore(name: string): void {
    const waiting = this.stores.get(name);
    if (waiting === undefined) return;
    this.stores.delete(name);
    for (const m of waiting) this.drop(m);
  }

  /**
   * FDSTOREREMOVE for `name`: every FDSTORE of that name still waiting is dropped first (its copy
   * closed). Never dropped itself: a lost removal left systemd holding a released lock's descriptor,
   * handed back at the next start beside the descriptor of a later take of the same disk (review26a).
   * One waiting removal of a name is enough: no FDSTORE of that name waits after it.
   */
  remove(name: string): boolean {
    this.dropStore(name);
    if (this.removals.has(name)) return true;
    return this.send(`FDSTOREREMOVE=1\nFDNAME=${name}`, [], { removeName: name });
  }

  private drop(m: Pending): void {
    if (m.dropped) return;
    m.dropped = true;
    this.live--;
    if (m.fds.length === 0 && m.removeName === undefined) this.droppable--;
    for (const fd of m.fds) closeQuietly(fd);
    m.fds = [];
  }

  /** The first message in the backlog, as the flush leaves it (shifted off and forgotten). */
  private shift(): void {
    const m = this.backlog[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.backlog.length) {
      this.backlog = this.backlog.slice(this.head);
      this.head = 0;
    }
    if (m.dropped) return;
    this.live--;
    if (m.fds.length === 0 && m.removeName === undefined) this.droppable--;
    if (m.removeName !== undefined) this.removals.delete(m.removeName);
    if (m.storeName !== undefined) {
      const waiting = this.stores.get(m.storeName);
      if (waiting !== undefined) {
        const i = waiting.indexOf(m);
        if (i >= 0) waiting.splice(i, 1);
        if (waiting.length === 0) this.stores.delete(m.storeName);
      }
    }
  }

  private trySend(text: string, fds: readonly number[]): 'sent' | 'full' | 'failed' {
    try {
      this.fd ??= this.nat.dgramSocket();
      this.nat.sendFds(this.fd, this.addr, text, fds, true);
      return 'sent';
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return 'full';
      if (this.failures++ === 0) this.log('error', `sd_notify to ${this.addr} failed (${text.split('\n')[0]}): ${(e as Error).message}`);
      return 'failed';
    }
  }

  private defer(text: string, fds: readonly number[], opts: { storeName?: string; removeName?: string }): boolean {
    const { storeName, removeName } = opts;
    // A removal always gets in (at most one per name waits): see remove().
    if (this.live >= this.maxBacklog && removeName === undefined) {
      let room: Pending | undefined;
      if (this.droppable > 0) {
        for (let i = this.head; i < this.backlog.length && room === undefined; i++) {
          const m = this.backlog[i]!;
          if (!m.dropped && m.fds.length === 0 && m.removeName === undefined) room = m;
        }
      }
      if (room === undefined) {
        if (this.failures++ === 0) this.log('error', `sd_notify to ${this.addr}: ${this.live} messages wait already; ${text.split('\n')[0]} not sent`);
        return false;
      }
      this.drop(room);
    }
    let copies: number[];
    try {
      copies = fds.map((fd) => this.nat.dupFd(fd));
    } catch (e) {
      if (this.failures++ === 0) this.log('error', `sd_notify to ${this.addr}: cannot keep ${text.split('\n')[0]} for later: ${(e as Error).message}`);
      return false;
    }
    if (this.live === 0) this.log('warning', `sd_notify: ${this.addr} is not reading its messages (its queue is full); they wait here, in order, retried every ${RETRY_MS} ms (vmlockd status: fdStore.backlog)`);
    const m: Pending = { text, fds: copies, ...(storeName !== undefined ? { storeName } : {}), ...(removeName !== undefined ? { removeName } : {}) };
    this.backlog.push(m);
    this.live++;
    if (copies.length === 0 && removeName === undefined) this.droppable++;
    if (removeName !== undefined) this.removals.add(removeName);
    if (storeName !== undefined) {
      const waiting = this.stores.get(storeName);
      if (waiting === undefined) this.stores.set(storeName, [m]);
      else waiting.push(m);
    }
    this.deferred++;
    this.retry ??= setInterval(() => this.flush(), RETRY_MS);
    this.retry.unref();
    return true;
  }

  /** Send what waits, in order, until the manager's queue is full again. */
  flush(): void {
    while (this.head < this.backlog.length) {
      const m = this.backlog[this.head]!;
      if (m.dropped) {
        this.shift();
        continue;
      }
      const r = this.trySend(m.text, m.fds);
      if (r === 'full') return;
      this.shift();
      for (const fd of m.fds) closeQuietly(fd);
    }
    this.backlog = [];
    this.head = 0;
    if (this.retry) clearInterval(this.retry);
    this.retry = undefined;
    this.log('info', `sd_notify: ${this.addr} reads again; the backlog is delivered`);
  }

  close(): void {
    if (this.retry) clearInterval(this.retry);
    this.retry = undefined;
    if (this.live > 0) {
      this.flush();
      if (this.live > 0) {
        const left = this.backlog.slice(this.head).filter((m) => !m.dropped);
        const removals = left.filter((m) => m.removeName !== undefined).length;
        this.log(
          'warning',
          `sd_notify: ${left.length} message(s) never reached ${this.addr} (${left.filter((m) => m.storeName).length} lock(s) not in the descriptor store: the next start re-takes them from the journal` +
            (removals > 0 ? `; ${removals} released lock(s) still in it: the next start closes their descriptors, the journal holds no lock on them` : '') +
            ')',
        );
        for (const m of left) for (const fd of m.fds) closeQuietly(fd);
        this.backlog = [];
        this.head = 0;
        this.live = 0;
        this.droppable = 0;
        this.stores.clear();
        this.removals.clear();
      }
    }
    if (this.fd === undefined) return;
    closeQuietly(this.fd);
    this.fd = undefined;
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // nothing to do
  }
}

/** systemd's file descriptor store, as the locker sees it. */
export class FdStore implements DescriptorStore {
  stored = 0;
  removed = 0;
  constructor(private readonly notifier: Notifier) {}

  store(name: string, fd: number): void {
    if (this.notifier.send(`FDSTORE=1\nFDNAME=${name}`, [fd], { storeName: name })) this.stored++;
  }

  remove(name: string): void {
    if (this.notifier.remove(name)) this.removed++;
  }
}

/** The soft RLIMIT_NOFILE (/proc/self/limits): no descriptor number reaches it. */
export function softNoFile(read: () => string = () => fs.readFileSync('/proc/self/limits', 'utf8')): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(read());
    if (m && m[1] !== 'unlimited') return Number(m[1]);
  } catch {
    // no /proc: the kernel's usual ceiling
  }
  return 1_048_576;
}

/**
 * The descriptors systemd hands this process at start (sd_listen_fds): LISTEN_PID must be ours,
 * LISTEN_FDS of them from fd 3, named by LISTEN_FDNAMES. The count is not trusted: it is bounded
 * by the soft RLIMIT_NOFILE and by the names given, and a descriptor is taken only when it is open
 * (F_GETFD) and a socket or a regular file (fstat), the only kinds systemd passes here. Anything else
 * is left alone, never closed: Node's own epoll, eventfd and signal pipe take the lowest free numbers
 * from 3 when fewer were passed than counted. (Node marks inherited descriptors close-on-exec at its
 * start, so that flag proves nothing.) Each taken one becomes close-on-exec (a virsh child must not keep a lock
 * alive). The variables are removed so no child takes the descriptors for its own.
 */
export function listenFds(env: NodeJS.ProcessEnv = process.env, nat: NativeBinding = defaultNative, pid = process.pid, log: Logf = () => {}, limit = softNoFile()): PassedFd[] {
  const forPid = env.LISTEN_PID;
  const count = env.LISTEN_FDS;
  const names = env.LISTEN_FDNAMES;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (forPid === undefined || count === undefined) return [];
  if (Number(forPid) !== pid) {
    log('warning', `LISTEN_PID=${forPid} is not this process (${pid}): the descriptors are another's, none taken`);
    return [];
  }
  let n = Number(count);
  if (!Number.isSafeInteger(n) || n <= 0) {
    if (count !== '0') log('warning', `LISTEN_FDS=${JSON.stringify(count)} is not a count: no descriptor taken`);
    return [];
  }
  const nameList = names ? names.split(':') : [];
  const bound = Math.min(Math.max(0, limit - SD_LISTEN_FDS_START), names ? nameList.length : Infinity);
  if (n > bound) {
    log('error', `LISTEN_FDS=${n} is more than ${names ? `the ${nameList.length} name(s) in LISTEN_FDNAMES` : `the descriptor limit (${limit})`} allows: only ${bound} looked at`);
    n = bound;
  }
  const out: PassedFd[] = [];
  const refused: string[] = [];
  for (let i = 0; i < n; i++) {
    const fd = SD_LISTEN_FDS_START + i;
    let flags: number;
    let type: string;
    try {
      flags = nat.getFd(fd);
      type = nat.fstatId(fd).type;
    } catch {
      refused.push(`${fd} (not open)`);
      continue;
    }
    // A block device: a direct lock on an LV or LUN the store kept (review26a F4); never Node's own.
    if (type !== 'socket' && type !== 'file' && type !== 'block') {
      refused.push(`${fd} (a ${type}: Node's own)`);
      continue;
    }
    try {
      nat.setFd(fd, flags | FD_CLOEXEC);
    } catch {
      refused.push(`${fd} (not open)`);
      continue;
    }
    out.push({ fd, name: nameList[i] ?? 'unknown' });
  }
  if (refused.length > 0) log('error', `LISTEN_FDS=${count} counts descriptors that were not passed; left alone: ${refused.slice(0, 8).join(', ')}${refused.length > 8 ? ` and ${refused.length - 8} more` : ''}`);
  return out;
}

/**
 * /proc/sys/kernel/random/boot_id: a new value each boot. VMLOCKD_BOOT_ID_FILE reads it from another
 * file instead (tests simulate a reboot with it).
 */
export function bootId(): string | undefined {
  try {
    return fs.readFileSync(process.env.VMLOCKD_BOOT_ID_FILE || '/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** How this daemon's locks came back at start, for `vmlockd status`. */
export interface StartInfo {
  how: 'fresh' | 'store' | 'takeover';
  adopted: number;
  retaken: number;
  lost: number;
  dropped: number;
  /** Grants the journal had lost, found again in the lockspace (src/daemon/found.ts). */
  found?: number;
  /** Direct locks re-taken (not adopted) at this start: nothing proves the gap was clean (src/daemon/direct-gap.ts). */
  directUnproven?: number;
  directNote?: string;
}

/**
 * The service manager link of one daemon: notifier, descriptor store, watchdog and status lines.
 * Does nothing (and costs nothing) when $NOTIFY_SOCKET is not set.
 */
export class ServiceLink {
  readonly notifier: Notifier;
  readonly store: FdStore | undefined;
  /** Descriptors handed back by the manager at this start. */
  readonly passed: PassedFd[];
  start: StartInfo = { how: 'fresh', adopted: 0, retaken: 0, lost: 0, dropped: 0 };
  /** Descriptors `serve --takeover` received from the previous daemon (src/daemon/takeover.ts). */
  takenOver: PassedFd[] = [];
  /** The listening sockets systemd passed and this daemon serves (src/daemon/activation.ts). */
  sockets: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private status: (() => string) | undefined;

  constructor(
    private readonly log: Logf,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.passed = listenFds(env, defaultNative, process.pid, log);
    const watchdogUsec = Number(env.WATCHDOG_USEC ?? 0);
    const watchdogFor = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    // VMLOCKD_NOTIFY_BACKLOG: how many messages may wait for a manager that does not read (tests).
    const backlog = Number(env.VMLOCKD_NOTIFY_BACKLOG ?? '');
    delete env.VMLOCKD_NOTIFY_BACKLOG;
    this.notifier = new Notifier(env, log, defaultNative, Number.isSafeInteger(backlog) && backlog > 0 ? { maxBacklog: backlog } : {});
    // The store only helps under a manager that keeps it; without one each message would fail.
    this.store = this.notifier.enabled ? new FdStore(this.notifier) : undefined;
    this.watchdogMs = watchdogFor && Number.isFinite(watchdogUsec) && watchdogUsec > 0 ? Math.max(1, Math.floor(watchdogUsec / 2000)) : 0;
  }

  /** Half of WATCHDOG_USEC, in ms; 0 when no watchdog is asked for. */
  readonly watchdogMs: number;

  /** READY=1 once the start's locks are held; then STATUS= every few seconds and WATCHDOG=1 as asked. */
  ready(status: () => string): void {
    if (!this.notifier.enabled) return;
    this.status = status;
    this.notifier.send(`READY=1\nSTATUS=${status()}\nMAINPID=${process.pid}`);
    const every = this.watchdogMs > 0 ? Math.min(this.watchdogMs, 5_000) : 5_000;
    let last = '';
    this.timer = setInterval(() => {
      const s = status();
      const lines = [...(this.watchdogMs > 0 ? ['WATCHDOG=1'] : []), ...(s !== last ? [`STATUS=${s}`] : [])];
      last = s;
      if (lines.length > 0) this.notifier.send(lines.join('\n'), [], { periodic: true });
    }, every);
    this.timer.unref();
  }

  /**
   * Around a config reload: RELOADING=1 before, READY=1 after (the same turn of the event loop), each
   * with a STATUS= line; the one after tells the reload's outcome (the daemon's status line does).
   */
  reloading<T>(fn: () => T): T {
    if (!this.notifier.enabled) return fn();
    this.notifier.send('RELOADING=1\nSTATUS=reloading the config');
    try {
      return fn();
    } finally {
      this.notifier.send(`READY=1${this.status ? `\nSTATUS=${this.status()}` : ''}`);
    }
  }

  stopping(reason: string): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.notifier.send(`STOPPING=1\nSTATUS=stopping (${reason}); locks stay held by the descriptor store until the service stops`);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.notifier.close();
  }

  /**
   * Adopt the lock descriptors handed back at this start (before any re-take). Descriptors that
   * are not locks (socket activation's, handled elsewhere) stay in `passed`.
   */
  adoptInto(locker: Locker, state: State, at: string): Adoption {
    if (this.takenOver.length > 0) {
      const a = locker.adopt(state, this.takenOver, at, 'taken-over');
      this.start = { ...this.start, how: 'takeover', adopted: a.adopted, dropped: a.dropped.length, lost: a.lost.length };
      this.log('info', `took over ${a.adopted} lock(s) from the previous daemon` + (a.dropped.length > 0 ? `; closed ${a.dropped.length}` : ''));
      this.logRenamed(a);
      // Under systemd too (a takeover inside the unit): the store learns the descriptors now ours.
      for (const p of locker.descriptors()) this.store?.store(p.name, p.fd);
      this.takenOver = [];
      return a;
    }
    const locks = this.passed.filter((p) => isLockFdName(p.name));
    const others = this.passed.filter((p) => !isLockFdName(p.name));
    this.passed.length = 0;
    this.passed.push(...others);
    if (locks.length === 0) return { facts: [], lost: [], adopted: 0, dropped: [] };
    const a = locker.adopt(state, locks, at, 'adopted');
    this.start = { ...this.start, how: 'store', adopted: a.adopted, dropped: a.dropped.length, lost: a.lost.length };
    this.log('info', `adopted ${a.adopted} lock(s) from the descriptor store` + (a.dropped.length > 0 ? `; closed ${a.dropped.length}: ${a.dropped.map((d) => `${d.name} (${d.reason})`).join(', ')}` : ''));
    this.logRenamed(a);
    return a;
  }

  /** Adopted disks locked in place whose path no longer names them: held all the same, by their descriptor. */
  private logRenamed(a: Adoption): void {
    for (const r of a.renamed ?? []) this.log('warning', `disk ${r.disk} was renamed under its lock: ${r.reason}; its lock was adopted through its descriptor and holds`);
  }

  counted(retaken: number, lost: number): void {
    this.start = { ...this.start, retaken, lost: this.start.lost + lost };
  }

  /** For `vmlockd status`. */
  info(): Record<string, unknown> {
    return {
      ...this.start,
      notifySocket: this.notifier.addr,
      fdStore: this.store ? { stored: this.store.stored, removed: this.store.removed, backlog: this.notifier.pending, deferred: this.notifier.deferred } : null,
      watchdogMs: this.watchdogMs || null,
      sockets: this.sockets,
    };
  }
}
