// A planned restart without systemd: `vmlockd serve --takeover` takes the running daemon's lock
// descriptors over a Unix socket in the state directory (SCM_RIGHTS: each one a copy of the same
// open file description, so its OFD lock never goes away), then the old daemon exits 0 without
// unlocking anything. Invariant 9. Only the same uid may ask (SO_PEERCRED).
//
// Protocol (text lines; descriptor batches of at most 253, each line "FDS name name ...\n" carries
// its descriptors; "CONN <base64 JSON>\n" carries one established client connection and its state):
//   new -> old  TAKEOVER conns     ("conns": this daemon adopts client connections; a plain
//                                   TAKEOVER from an older vmlockd gets none, they are closed)
//   old -> new  FDS ... (every held lock, in one turn of the event loop)  END
//   new -> old  STOP
//   old         stops as on SIGTERM (answers requests in flight, journals DaemonStopped, closes its
//               journal, gives back the instance guard and the host file) but keeps every lock
//               descriptor open, then sends the locks taken meanwhile:
//   old -> new  FDS ...  CONN ...  DONE   (the established virtlockd-protocol connections too:
//                                          the call in flight answered, what was read but not
//                                          answered carried in the state; they are not read from
//                                          again until UP, by either daemon)
//   new         starts (the config and naming checks, the sockets, metrics, the journal); once up:
//   new -> old  UP                 the old one closes its descriptors (no unlock) and exits 0
// Fail-safe (invariant 9): until UP the old daemon holds every lock through its own descriptors. If
// the new one goes away before STOP, the old one has changed nothing and keeps serving; if it fails
// or dies after STOP but before UP (a config the journal refuses, a port in use, SIGKILL), the old
// one starts serving again from its own descriptors (resume()). If the old one dies after END, the
// new one adopts what it received and re-takes the rest from the journal.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { PassedFd } from '../engine/locker.js';
import type { HandedConnection } from '../engine/source.js';
import { VmlockdError } from '../engine/errors.js';
import { native as defaultNative, type NativeBinding } from '../engine/native.js';
import { envMs } from './env-ms.js';
import { MAX_FDS_PER_MESSAGE, type Logf } from './service.js';

/**
 * How long the old daemon waits, from TAKEOVER, for the new one's UP (VMLOCKD_TAKEOVER_TIMEOUT_MS,
 * default 120 s: a 10,000-lock take-over is up in about 10 s on a loaded 2-core machine). Then the
 * hand-off is abandoned: the new daemon is killed (SIGKILL) and the old one serves on.
 */
export const DEFAULT_TAKEOVER_TIMEOUT_MS = 120_000;

export function takeoverTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  return envMs(env, 'VMLOCKD_TAKEOVER_TIMEOUT_MS') ?? DEFAULT_TAKEOVER_TIMEOUT_MS;
}

/**
 * A process that has exited: gone from /proc, or a zombie whose every thread is dead. Not the
 * thread-group leader's state alone: Node's leader shows Z while its worker threads are still
 * exiting, and they share the descriptor table, so the instance guard's flock is still held then
 * (found by test: "another vmlockd is already running" right after the old daemon's SIGKILL).
 */
export function exited(pid: number): boolean {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return true;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'Z' && state !== 'X') return false;
    } catch {
      // that thread is gone
    }
  }
  return true;
}

/** Blocks until `pid` has exited (true), or `ms` passed (false). For the new daemon, before it starts. */
function waitExitedSync(pid: number, ms: number): boolean {
  const end = Date.now() + ms;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (!exited(pid)) {
    if (Date.now() >= end) return false;
    Atomics.wait(cell, 0, 0, 20);
  }
  return true;
}

