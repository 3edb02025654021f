// Socket activation (contrib/systemd/vmlockd.socket, vmlockd-virtlockd.socket): systemd owns the
// listening sockets and passes them in LISTEN_FDS, next to the descriptor store's lock descriptors,
// named by FileDescriptorName= (`control`, `virtlockd`). While the daemon restarts (an upgrade, a
// crash) the sockets stay bound and listening in systemd, so a client that connects meanwhile waits
// in the listen queue instead of meeting ENOENT or ECONNREFUSED. The daemon serves each one as it
// was passed and never unlinks or re-binds its path (that would cut the socket unit off its path).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PassedFd } from '../engine/locker.js';
import { isLockFdName } from '../engine/locker.js';
import { InheritedListeners, listenerName, type ListenerKind } from './listeners.js';
import type { Logf } from './service.js';
import { native, type NativeBinding } from '../engine/native.js';

/** The kinds a socket unit may pass, by FileDescriptorName=. The metrics port is not one (docs/operations.md). */
export const ACTIVATED_KINDS = ['control', 'virtlockd'] as const;
export type ActivatedKind = (typeof ACTIVATED_KINDS)[number];

export interface UnixListener {
  /** The bound path ('@name' for an abstract one, '' for an unbound socket). */
  readonly path: string;
  readonly stream: boolean;
  readonly listening: boolean;
}

/**
 * What the descriptor itself says of a passed socket (getsockname, SO_TYPE, SO_ACCEPTCONN): true in
 * any network namespace (PrivateNetwork=yes hides systemd's sockets from /proc/self/net/unix).
 * undefined when `fd` is not a Unix socket.
 */
export function unixListener(fd: number, nat: Pick<NativeBinding, 'sockInfo'> = native): UnixListener | undefined {
  try {
    const i = nat.sockInfo(fd);
    if (i.family !== 'unix' || i.path === null) return undefined;
    return { path: i.path, stream: i.type === 'stream', listening: i.listening };
  } catch {
    return undefined;
  }
}

/**
 * Whether `bound` (the path a socket was bound to) and `configured` name the same socket file: the
 * same string, the same file once symlinks in the directory are resolved (/var/run -> /run), or the
 * same (dev, inode) on disk.
 */
export function samePath(bound: string, configured: string | null): boolean {
  if (configured === null || bound === '' || bound.startsWith('@')) return false;
  if (bound === configured) return true;
  const real = (p: string): string | undefined => {
    try {
      return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
    } catch {
      return undefined;
    }
  };
  const a = real(bound);
  if (a !== undefined && a === real(configured)) return true;
  try {
    const x = fs.statSync(bound);
    const y = fs.statSync(configured);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

export interface ActivationPaths {
  readonly socket: string;
  readonly virtlockdSocket: string | null;
}

export interface Activation {
  readonly listeners: InheritedListeners;
  /** The kinds served from systemd's sockets, for `vmlockd status`. */
  readonly kinds: ActivatedKind[];
}

function describe(fd: PassedFd, l: UnixListener | undefined): string {
  return `descriptor ${fd.fd} named ${JSON.stringify(fd.name)}${l ? ` (${l.path || 'unbound'})` : ''}`;
}

/**
 * Take the listening sockets out of the descriptors systemd passed (`passed` keeps the rest: the
 * store's locks). Each is identified by the descriptor itself (getsockname): its kind is the one whose
 * configured path names the same socket file (symlinks resolved, or the same inode), else its
 * FileDescriptorName= (control, virtlockd), which is what the socket unit means it to be. A named
 * socket bound elsewhere than the config says is served anyway, under its name, with an error naming
 * both paths. Only a socket that is neither (or not a listening Unix stream socket) is closed, logged
 * at error level. Never throws: a mistake in a socket unit must not stop the daemon that keeps every
 * lock (a failed start loops into the start limit, and systemd then empties the store).
 */
export function socketActivation(
  passed: PassedFd[],
  paths: ActivationPaths,
  log: Logf,
  inspect: (fd: number) => UnixListener | undefined = (fd) => unixListener(fd),
): Activation | undefined {
  const sockets = passed.filter((p) => !isLockFdName(p.name));
  if (sockets.length === 0) return undefined;
  const want: Record<ActivatedKind, string | null> = { control: paths.socket, virtlockd: paths.virtlockdSocket };
  const option = (k: ActivatedKind) => (k === 'control' ? 'socket (--socket)' : 'virtlockd_socket (--virtlockd-socket)');
  const use: PassedFd[] = [];
  const kinds: ActivatedKind[] = [];
  const close = (p: PassedFd, l: UnixListener | undefined, problem: string) => {
    log('error', `socket activation: ${describe(p, l)} ${problem}; not served, closed (clients of that path wait in vain until it is fixed)`);
    try {
      fs.closeSync(p.fd);
    } catch {
      // already closed
    }
  };
  for (const p of sockets) {
    passed.splice(passed.indexOf(p), 1);
    const l = inspect(p.fd);
    if (l === undefined || !l.stream || !l.listening) {
      close(p, l, 'is not a listening Unix stream socket (the socket unit needs ListenStream=PATH)');
      continue;
    }
    const named = (ACTIVATED_KINDS as readonly string[]).includes(p.name) ? (p.name as ActivatedKind) : undefined;
    const byPath = ACTIVATED_KINDS.find((k) => samePath(l.path, want[k]));
    const kind = byPath ?? named;
    if (kind === undefined) {
      close(p, l, `is neither FileDescriptorName=control nor =virtlockd, nor bound to a path the config names (socket ${paths.socket}, virtlockd_socket ${paths.virtlockdSocket ?? 'unset'})`);
      continue;
    }
    if (kinds.includes(kind)) {
      close(p, l, `is a second ${kind} socket`);
      continue;
    }
    const configured = want[kind];
    if (configured === null) {
      close(p, l, `is a virtlockd socket but virtlockd_socket (--virtlockd-socket) is unset: set it to ${l.path}`);
      continue;
    }
    if (named !== undefined && named !== kind) {
      log('warning', `socket activation: ${describe(p, l)} is bound to the config's ${option(kind)} path ${configured}: served as the ${kind} socket (swap FileDescriptorName= in the socket units)`);
    } else if (byPath === undefined) {
      log('error', `socket activation: ${describe(p, l)} is bound to ${l.path || 'no path'} but the config's ${option(kind)} is ${configured}: serving it as the ${kind} socket anyway (its FileDescriptorName says so); clients of ${configured} find nothing there. Make the socket unit's ListenStream= and the config name the same path`);
    }
    kinds.push(kind);
    // Named after the configured path: the part of the start that serves that path takes it.
    use.push({ fd: p.fd, name: listenerName(kind as ListenerKind, configured) });
  }
  if (use.length === 0) return undefined;
  return { listeners: new InheritedListeners(use, { managed: true }), kinds: kinds.sort() };
}
