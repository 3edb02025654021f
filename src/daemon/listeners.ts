// Listening sockets that outlive the daemon: `serve --takeover` hands the control, virtlockd and
// metrics listeners to the new daemon (SCM_RIGHTS), so a client that connects during the hand-off
// waits in the listen queue instead of meeting ENOENT or ECONNREFUSED. Each is named by kind and
// address, so a new daemon configured with another path or port binds afresh and closes the old one.
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import type { PassedFd } from '../engine/locker.js';

export type ListenerKind = 'control' | 'virtlockd' | 'metrics';

const PREFIX = 'listen-';
/** A socket of the service manager's (socket activation), handed over by `serve --takeover`. */
const MANAGED = 'listen-systemd-';

/**
 * The name a listening socket travels under (no spaces or ':', whatever the address holds); a
 * managed one (systemd's: its path never unlinked) under a name that says so.
 */
export function listenerName(kind: ListenerKind, addr: string, managed = false): string {
  return `${managed ? MANAGED : PREFIX}${kind}-${encodeURIComponent(addr).replace(/:/g, '%3A')}`;
}

export function isListenerName(name: string): boolean {
  return name.startsWith(PREFIX);
}

/** Listening sockets received from the previous daemon (or from systemd), each used at most once. */
export class InheritedListeners {
  private readonly byName = new Map<string, number>();
  /**
   * Passed by the service manager (socket activation, src/daemon/activation.ts): the manager owns
   * them and their paths, so this daemon never unlinks them, even when it stops for good.
   */
  private readonly managed = new Set<string>();

  constructor(passed: readonly PassedFd[], opts: { managed?: boolean } = {}) {
    for (const p of passed) {
      if (!isListenerName(p.name)) continue;
      // Handed over by a daemon that had it from systemd: still systemd's.
      const name = p.name.startsWith(MANAGED) ? PREFIX + p.name.slice(MANAGED.length) : p.name;
      this.byName.set(name, p.fd);
      if (opts.managed || name !== p.name) this.managed.add(name);
    }
  }

  /** The listener for this kind and address is the service manager's: never unlink its path. */
  isManaged(kind: ListenerKind, addr: string): boolean {
    return this.managed.has(listenerName(kind, addr));
  }

  /** The inherited listener for this kind and address, if any (then it is the caller's). */
  take(kind: ListenerKind, addr: string): number | undefined {
    const name = listenerName(kind, addr);
    const fd = this.byName.get(name);
    this.byName.delete(name);
    return fd;
  }

  has(kind: ListenerKind, addr: string): boolean {
    return this.byName.has(listenerName(kind, addr));
  }

  /** Close what no part of this start used (an address the config changed). */
  closeRest(): string[] {
    const names = [...this.byName.keys()];
    for (const fd of this.byName.values()) closeQuietly(fd);
    this.byName.clear();
    return names;
  }
}

/** The descriptor of a listening server (libuv's), or undefined. */
export function serverFd(server: net.Server | undefined): number | undefined {
  const fd = (server as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd;
  return fd !== undefined && fd >= 0 ? fd : undefined;
}

function listenWith(server: net.Server, arg: string | { fd: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(arg, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Listen on an inherited descriptor. */
export function listenFd(server: net.Server, fd: number): Promise<void> {
  return listenWith(server, { fd });
}

/** Each bind's temporary name is its own (a closing server unlinks the name it was bound under). */
let binds = 0;

/** Longest path a sockaddr_un holds (with its NUL). */
const SUN_PATH_MAX = 107;

/**
 * Listen on Unix socket `p` (mode 0600): on an inherited descriptor when there is one; else bound
 * under a temporary name in the same directory and renamed into place. libuv unlinks the name it
 * bound when the server closes: that must be the temporary name, never `p`, or a hand-off would
 * remove the path the next daemon is serving. The rename also replaces a stale socket file
 * atomically.
 */
export async function listenUnixPath(server: net.Server, p: string, inherited?: number): Promise<void> {
  if (inherited !== undefined) return listenFd(server, inherited);
  const tmp = path.join(path.dirname(p), `.vmlockd-${process.pid}-${++binds}.sock`);
  const direct = Buffer.byteLength(tmp) > SUN_PATH_MAX;
  const bindAt = direct ? p : tmp;
  try {
    fs.unlinkSync(bindAt);
  } catch {
    // absent
  }
  const old = process.umask(0o177);
  try {
    await listenWith(server, bindAt);
  } finally {
    process.umask(old);
  }
  fs.chmodSync(bindAt, 0o600);
  if (!direct) fs.renameSync(tmp, p);
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // nothing to do
  }
}