/** Resolves once `pid` has exited, or after `ms` whatever it does. */
async function whenExited(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!exited(pid)) {
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

export function handoffPath(stateDir: string): string {
  return path.join(stateDir, 'handoff.sock');
}

interface Handle {
  fd?: number;
}

/** The running daemon's side. */
export interface HandoffServer {
  /** A stop for a take-over: the locker must keep its descriptors open (the old daemon holds them until UP). */
  readonly handingOver: boolean;
  /** The new daemon adopts established client connections: a take-over's stop keeps them open. */
  readonly handsConnections: boolean;
  /** Called at the very end of the stop path (the guard and the journal given back). */
  afterStop(): void;
  close(): void;
}

export interface HandoffDaemon {
  descriptors(): PassedFd[];
  /** Copies (dups) of the listening sockets, named by kind and address (src/daemon/listeners.ts). */
  listeners(): PassedFd[];
  /** After stop(): the client connections the sources kept open for the next daemon. */
  connections(): HandedConnection[];
  stop(reason: string): Promise<void>;
  /**
   * The new daemon went away after STOP without saying UP: serve again, adopting these descriptors
   * and connections (this daemon's own, never closed). Rejects when that start fails too.
   */
  resume(fds: PassedFd[], conns: HandedConnection[]): Promise<void>;
}

const CAP_CONNS = 'conns';

/** Send `data` whole (a stream socket may take part of it), the descriptors with its first byte. */
function sendAll(nat: NativeBinding, fd: number, data: Buffer, fds: number[]): void {
  let off = nat.sendFds(fd, null, data, fds);
  while (off < data.length) off += nat.sendFds(fd, null, data.subarray(off), []);
}

function sendConns(nat: NativeBinding, fd: number, conns: readonly HandedConnection[]): void {
  for (const c of conns) {
    const body = Buffer.from(JSON.stringify({ kind: c.kind, addr: c.addr, state: c.state })).toString('base64');
    sendAll(nat, fd, Buffer.from(`CONN ${body}\n`), [c.fd]);
  }
}

function closeConns(conns: readonly HandedConnection[]): void {
  for (const c of conns) closeQuietly(c.fd);
}

/** What tells one take of a lock from another: the locker's take, else name and number. */
function sentKey(f: PassedFd): unknown {
  return f.take ?? `${f.name}/${f.fd}`;
}

function sendBatches(nat: NativeBinding, fd: number, fds: readonly PassedFd[], end: string): void {
  for (let i = 0; i < fds.length; i += MAX_FDS_PER_MESSAGE) {
    const batch = fds.slice(i, i + MAX_FDS_PER_MESSAGE);
    nat.sendFds(fd, null, `FDS ${batch.map((b) => b.name).join(' ')}\n`, batch.map((b) => b.fd));
  }
  nat.sendFds(fd, null, `${end}\n`, []);
}

export async function listenHandoff(stateDir: string, daemon: HandoffDaemon, log: Logf, nat: NativeBinding = defaultNative, timeoutMs = takeoverTimeoutMs()): Promise<HandoffServer> {
  const file = handoffPath(stateDir);
  try {
    fs.unlinkSync(file);
  } catch {
    // absent
  }
  let active: { socket: net.Socket; fd: number; sent: Set<unknown> } | undefined;
  let stopping = false;
  /** The stop for the take-over has finished (DONE sent). */
  let stopped = false;
  /** The new daemon's end of the hand-off closed. */
  let gone = false;
  let confirmed = false;
  let kept: PassedFd[] = [];
  let listening: PassedFd[] = [];
  let conns: HandedConnection[] = [];
  /** The new daemon said TAKEOVER conns. */
  let withConns = false;
  /** The new daemon's pid (SO_PEERCRED), and the deadline for its UP. */
  let peerPid = 0;
  let deadline: NodeJS.Timeout | undefined;
  /** The deadline passed: an UP that comes now is not believed (the new daemon is being killed). */
  let timedOut = false;
  let resuming = false;
  const resume = async (): Promise<void> => {
    if (resuming) return;
    resuming = true;
    if (deadline) clearTimeout(deadline);
    // Its instance guard and copies must be gone before this daemon takes the state directory again.
    if (peerPid > 0 && !(await whenExited(peerPid, 10_000))) log('warning', `takeover: the new daemon (pid ${peerPid}) has not exited yet; serving again anyway`);
    const fds = [...kept, ...listening];
    const again = conns;
    kept = [];
    listening = [];
    conns = [];
    log('error', `takeover: the new daemon failed or died before it was up; serving again with every lock (${fds.length} descriptor(s) never closed, ${again.length} client connection(s))`);
    // The state directory still locked (a process we could not see exit) fails the start before any
    // descriptor is touched: try again for a while rather than exit with every lock.
    for (let attempt = 1; ; attempt++) {
      try {
        await daemon.resume(fds, again);
        return;
      } catch (e) {
        if ((e as { code?: unknown }).code === 'VMLOCKD_ERR_ALREADY_RUNNING' && attempt < 20) {
          log('warning', `takeover: serving again: ${(e as Error).message}; trying again`);
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        log('error', `takeover: serving again failed: ${(e as Error).message}`);
        process.exit(1);
      }
    }
  };
  /**
   * No UP in time (the new daemon hangs, or is stopped): decided once, here. The new daemon is
   * killed (it may hold the state directory, the journal and sockets handed to it; an UP it sends
   * later must find nobody) and this daemon serves on: at once if it never stopped, else once the
   * new one has exited (resume()).
   */
  const giveUp = (socket: net.Socket): void => {
    if (confirmed || active?.socket !== socket) return;
    // An UP already sent, not yet read (the deadline's timer ran first): believed, never killed.
    try {
      const r = nat.recvFds(active.fd, 1 << 16, 0);
      for (const f of r.fds) closeQuietly(f);
      if (stopping && r.data.toString('utf8').split('\n').includes('UP')) {
        confirmed = true;
        log('info', 'takeover: the new daemon is up (at the deadline); exiting (its copies keep every lock)');
        process.exit(0);
      }
    } catch {
      // nothing more was sent
    }
    timedOut = true;
    log('error', `takeover: the new daemon (pid ${peerPid}) was not up within ${timeoutMs} ms; killing it and serving on with every lock`);
    try {
      if (peerPid > 0) process.kill(peerPid, 'SIGKILL');
    } catch (e) {
      log('warning', `takeover: killing pid ${peerPid}: ${(e as Error).message}`);
    }
    if (!stopping) {
      active = undefined;
      timedOut = false;
      socket.destroy();
      return;
    }
    gone = true;
    socket.destroy();
    if (stopped) void resume();
  };
  const server = net.createServer((socket) => {
    const fd = (socket as unknown as { _handle?: Handle })._handle?.fd;
    let uid = -1;
    try {
      if (fd !== undefined && fd >= 0) uid = nat.peerCred(fd).uid;
    } catch {
      // refused below
    }
    if (fd === undefined || fd < 0 || uid !== process.getuid?.() || active || stopping || timedOut) {
      log('warning', `takeover: refused a hand-off request (${uid !== process.getuid?.() ? `uid ${uid} is not ours` : 'one is already under way'})`);
      socket.destroy();
      return;
    }
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const takeover = line === 'TAKEOVER' || line.startsWith('TAKEOVER ');
        if (takeover && !active) {
          withConns = line.split(' ').slice(1).includes(CAP_CONNS);
          // One synchronous turn: no command runs between the snapshot of the locks and the send.
          const fds = daemon.descriptors();
          try {
            sendBatches(nat, fd, fds, 'END');
          } catch (e) {
            log('error', `takeover: sending the lock descriptors failed, still serving: ${(e as Error).message}`);
            socket.destroy();
            return;
          }
          active = { socket, fd, sent: new Set(fds.map(sentKey)) };
          peerPid = nat.peerCred(fd).pid;
          log('info', `takeover: sent ${fds.length} lock descriptor(s) to pid ${peerPid}`);
          deadline = setTimeout(() => giveUp(socket), timeoutMs);
        } else if (line === 'STOP' && active && !stopping) {
          stopping = true;
          // Copies taken before the stop closes the servers: each listening socket, and the clients
          // waiting in its queue, live on through them.
          try {
            listening = daemon.listeners();
          } catch (e) {
            log('warning', `takeover: the listening sockets cannot be handed over (the new daemon binds its own): ${(e as Error).message}`);
          }
          void daemon.stop('takeover').then(
            () => {
              stopped = true;
              if (gone) void resume();
            },
            (e: unknown) => {
              log('error', `takeover: stopping failed: ${(e as Error).message}`);
              process.exit(1);
            },
          );
        } else if (line === 'UP' && stopping && !confirmed && !timedOut) {
          confirmed = true;
          log('info', 'takeover: the new daemon is up; exiting (its copies keep every lock)');
          process.exit(0);
        }
      }
    });
    socket.on('close', () => {
      if (active?.socket !== socket) return;
      if (!stopping) {
        log('warning', 'takeover: the new daemon went away before taking over; still serving with every lock');
        active = undefined;
      } else if (!confirmed) {
        gone = true;
        if (stopped) void resume();
      }
      if (deadline && !stopping) clearTimeout(deadline);
    });
    socket.on('error', () => {});
  });
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  return {
    get handingOver() {
      return stopping && active !== undefined;
    },
    get handsConnections() {
      return stopping && active !== undefined && withConns;
    },
    afterStop: () => {
      server.close();
      if (!stopping || !active) return;
      kept = daemon.descriptors();
      conns = withConns ? daemon.connections() : [];
      // Locks taken (or taken again) since END: a description the new daemon does not have yet. A
      // lock released and taken again is a new take, even under the same descriptor number (review26a
      // F1); the receiver keeps the later description of a name.
      const more = kept.filter((f) => !active!.sent.has(sentKey(f)));
      // The new daemon went away (or was given up on) during the stop: its socket is closed, and its
      // descriptor number may already name another file. Nothing is sent; resume() serves these.
      if (gone || active.socket.destroyed) return;
      try {
        sendConns(nat, active.fd, conns);
        sendBatches(nat, active.fd, [...more, ...listening], 'DONE');
        log('info', `takeover: handed over (${more.length} lock descriptor(s) taken meanwhile sent too, ${listening.length} listening socket(s), ${conns.length} client connection(s)); holding every lock until the new daemon is up`);
      } catch (e) {
        log('error', `takeover: the last descriptors could not be sent (the new daemon re-takes them): ${(e as Error).message}`);
      }
    },
    close: () => server.close(),
  };
}

