// A planned restart without systemd: `vmlockd serve --takeover` takes the running daemon's lock
// descriptors over a Unix socket in the state directory (SCM_RIGHTS: each one a copy of the same
// open file description, so its OFD lock never goes away), then the old daemon exits 0 without
// unlocking anything. Invariant 9. Only the same uid may ask (SO_PEERCRED).
//
// Protocol (text lines; descriptor batches of at most 253, each line "FDS name name ...\n" carries
// its descriptors):
//   new -> old  TAKEOVER
//   old -> new  FDS ... (every held lock, in one turn of the event loop)  END
//   new -> old  STOP
//   old         stops as on SIGTERM (answers requests in flight, journals DaemonStopped, closes its
//               journal, gives back the instance guard and the host file) but keeps every lock
//               descriptor open, then sends the locks taken meanwhile:
//   old -> new  FDS ...  DONE
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
import { VmlockdError } from '../engine/errors.js';
import { native as defaultNative, type NativeBinding } from '../engine/native.js';
import { MAX_FDS_PER_MESSAGE, type Logf } from './service.js';

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
  /** Called at the very end of the stop path (the guard and the journal given back). */
  afterStop(): void;
  close(): void;
}

export interface HandoffDaemon {
  descriptors(): PassedFd[];
  /** Copies (dups) of the listening sockets, named by kind and address (src/daemon/listeners.ts). */
  listeners(): PassedFd[];
  stop(reason: string): Promise<void>;
  /**
   * The new daemon went away after STOP without saying UP: serve again, adopting these descriptors
   * (this daemon's own, never closed). Rejects when that start fails too.
   */
  resume(fds: PassedFd[]): Promise<void>;
}

function sendBatches(nat: NativeBinding, fd: number, fds: readonly PassedFd[], end: string): void {
  for (let i = 0; i < fds.length; i += MAX_FDS_PER_MESSAGE) {
    const batch = fds.slice(i, i + MAX_FDS_PER_MESSAGE);
    nat.sendFds(fd, null, `FDS ${batch.map((b) => b.name).join(' ')}\n`, batch.map((b) => b.fd));
  }
  nat.sendFds(fd, null, `${end}\n`, []);
}

export async function listenHandoff(stateDir: string, daemon: HandoffDaemon, log: Logf, nat: NativeBinding = defaultNative): Promise<HandoffServer> {
  const file = handoffPath(stateDir);
  try {
    fs.unlinkSync(file);
  } catch {
    // absent
  }
  let active: { socket: net.Socket; fd: number; sent: Set<string> } | undefined;
  let stopping = false;
  /** The stop for the take-over has finished (DONE sent). */
  let stopped = false;
  /** The new daemon's end of the hand-off closed. */
  let gone = false;
  let confirmed = false;
  let kept: PassedFd[] = [];
  let listening: PassedFd[] = [];
  const resume = async (): Promise<void> => {
    const fds = [...kept, ...listening];
    kept = [];
    listening = [];
    log('error', `takeover: the new daemon failed or died before it was up; serving again with every lock (${fds.length} descriptor(s) never closed)`);
    try {
      await daemon.resume(fds);
    } catch (e) {
      log('error', `takeover: serving again failed: ${(e as Error).message}`);
      process.exit(1);
    }
  };
  const server = net.createServer((socket) => {
    const fd = (socket as unknown as { _handle?: Handle })._handle?.fd;
    let uid = -1;
    try {
      if (fd !== undefined && fd >= 0) uid = nat.peerCred(fd).uid;
    } catch {
      // refused below
    }
    if (fd === undefined || fd < 0 || uid !== process.getuid?.() || active || stopping) {
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
        if (line === 'TAKEOVER' && !active) {
          // One synchronous turn: no command runs between the snapshot of the locks and the send.
          const fds = daemon.descriptors();
          try {
            sendBatches(nat, fd, fds, 'END');
          } catch (e) {
            log('error', `takeover: sending the lock descriptors failed, still serving: ${(e as Error).message}`);
            socket.destroy();
            return;
          }
          active = { socket, fd, sent: new Set(fds.map((f) => `${f.name}/${f.fd}`)) };
          log('info', `takeover: sent ${fds.length} lock descriptor(s) to pid ${nat.peerCred(fd).pid}`);
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
        } else if (line === 'UP' && stopping && !confirmed) {
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
    afterStop: () => {
      server.close();
      if (!stopping || !active) return;
      kept = daemon.descriptors();
      // Locks taken (or taken again) since END: a description the new daemon does not have yet.
      const more = kept.filter((f) => !active!.sent.has(`${f.name}/${f.fd}`));
      try {
        sendBatches(nat, active.fd, [...more, ...listening], 'DONE');
        log('info', `takeover: handed over (${more.length} lock descriptor(s) taken meanwhile sent too, ${listening.length} listening socket(s)); holding every lock until the new daemon is up`);
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
        const n = line.startsWith('FDS ') ? line.split(' ').length - 1 : 0;
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
    return { fds: [], found: false, complete: false, confirm: () => {}, abandon: () => {} };
  }
  const byName = new Map<string, number>();
  const reader = new LineReader(nat, fd);
  const collect = (until: string): boolean => {
    for (;;) {
      const m = reader.next(timeoutMs);
      if (m === null) return false;
      if (m.line === until) return true;
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
  try {
    nat.sendFds(fd, null, 'TAKEOVER\n', []);
    if (!collect('END')) throw new Error('the running daemon closed the hand-off before sending its locks');
    nat.sendFds(fd, null, 'STOP\n', []);
    // The old daemon stops as on SIGTERM (answering requests in flight) and sends what it took meanwhile.
    complete = collect('DONE');
  } catch (e) {
    if (byName.size === 0) {
      closeQuietly(fd);
      throw new Error(`takeover failed before any lock was handed over (the running daemon keeps serving): ${(e as Error).message}`);
    }
    log('warning', `takeover: the old daemon stopped answering half-way (${(e as Error).message}); adopting the ${byName.size} descriptor(s) received and re-taking the rest`);
  }
  // The hand-off stays open until this daemon is up (confirm) or gives up (abandon, or its exit).
  let open = true;
  const end = (msg: string | null): void => {
    if (!open) return;
    open = false;
    if (msg !== null && complete) {
      try {
        nat.sendFds(fd, null, msg, []);
      } catch (e) {
        log('warning', `takeover: could not tell the old daemon we are up (${(e as Error).message}); it has stopped already`);
      }
    }
    closeQuietly(fd);
  };
  return { fds: [...byName].map(([name, f]) => ({ name, fd: f })), found: true, complete, confirm: () => end('UP\n'), abandon: () => end(null) };
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // nothing to do
  }
}
