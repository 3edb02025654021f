// Socket activation (contrib/systemd/vmlockd.socket, vmlockd-virtlockd.socket): systemd owns the
// listening sockets and passes them in LISTEN_FDS, next to the descriptor store's lock descriptors,
// named by FileDescriptorName= (`control`, `virtlockd`). While the daemon restarts (an upgrade, a
// crash) the sockets stay bound and listening in systemd, so a client that connects meanwhile waits
// in the listen queue instead of meeting ENOENT or ECONNREFUSED. The daemon serves each one as it
// was passed and never unlinks or re-binds its path (that would cut the socket unit off its path).
import * as fs from 'node:fs';
import type { PassedFd } from '../engine/locker.js';
import { isLockFdName } from '../engine/locker.js';
import { InheritedListeners, listenerName, type ListenerKind } from './listeners.js';
import type { Logf } from './service.js';

/** The kinds a socket unit may pass, by FileDescriptorName=. The metrics port is not one (docs/operations.md). */
export const ACTIVATED_KINDS = ['control', 'virtlockd'] as const;
export type ActivatedKind = (typeof ACTIVATED_KINDS)[number];

export interface UnixListener {
  /** The bound path ('@name' for an abstract one, '' for an unbound socket). */
  readonly path: string;
  readonly stream: boolean;
  readonly listening: boolean;
}

const SO_ACCEPTCON = 0x10000;
const SOCK_STREAM = 1;

/**
 * What /proc/net/unix says of the Unix socket whose inode is `ino` (fstat of its descriptor), or
 * undefined when it is not a Unix socket of this network namespace. Pure: the table is passed in.
 */
export function unixSocketByInode(table: string, ino: number): UnixListener | undefined {
  // "Num RefCount Protocol Flags Type St Inode Path"; Path is absent for an unbound socket.
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7 || Number(f[6]) !== ino) continue;
    const flags = parseInt(f[3]!, 16);
    const type = parseInt(f[4]!, 16);
    return { path: f.slice(7).join(' '), stream: type === SOCK_STREAM, listening: (flags & SO_ACCEPTCON) !== 0 };
  }
  return undefined;
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
 * store's locks). A socket is served when its kind (FileDescriptorName=, or else its path) and its
 * bound path match the config; one that does not is closed and logged at error level, naming both
 * paths: its clients would wait for an answer that never comes. Never throws: a mistake in a socket
 * unit must not stop the daemon that keeps every lock (a failed start empties the store).
 */
export function socketActivation(
  passed: PassedFd[],
  paths: ActivationPaths,
  log: Logf,
  readTable: () => string = () => fs.readFileSync('/proc/self/net/unix', 'utf8'),
): Activation | undefined {
  const sockets = passed.filter((p) => !isLockFdName(p.name));
  if (sockets.length === 0) return undefined;
  let table: string;
  try {
    table = readTable();
  } catch (e) {
    table = '';
    log('error', `socket activation: cannot read /proc/self/net/unix to check the passed sockets: ${(e as Error).message}`);
  }
  const want: Record<ActivatedKind, string | null> = { control: paths.socket, virtlockd: paths.virtlockdSocket };
  const use: PassedFd[] = [];
  const kinds: ActivatedKind[] = [];
  for (const p of sockets) {
    passed.splice(passed.indexOf(p), 1);
    let l: UnixListener | undefined;
    try {
      l = unixSocketByInode(table, fs.fstatSync(p.fd).ino);
    } catch {
      l = undefined;
    }
    const named = (ACTIVATED_KINDS as readonly string[]).includes(p.name) ? (p.name as ActivatedKind) : undefined;
    const kind = named ?? ACTIVATED_KINDS.find((k) => l !== undefined && l.path !== '' && want[k] === l.path);
    let problem: string | undefined;
    if (kind === undefined) problem = `is neither FileDescriptorName=control nor =virtlockd, nor bound to a path the config names (socket ${paths.socket}, virtlockd_socket ${paths.virtlockdSocket ?? 'unset'})`;
    else if (l === undefined || !l.stream || !l.listening) problem = 'is not a listening Unix stream socket (the socket unit needs ListenStream=PATH)';
    else if (want[kind] === null) problem = `is a virtlockd socket but virtlockd_socket (--virtlockd-socket) is unset: set it to ${l.path}`;
    else if (want[kind] !== l.path) problem = `is bound to ${l.path} but the config's ${kind === 'control' ? 'socket (--socket)' : 'virtlockd_socket (--virtlockd-socket)'} is ${want[kind]}: make the socket unit's ListenStream= and the config name the same path`;
    if (problem !== undefined || kind === undefined || l === undefined) {
      log('error', `socket activation: ${describe(p, l)} ${problem}; not served, closed (clients of that path wait in vain until it is fixed)`);
      try {
        fs.closeSync(p.fd);
      } catch {
        // already closed
      }
      continue;
    }
    if (kinds.includes(kind)) {
      log('error', `socket activation: a second ${kind} socket (${describe(p, l)}); closed`);
      fs.closeSync(p.fd);
      continue;
    }
    kinds.push(kind);
    use.push({ fd: p.fd, name: listenerName(kind as ListenerKind, l.path) });
  }
  if (use.length === 0) return undefined;
  return { listeners: new InheritedListeners(use, { managed: true }), kinds: kinds.sort() };
}