/** What `serve --takeover` got from the running daemon. */
export interface TakenOver {
  readonly fds: PassedFd[];
  /** Established client connections, not to be read from before `up` settles. */
  readonly conns: HandedConnection[];
  /** Settles once the old daemon has been told UP (at once for a daemon serving again). */
  readonly up: Promise<void>;
  /** A failed take-over's old daemon serving again (not a new process). */
  readonly resumed?: boolean;
  /** false: no daemon answered on the hand-off socket (a normal start). */
  readonly found: boolean;
  /** The old daemon said DONE (else it died half-way, or timed out). */
  readonly complete: boolean;
  /**
   * Tell the old daemon this one is up (UP): only then does it close its copies and exit. Never
   * called when the start fails: the old daemon sees the hand-off close and serves again.
   */
  confirm(): void;
  /** The start failed: close the hand-off now (the old daemon serves again). */
  abandon(): void;
}

/** The errno codes of a connect that mean "no daemon listens there". */
const NOBODY = new Set(['ENOENT', 'ECONNREFUSED']);

class LineReader {
  private text = '';
  private readonly queue: number[] = [];
  constructor(
    private readonly nat: NativeBinding,
    private readonly fd: number,
  ) {}

  /** The next line and its descriptors; null at end of stream. */
  next(timeoutMs: number): { line: string; fds: number[] } | null {
    for (;;) {
      const i = this.text.indexOf('\n');
      if (i >= 0) {
        const line = this.text.slice(0, i);
        this.text = this.text.slice(i + 1);
        const n = line.startsWith('FDS ') ? line.split(' ').length - 1 : line.startsWith('CONN ') ? 1 : 0;
        return { line, fds: this.queue.splice(0, n) };
      }
      const r = this.nat.recvFds(this.fd, 1 << 20, timeoutMs);
      if (r.data.length === 0) return null;
      this.text += r.data.toString('utf8');
      this.queue.push(...r.fds);
    }
  }
}

/**
 * The new daemon's side, before it starts: take the descriptors over and let the old daemon stop.
 * Blocking (nothing else runs in this process yet). Returns when the old daemon is done or gone.
 */
export function takeOver(stateDir: string, log: Logf, opts: { timeoutMs?: number } = {}, nat: NativeBinding = defaultNative): TakenOver {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  // A take-over that cannot run must say so, never start "fresh" beside a running daemon.
  const missing = (['unixConnect', 'sendFds', 'recvFds', 'peerCred'] as const).filter((k) => typeof nat[k] !== 'function');
  if (missing.length > 0) {
    throw new VmlockdError('VMLOCKD_ERR_IO', `takeover: the native binding is older than this vmlockd (no ${missing.join(', ')}); rebuild it (npm install runs node-gyp rebuild -C native) and try again; the running daemon keeps serving`);
  }
  let fd: number;
  try {
    fd = nat.unixConnect(handoffPath(stateDir));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === undefined || !NOBODY.has(code)) {
      throw new VmlockdError('VMLOCKD_ERR_IO', `takeover: cannot reach ${handoffPath(stateDir)}: ${(e as Error).message}; the running daemon (if any) keeps serving`);
    }
    log('info', `takeover: no daemon to take over from (${code}); starting normally`);
    return { fds: [], conns: [], up: Promise.resolve(), found: false, complete: false, confirm: () => {}, abandon: () => {} };
  }
  const byName = new Map<string, number>();
  const conns: HandedConnection[] = [];
  const reader = new LineReader(nat, fd);
  const collect = (until: string): boolean => {
    for (;;) {
      const m = reader.next(timeoutMs);
      if (m === null) return false;
      if (m.line === until) return true;
      if (m.line.startsWith('CONN ')) {
        const got = m.fds[0];
        if (got === undefined) continue;
        try {
          const c = JSON.parse(Buffer.from(m.line.slice(5), 'base64').toString('utf8')) as { kind?: unknown; addr?: unknown; state?: unknown };
          if (c.kind !== 'virtlockd' || typeof c.addr !== 'string') throw new Error(`unknown kind ${JSON.stringify(c.kind)}`);
          conns.push({ kind: c.kind, addr: c.addr, fd: got, state: c.state });
        } catch (e) {
          log('warning', `takeover: a client connection handed over is unreadable (${(e as Error).message}); closed`);
          closeQuietly(got);
        }
        continue;
      }
      if (!m.line.startsWith('FDS ')) continue;
      const names = m.line.split(' ').slice(1);
      names.forEach((name, k) => {
        const got = m.fds[k];
        if (got === undefined) return;
        // A later description of the same lock file is the one the old daemon held last.
        const before = byName.get(name);
        if (before !== undefined) closeQuietly(before);
        byName.set(name, got);
      });
    }
  };
  let complete = false;
  let oldPid = 0;
  try {
    oldPid = nat.peerCred(fd).pid;
  } catch {
    // unknown: nothing to wait for below
  }
  try {
    nat.sendFds(fd, null, `TAKEOVER ${CAP_CONNS}\n`, []);
    if (!collect('END')) throw new Error('the running daemon closed the hand-off before sending its locks');
    nat.sendFds(fd, null, 'STOP\n', []);
    // The old daemon stops as on SIGTERM (answering requests in flight) and sends what it took meanwhile.
    complete = collect('DONE');
    if (!complete) log('warning', `takeover: the old daemon went away half-way (the hand-off closed before DONE); adopting the ${byName.size} descriptor(s) received and re-taking the rest`);
  } catch (e) {
    if (byName.size === 0) {
      closeQuietly(fd);
      throw new Error(`takeover failed before any lock was handed over (the running daemon keeps serving): ${(e as Error).message}`);
    }
    log('warning', `takeover: the old daemon stopped answering half-way (${(e as Error).message}); adopting the ${byName.size} descriptor(s) received and re-taking the rest`);
  }
  // An old daemon that went away half-way may still be exiting: its hand-off socket closes before
  // its instance guard does. Start only once it is gone (found by test: "another vmlockd is running").
  if (!complete && oldPid > 0 && !waitExitedSync(oldPid, 10_000)) log('warning', `takeover: the old daemon (pid ${oldPid}) has not exited yet`);
  // The hand-off stays open until this daemon is up (confirm) or gives up (abandon, or its exit).
  let open = true;
  let markUp: () => void = () => {};
  const up = new Promise<void>((resolve) => (markUp = resolve));
  const end = (msg: string | null): void => {
    if (!open) return;
    open = false;
    if (msg !== null) markUp();
    if (msg !== null && complete) {
      try {
        nat.sendFds(fd, null, msg, []);
      } catch (e) {
        log('warning', `takeover: could not tell the old daemon we are up (${(e as Error).message}); it has stopped already`);
      }
    }
    closeQuietly(fd);
  };
  return { fds: [...byName].map(([name, f]) => ({ name, fd: f })), conns, up, found: true, complete, confirm: () => end('UP\n'), abandon: () => end(null) };
}

/** The old daemon of a failed take-over serving again, from its own descriptors and connections. */
export function servingAgain(fds: PassedFd[], conns: HandedConnection[]): TakenOver {
  return { fds, conns, up: Promise.resolve(), resumed: true, found: true, complete: true, confirm: () => {}, abandon: () => {} };
}

export { closeConns };

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // nothing to do
  }
}
