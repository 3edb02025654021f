// The virtlockd protocol server: libvirt's stock lockd plugin talks to vmlockd as if it were
// virtlockd 9.0.0. Framing and bytes come from codec.ts; every lock change goes through the engine
// (SourceContext), so it is decided, locked and journaled like any other source's.
// Reference: /work/shared/VIRTLOCKD_PROTOCOL.md; what differs on purpose: docs/protocol.md.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { BadInputError, VmlockdError } from '../../engine/errors.js';
import { fact } from '../../engine/facts.js';
import { refusalMessage } from '../../engine/messages.js';
import { createLeaseFile, deleteLeaseFile } from '../../engine/locker-files.js';
import { native, type NativeBinding } from '../../engine/native.js';
import type { Reply } from '../../engine/pipeline.js';
import { canonicalPath, diskIdentity } from '../../engine/resolve.js';
import type { HandedConnection, RunningSource, SourceContext } from '../../engine/source.js';
import type { ResourceState } from '../../engine/state.js';
import type { Command, DiskRequest, Owner } from '../../engine/types.js';
import {
  ACQUIRE_FLAG,
  ERR,
  ERR_DOMAIN,
  FrameReader,
  KEEPALIVE_PROGRAM,
  PROC,
  checkFlags,
  createLockspaceFailed,
  decodeCall,
  defaultLockspaceExists,
  deleteFailed,
  encodeErrorReply,
  encodeOkReply,
  lockFailed,
  lockspaceExists,
  lockspaceMissing,
  notADirectory,
  notLocked,
  notRegistered,
  openFailed,
  ownerNotHolding,
  resourceBusy,
  restricted,
  uuidString,
  type Header,
  type LockCall,
  type RpcErrorSpec,
} from './codec.js';
import { processAlive, processStartTime } from './pids.js';
import { ServerRegistry } from './registry.js';
import { BUFFERED_BYTES_MAX, BufferBudget } from './buffer-budget.js';
import { socketAnswers } from '../socket-probe.js';
import { listenUnixPath, serverFd } from '../../daemon/listeners.js';

/** The `source` of every command and fact this server produces. */
export const SOURCE = 'virtlockd';

export interface VirtlockdServerOptions {
  readonly socketPath: string;
  /** JSON file for the lockspaces and owner pids that must survive a restart. */
  readonly registryFile: string;
  /** virtlockd's max_clients: connections beyond it are closed at once. */
  readonly maxClients: number;
  readonly ctx: SourceContext;
  /** Peers with any other uid are refused. Default: 0 for a root daemon, else this process's euid (as virtlockd). */
  readonly allowedUid?: number;
  /** How often owners with no connection of their own open are checked for having exited (ms). */
  readonly ownerPollMs?: number;
  /** How long the rest of a frame may take once its first byte arrived (ms); then the connection is closed. */
  readonly frameTimeoutMs?: number;
  /** Bytes received and not yet handled, all connections together (BUFFERED_BYTES_MAX): past it the largest are closed. */
  readonly maxBufferedBytes?: number;
  readonly peerCred?: NativeBinding['peerCred'];
  /** A listening descriptor handed over by `serve --takeover` for socketPath: served instead of binding. */
  readonly listenFd?: number;
  /** listenFd is systemd's (socket activation): never unlink its path. */
  readonly keepPath?: boolean;
  /**
   * The start must not fail (systemd handed descriptors over: a failed start empties the store): a
   * path another process serves is logged and left alone, and the server runs without listening
   * (owners it knows are still watched and released when they exit).
   */
  readonly degradeIfServed?: boolean;
  /**
   * Established connections handed over by `serve --takeover` (accepted on socketPath by the previous
   * daemon), served from their state on. None is read before `readFrom` settles: until the previous
   * daemon let go (UP), it may still serve them again itself.
   */
  readonly adopt?: { readonly conns: readonly HandedConnection[]; readonly readFrom: Promise<void> };
}

/** What a take-over carries of one connection (HandedConnection.state). */
export interface ConnState {
  readonly v: 1;
  /** The peer's pid and uid (SO_PEERCRED when it was accepted). */
  readonly pid: number;
  readonly uid: number;
  readonly restricted: boolean;
  readonly owner: { uuid: string; name: string; id: number; pid: number } | null;
  /** Bytes received and not yet answered: whole frames queued behind the call in flight, then a partial one (base64). */
  readonly pending: string;
}

function connState(x: unknown): ConnState | string {
  const o = x as Partial<ConnState> | null;
  if (typeof o !== 'object' || o === null || o.v !== 1) return 'unknown state version';
  if (!Number.isSafeInteger(o.pid) || !Number.isSafeInteger(o.uid) || typeof o.restricted !== 'boolean' || typeof o.pending !== 'string') return 'malformed state';
  const w = o.owner;
  if (w !== null && (typeof w !== 'object' || typeof w.uuid !== 'string' || typeof w.name !== 'string' || !Number.isSafeInteger(w.id) || !Number.isSafeInteger(w.pid))) return 'malformed owner';
  return o as ConnState;
}

interface RegisteredOwner {
  readonly uuid: string;
  readonly name: string;
  readonly id: number;
  readonly pid: number;
}

interface Conn {
  readonly socket: net.Socket;
  readonly clientPid: number;
  readonly reader: FrameReader;
  readonly queue: Buffer[];
  restricted: boolean;
  owner: RegisteredOwner | null;
  /** The owner pid this connection is the own connection of (peer pid == registered pid), if any. */
  ownPid: number | null;
  /** Closes the connection when a started frame does not complete in time. */
  frameTimer: NodeJS.Timeout | null;
  busy: boolean;
  /** A call was dispatched and its answer has not come yet (answer() takes only the first). */
  calling: boolean;
  closed: boolean;
  /** Who waits for the calls being dispatched to be answered (idleOf; the close rule, a hand-over). */
  idleWaiters: Array<() => void> | null;
  /** The answer of the call in flight, written by `deliver` (one call in flight per connection). */
  out: Outcome;
  /** Made once per connection, not per call: takes a call's answer (see answer()). */
  readonly answer: (out: Outcome) => void;
  /** Made once per connection: writes `out`, then dispatches the next queued frame (answered()). */
  readonly deliver: () => void;
  /** Reading is paused: a frame came while a call was being answered (a client that pipelines), or replies are unread. */
  paused: boolean;
  /** Reading resumes on the socket's 'drain': more than REPLY_BUFFER_MAX of replies were unread. */
  awaitingDrain: boolean;
  /** A take-over is handing this connection on: answer the call in flight, read but dispatch nothing more. */
  handingOver: boolean;
}

type Outcome = Buffer | null | 'close';

// A command's `at` (the engine stamps facts with its own clock): one ISO string per millisecond,
// not one Date and string per call.
let nowMs = -1;
let nowIso = '';
const now = (): string => {
  const t = Date.now();
  if (t !== nowMs) {
    nowMs = t;
    nowIso = new Date(t).toISOString();
  }
  return nowIso;
};

/**
 * A grant the journal forgot, found again in the lockspace at start (src/daemon/found.ts). Its
 * record names the VM, not the front door; when the protocol registry knows which owner pid took it,
 * or knows that VM as a protocol owner, it is that owner's: the close rule and the pid watch release
 * it when the owner goes, as they would have had the journal not forgotten it. Without an owner it
 * stays held until its VM releases it (libvirt's events, the API) or an operator does.
 */
const FOUND = 'found';

/**
 * A holding this server took: labelled virtlockd, or `reacquire` after the verifier re-took it on a
 * lost lock (the engine does not keep the source through that yet; issue 16.4). Only holdings this
 * server took have owner pids, so an API lock re-taken by the verifier is never claimed.
 */
function takenHere(source: string | undefined): boolean {
  return source === SOURCE || source === 'reacquire' || source === FOUND;
}


/** How long the rest of a started frame may take (ms) unless the options say otherwise. */
export const DEFAULT_FRAME_TIMEOUT_MS = 30_000;
/** A take-over: how long a connection's last reply may take to flush before it is dropped instead. */
const HANDOVER_FLUSH_MS = 5_000;
/**
 * Replies a connection may leave unread before nothing more is read from it (resumed on 'drain'):
 * a client that sends calls and never reads the replies cannot grow the daemon (review 23b). At
 * least net.Socket's writableHighWaterMark, so a write past it has armed 'drain'.
 */
export const REPLY_BUFFER_MAX = 256 * 1024;
/** Owner pids remembered as gone (their own connection closed): enough for every VM of a host. */
const GONE_OWNERS_MAX = 4096;

/**
 * A rejection the journal could not record: INTERNAL_ERROR naming the refusal and the journal's
 * failure (docs/protocol.md D14), instead of the rejection's own error. Null once it is durable.
 */
function unjournaled(r: Reply): RpcErrorSpec | null {
  return r.status === 'error' && r.code === 'VMLOCKD_ERR_JOURNAL' ? internalError(r.message) : null;
}

function errnoOf(code: string | undefined): number | undefined {
  return code === undefined ? undefined : (osConstants.errno as Record<string, number | undefined>)[code];
}

// Errors virtlockd never sends because it accepts the input; libvirt's own texts for the codes.
function invalidArg(detail: string): RpcErrorSpec {
  const prefix = 'invalid argument: ';
  return { code: ERR.INVALID_ARG, domain: ERR_DOMAIN.LOCKSPACE, message: prefix + detail, str1: `${prefix}%s`, str2: detail, int1: -1, int2: -1 };
}
function internalError(detail: string): RpcErrorSpec {
  const prefix = 'internal error: ';
  return { code: ERR.INTERNAL_ERROR, domain: ERR_DOMAIN.LOCKSPACE, message: prefix + detail, str1: `${prefix}%s`, str2: detail, int1: -1, int2: -1 };
}
function createResourceFailed(file: string, e: NodeJS.ErrnoException): RpcErrorSpec {
  const spec = openFailed(file, e.errno ?? -5, undefined, { autocreate: true });
  return spec;
}

/**
 * RESOURCE_BUSY keeps virtlockd's code, domain and leading text, so libvirt and scripts that match
 * "resource busy: Lockspace resource '<name>' is locked" still do; the holder follows after ": ".
 */
export function busyNaming(name: string, detail: string | undefined): RpcErrorSpec {
  const base = resourceBusy(name);
  if (!detail) return base;
  const str2 = `${base.str2}: ${detail}`;
  return { ...base, message: `resource busy: ${str2}`, str2 };
}

function leaseKey(lockspace: string, name: string, uuid: string): string {
  return `${lockspace}\0${name}\0${uuid}`;
}

export class VirtlockdServer implements RunningSource {
  private readonly server: net.Server;
  private readonly conns = new Set<Conn>();
  /** What every connection buffers (a partial frame, queued frames), bounded in total (buffer-budget.ts). */
  private readonly budget: BufferBudget<Conn>;
  private readonly ctx: SourceContext;
  private readonly allowedUid: number;
  private readonly peerCred: NativeBinding['peerCred'];
  private registry!: ServerRegistry;
  /** Owner pid -> how many of its own connections (peer pid == registered pid) are open. */
  private readonly ownConns = new Map<number, number>();
  /**
   * Owner pids whose own connection closed or whose process exited, and whose locks were released:
   * an acquire for them that was in flight, or comes later, must not leave a lock behind.
   */
  private readonly goneOwners = new Set<number>();
  /**
   * (lockspace, name, owner uuid) -> the resource the engine gave that lease at ACQUIRE. A RELEASE
   * goes to that resource: looking the name up again by the file's identity would find another
   * resource when the name has since been made a link of another held image.
   */
  private readonly leaseIds = new Map<string, string>();
  private pollTimer?: NodeJS.Timeout;
  private stopping = false;
  /** Connections kept open for the next daemon by a take-over's stop. */
  private handed: HandedConnection[] = [];
  /** Connections adopted from the previous daemon at start. */
  adoptedConnections = 0;

  constructor(private readonly opts: VirtlockdServerOptions) {
    this.ctx = opts.ctx;
    this.budget = new BufferBudget(opts.maxBufferedBytes ?? BUFFERED_BYTES_MAX);
    const euid = process.geteuid?.() ?? 0;
    this.allowedUid = opts.allowedUid ?? (euid === 0 ? 0 : euid);
    this.peerCred = opts.peerCred ?? ((fd) => native.peerCred(fd));
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.maxConnections = opts.maxClients;
    this.server.on('drop', (d?: { remoteAddress?: string }) => {
      void d;
      this.ctx.log('warning', `virtlockd socket: max_clients (${opts.maxClients}) reached; closed a new connection`);
      this.ctx.reject(SOURCE, new BadInputError(`connection refused: max_clients (${opts.maxClients}) connections are open`));
    });
  }

  get connections(): number {
    return this.conns.size;
  }

  /** degradeIfServed: another process serves the path; this server does not listen. */
  private unserved = false;

  async start(): Promise<void> {
    this.registry = ServerRegistry.load(this.opts.registryFile, (m) => this.ctx.log('warning', m));
    this.adoptHoldings();
    await this.listen();
    for (const h of this.opts.adopt?.conns ?? []) this.adoptConn(h, this.opts.adopt!.readFrom);
    const poll = this.opts.ownerPollMs ?? 2000;
    this.pollTimer = setInterval(() => void this.pollOrphans(), poll);
    this.pollTimer.unref();
    // At once too: owners that exited while no daemon ran (a crash, a reboot) let go now, not a poll later.
    void this.pollOrphans();
  }

  /**
   * Stop listening and drop every connection. Locks stay held: a closing daemon is not a closing VM.
   * A take-over that carries connections keeps each one open instead (handedConnections()).
   */
  async stop(opts: { handingOver?: boolean; connections?: boolean } = {}): Promise<void> {
    this.stopping = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (opts.handingOver && opts.connections) {
      const kept = await Promise.all([...this.conns].map((c) => this.handOver(c)));
      this.handed = kept.filter((h): h is HandedConnection => h !== null);
    }
    for (const c of this.conns) c.socket.destroy();
    await closed;
    this.registry.close();
    // A take-over: the next daemon serves this path through the listener handed to it. A socket of
    // systemd's (socket activation): its path is the socket unit's, bound while this daemon is down.
    if (opts.handingOver || this.opts.keepPath || this.unserved) return;
    try {
      fs.unlinkSync(this.opts.socketPath);
    } catch {
      // already gone
    }
  }

  handedConnections(): HandedConnection[] {
    return this.handed;
  }

  /**
   * Keep `conn` for the next daemon: the call in flight is answered and its reply flushed, nothing
   * more is dispatched, and what was read but not answered travels with it. The socket object is
   * destroyed; a copy of its descriptor (no shutdown: the peer sees nothing) stays open.
   */
  private async handOver(conn: Conn): Promise<HandedConnection | null> {
    conn.handingOver = true;
    this.clearFrameTimer(conn);
    await this.idleOf(conn);
    const s = conn.socket;
    if (!conn.closed && s.writableLength > 0) {
      // A client that reads none of its replies must not hold the hand-off up: bounded, then dropped.
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        s.once('drain', resolve);
        s.once('close', resolve);
        timer = setTimeout(resolve, HANDOVER_FLUSH_MS);
      });
      clearTimeout(timer);
      if (s.writableLength > 0) {
        this.ctx.log('warning', `virtlockd socket: pid ${conn.clientPid} read no reply for ${HANDOVER_FLUSH_MS} ms; its connection is closed, not handed over`);
        return null;
      }
    }
    if (conn.closed || conn.reader.failed || s.destroyed) return null;
    // One synchronous stretch from here to the destroy: libuv reads nothing more from this socket,
    // so every byte is either in what we take here or still in the kernel for the next daemon.
    let chunk: Buffer | null;
    while ((chunk = s.read() as Buffer | null) !== null) this.onData(conn, chunk);
    if (conn.closed || conn.reader.failed) return null;
    const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (fd === undefined || fd < 0) return null;
    let copy: number;
    try {
      copy = native.dupFd(fd);
    } catch (e) {
      this.ctx.log('warning', `virtlockd socket: pid ${conn.clientPid}: cannot keep the connection for the next daemon: ${(e as Error).message}`);
      return null;
    }
    const pending = Buffer.concat([...conn.queue, conn.reader.takePending()]);
    conn.queue.length = 0;
    const state: ConnState = {
      v: 1,
      pid: conn.clientPid,
      uid: this.allowedUid,
      restricted: conn.restricted,
      owner: conn.owner ? { ...conn.owner } : null,
      pending: pending.toString('base64'),
    };
    s.destroy();
    return { kind: 'virtlockd', addr: this.opts.socketPath, fd: copy, state };
  }

  /** A connection the previous daemon handed over: served as if accepted here, from its state on. */
  private adoptConn(h: HandedConnection, readFrom: Promise<void>): void {
    const st = connState(h.state);
    const drop = (why: string) => {
      this.ctx.log('warning', `virtlockd socket: a connection handed over was closed: ${why}`);
      try {
        fs.closeSync(h.fd);
      } catch {
        // already closed
      }
    };
    if (typeof st === 'string') return drop(st);
    let cred: { pid: number; uid: number };
    try {
      cred = this.peerCred(h.fd);
    } catch (e) {
      return drop(`cannot read its peer credentials: ${(e as Error).message}`);
    }
    if (cred.uid !== this.allowedUid) return drop(`its peer has uid ${cred.uid}`);
    let socket: net.Socket;
    try {
      // pauseOnCreate: nothing is read before readFrom settles (Node's option, not in its types).
      socket = new net.Socket({ fd: h.fd, readable: true, writable: true, pauseOnCreate: true } as net.SocketConstructorOpts);
    } catch (e) {
      return drop((e as Error).message);
    }
    const conn = this.track(socket, cred.pid);
    conn.restricted = st.restricted;
    conn.owner = st.owner;
    if (st.owner && st.owner.pid > 0 && cred.pid === st.owner.pid) this.setOwnPid(conn, st.owner.pid);
    this.adoptedConnections++;
    const pending = Buffer.from(st.pending, 'base64');
    void readFrom.then(() => {
      if (conn.closed || this.stopping) return;
      socket.resume();
      if (pending.length > 0) this.onData(conn, pending);
    });
  }

  listener(): { kind: 'virtlockd'; addr: string; fd: number; managed?: boolean } | undefined {
    const fd = serverFd(this.server);
    return fd === undefined ? undefined : { kind: 'virtlockd', addr: this.opts.socketPath, fd, ...(this.opts.keepPath ? { managed: true } : {}) };
  }

  // ── socket ─────────────────────────────────────────────────────────────────────────────────

  private async listen(): Promise<void> {
    const p = this.opts.socketPath;
    // 0755 like libvirt's own /run/libvirt: a 0700 directory made here first would lock non-root
    // users out of libvirt's other sockets in it. The socket itself is 0600.
    if (this.opts.listenFd !== undefined) {
      // Handed over by the daemon this one took over from: the same socket, its queue kept.
      await listenUnixPath(this.server, p, this.opts.listenFd);
      return;
    }
    fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
    if (fs.existsSync(p)) {
      if (await socketAnswers(p)) {
        if (this.opts.degradeIfServed) {
          this.unserved = true;
          this.ctx.log('error', `virtlockd socket ${p} is already served by another process (a running virtlockd?), and systemd handed this start descriptors: not serving it rather than failing the start (that would empty the store and free every lock); stop the other process, then systemctl restart vmlockd`);
          return;
        }
        throw new VmlockdError('VMLOCKD_ERR_ALREADY_RUNNING', `virtlockd socket ${p} is already served by another process (a running virtlockd?); stop it first`);
      }
      fs.unlinkSync(p);
    }
    await listenUnixPath(this.server, p);
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => undefined);
    if (this.stopping) {
      socket.destroy();
      return;
    }
    let cred: { pid: number; uid: number; gid: number };
    try {
      cred = this.peerCred((socket as unknown as { _handle: { fd: number } })._handle.fd);
    } catch (e) {
      this.closeAfter(socket, this.rejected(new BadInputError(`cannot read the peer credentials of a connection: ${(e as Error).message}`), undefined));
      return;
    }
    if (cred.uid !== this.allowedUid) {
      // virtlockd's check and text; the peer gets no frame, only the close.
      const msg = `operation forbidden: Disallowing client ${cred.pid} with uid ${cred.uid}`;
      this.ctx.log('warning', `virtlockd socket: ${msg}`);
      this.closeAfter(socket, this.rejected(new BadInputError(msg), undefined));
      return;
    }
    this.track(socket, cred.pid);
  }

  private track(socket: net.Socket, clientPid: number): Conn {
    socket.on('error', () => undefined);
    const conn: Conn = {
      socket,
      clientPid,
      reader: new FrameReader(),
      queue: [],
      restricted: false,
      owner: null,
      ownPid: null,
      frameTimer: null,
      busy: false,
      calling: false,
      closed: false,
      idleWaiters: null,
      out: null,
      answer: (out) => this.answer(conn, out),
      deliver: () => this.answered(conn),
      paused: false,
      awaitingDrain: false,
      handingOver: false,
    };
    this.conns.add(conn);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.once('close', () => {
      conn.closed = true;
      this.conns.delete(conn);
      this.budget.set(conn, 0);
      this.clearFrameTimer(conn);
      this.setOwnPid(conn, null);
      void this.onClose(conn).catch((e: unknown) => this.ctx.log('error', `virtlockd close rule failed: ${(e as Error).stack ?? e}`));
    });
    return conn;
  }

  private onData(conn: Conn, chunk: Buffer): void {
    if (conn.closed) return;
    const frames = conn.reader.push(chunk);
    for (const f of frames) {
      if (f.kind === 'fatal') {
        this.drop(conn, this.rejectFrame(conn, f.message, chunk.subarray(0, 64)));
        return;
      }
      conn.queue.push(f.bytes);
    }
    // Every connection's buffers together stay bounded: past it the largest are closed (this one, or others).
    if (this.account(conn)) return;
    // Being handed over: what was read travels with the connection; the next daemon answers it.
    if (conn.handingOver) return;
    // A started frame gets a bounded time to complete, counted from its first byte (virtlockd waits
    // forever, so 1,000 half-sent frames would hold 1,000 connections and their buffers).
    if (conn.reader.pending === 0) this.clearFrameTimer(conn);
    else if (frames.length > 0 || !conn.frameTimer) this.armFrameTimer(conn);
    if (conn.queue.length === 0) return;
    if (!conn.busy) this.drain(conn);
    else if (!conn.paused) {
      // A frame before the call in flight was answered: read nothing more until the queue drains.
      // (The plugin waits for each reply, so this is rare; not pausing for every call saves a
      // read stop and start per call.)
      conn.paused = true;
      conn.socket.pause();
    }
  }

  /**
   * Counts what `conn` buffers now; past the bound closes the connections holding the most (largest
   * first) with a reason naming each peer. True if `conn` itself was closed.
   */
  private account(conn: Conn): boolean {
    let bytes = conn.reader.pending;
    for (const q of conn.queue) bytes += q.length;
    this.budget.set(conn, bytes);
    const over = this.budget.over();
    if (over.length === 0) return false;
    const total = this.budget.total;
    for (const c of over) {
      const held = this.budget.get(c);
      const msg = `the protocol socket's connections buffer ${total} bytes of frames not yet handled, over the ${this.budget.max}-byte limit for all of them together; this connection held the most (${held} bytes): closing it`;
      this.ctx.log('warning', `virtlockd socket: pid ${c.clientPid}: ${msg}`);
      this.drop(c, this.rejectFrame(c, msg, Buffer.alloc(0)));
    }
    return conn.closed;
  }

  private armFrameTimer(conn: Conn): void {
    this.clearFrameTimer(conn);
    const ms = this.opts.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    conn.frameTimer = setTimeout(() => {
      conn.frameTimer = null;
      if (conn.closed) return;
      // A call being answered pauses reading: the client is waiting for us, not we for it.
      if (conn.busy) return this.armFrameTimer(conn);
      const msg = `a frame was started but not completed within ${ms} ms (${conn.reader.pending} bytes received); closing the connection`;
      this.ctx.log('warning', `virtlockd socket: pid ${conn.clientPid}: ${msg}`);
      this.drop(conn, this.rejectFrame(conn, msg, Buffer.alloc(0)));
    }, ms);
    conn.frameTimer.unref();
  }

  private clearFrameTimer(conn: Conn): void {
    if (conn.frameTimer) clearTimeout(conn.frameTimer);
    conn.frameTimer = null;
  }

  /** Count `conn` as the own connection of `pid` (or of none). */
  private setOwnPid(conn: Conn, pid: number | null): void {
    if (conn.ownPid !== null) {
      const n = (this.ownConns.get(conn.ownPid) ?? 1) - 1;
      if (n <= 0) this.ownConns.delete(conn.ownPid);
      else this.ownConns.set(conn.ownPid, n);
    }
    conn.ownPid = pid;
    if (pid !== null) this.ownConns.set(pid, (this.ownConns.get(pid) ?? 0) + 1);
  }

  // One outstanding call per connection, as virtlockd (nrequests_client_max = 1): the next frame is
  // dispatched only once this one is answered, so replies keep the calls' order; frames that come
  // meanwhile wait in the queue, and reading pauses (onData).
  //
  // Callbacks, not promises (issue 13, proto28): a call is dispatched, its answer handed to
  // conn.answer (made once per connection), and written by conn.deliver in a microtask of its own,
  // where a promise's continuation ran before: after the engine's group commit that answered it has
  // finished (SourceContext.dispatch), so the reply, the next frame and anything they submit come in
  // the same order as before, without an async frame or a promise per call.
  private drain(conn: Conn): void {
    if (conn.queue.length === 0 || conn.closed || conn.handingOver) return this.settled(conn);
    conn.busy = true;
    conn.calling = true;
    const frame = conn.queue.shift()!;
    this.budget.set(conn, Math.max(0, this.budget.get(conn) - frame.length));
    try {
      this.handleFrame(conn, frame, conn.answer);
    } catch (e) {
      this.ctx.log('error', `virtlockd socket: pid ${conn.clientPid}: handling a frame failed: ${(e as Error).stack ?? e}`);
      conn.answer('close');
    }
  }

  /** A call's answer: the first one counts; written from a microtask (deliver). */
  private answer(conn: Conn, out: Outcome): void {
    if (!conn.calling) return;
    conn.calling = false;
    conn.out = out;
    queueMicrotask(conn.deliver);
  }

  /** Write the answer of the call in flight, then dispatch the next queued frame (or settle). */
  private answered(conn: Conn): void {
    const out = conn.out;
    conn.out = null;
    if (out === 'close') {
      conn.socket.destroy();
      return this.settled(conn);
    }
    if (out !== null && !conn.closed) conn.socket.write(out);
    this.drain(conn);
  }

  /** Nothing in flight and nothing queued: read on, and let whoever waits for that go. */
  private settled(conn: Conn): void {
    conn.busy = false;
    this.resumeReading(conn);
    const waiters = conn.idleWaiters;
    if (waiters === null) return;
    conn.idleWaiters = null;
    for (const w of waiters) w();
  }

  /** Settles once the calls being dispatched on `conn` are answered (at once if none is). */
  private idleOf(conn: Conn): Promise<void> {
    if (!conn.busy) return Promise.resolve();
    return new Promise((resolve) => (conn.idleWaiters ??= []).push(resolve));
  }

  /** Read on, unless more than REPLY_BUFFER_MAX of replies are unread: then once they drain. */
  private resumeReading(conn: Conn): void {
    if (conn.closed || conn.handingOver) return;
    const s = conn.socket;
    if (s.writableLength > REPLY_BUFFER_MAX) {
      if (!conn.paused) s.pause();
      conn.paused = true;
      if (!conn.awaitingDrain) {
        conn.awaitingDrain = true;
        s.once('drain', () => {
          conn.awaitingDrain = false;
          if (!conn.busy) this.resumeReading(conn);
        });
      }
    } else if (conn.paused) {
      conn.paused = false;
      s.resume();
    }
  }

  private handleFrame(conn: Conn, frame: Buffer, done: (out: Outcome) => void): void {
    const d = decodeCall(frame);
    switch (d.kind) {
      case 'call':
        return this.dispatch(conn, d.header, d.call, done);
      default:
        this.notACall(conn, frame, d).then(done, (e: unknown) => {
          this.ctx.log('error', `virtlockd socket: pid ${conn.clientPid}: handling a frame failed: ${(e as Error).stack ?? e}`);
          done('close');
        });
    }
  }

  private async notACall(conn: Conn, frame: Buffer, d: Exclude<ReturnType<typeof decodeCall>, { kind: 'call' }>): Promise<Outcome> {
    switch (d.kind) {
      case 'error': {
        // Answered once its InputRejected fact is durable, as any reply (or with the journal's error).
        const r = await this.rejectFrame(conn, d.error.message, frame);
        return encodeErrorReply(d.header, unjournaled(r) ?? d.error);
      }
      case 'reply':
        return d.reply;
      case 'drop':
        // Not answered; the next call on this connection is read once the fact is durable.
        if (d.header.prog !== KEEPALIVE_PROGRAM) await this.rejectFrame(conn, `message of type ${d.header.type} to program ${d.header.prog} dropped (only CALLs are answered)`, frame);
        return null;
      case 'close':
        await this.rejectFrame(conn, d.close, frame);
        return 'close';
      default: {
        const _exhaustive: never = d;
        return _exhaustive;
      }
    }
  }

  private rejectFrame(conn: Conn, message: string, raw: Buffer): Promise<Reply> {
    return this.rejected(new BadInputError(`bad frame from pid ${conn.clientPid}: ${message}`), raw.subarray(0, 2048).toString('hex'));
  }

  /** Journal a rejected input; settles once its InputRejected fact is durable, or with the journal's error. */
  private rejected(error: BadInputError, raw: string | undefined): Promise<Reply> {
    return new Promise((resolve) => this.ctx.rejectThen(SOURCE, error, raw, resolve));
  }

  /**
   * Close `conn` once `journaled` (the fact saying why) is durable or could not be written: nothing
   * more is read, dispatched or answered on it meanwhile (a reply in flight is not written).
   */
  private drop(conn: Conn, journaled: Promise<unknown>): void {
    conn.closed = true;
    this.clearFrameTimer(conn);
    // Nothing more is handled on it: its buffers go now, not when the socket is destroyed.
    conn.reader.takePending();
    conn.queue.length = 0;
    this.budget.set(conn, 0);
    this.closeAfter(conn.socket, journaled);
  }

  private closeAfter(socket: net.Socket, journaled: Promise<unknown>): void {
    socket.pause();
    void journaled.then(() => socket.destroy());
  }

  // ── dispatch ───────────────────────────────────────────────────────────────────────────────

  /** `done` gets the call's reply (SourceContext.dispatch's rules: it never throws, submits nothing). */
  private dispatch(conn: Conn, h: Header, call: LockCall, done: (out: Outcome) => void): void {
    try {
      const refused = this.check(conn, call);
      if (refused) {
        if (refused instanceof Promise) refused.then((spec) => done(encodeErrorReply(h, spec)), (e: unknown) => done(this.failed(h, call.proc, e)));
        else done(encodeErrorReply(h, refused));
        return;
      }
      // The hot path: the engine's answer comes by callback, no promise or async frame per call.
      if (call.proc === PROC.ACQUIRE_RESOURCE) return this.acquire(conn.owner!, call.path, call.name, call.flags, h, done);
      if (call.proc === PROC.RELEASE_RESOURCE) return this.release(conn.owner!, call.path, call.name, h, done);
      const r = this.run(conn, call);
      if (r instanceof Promise) r.then((err) => done(err ? encodeErrorReply(h, err) : encodeOkReply(h)), (e: unknown) => done(this.failed(h, call.proc, e)));
      else done(r ? encodeErrorReply(h, r) : encodeOkReply(h));
    } catch (e) {
      done(this.failed(h, call.proc, e));
    }
  }

  /** A call that threw: logged, answered INTERNAL_ERROR. */
  private failed(h: Header, proc: number, e: unknown): Buffer {
    this.ctx.log('error', `virtlockd ${proc} failed: ${(e as Error).stack ?? e}`);
    return encodeErrorReply(h, internalError((e as Error).message));
  }

  /** A reply spec (or OK) that comes later, to `done` as a reply frame. */
  private later(h: Header, proc: number, p: Promise<RpcErrorSpec | null>, done: (out: Outcome) => void): void {
    p.then((err) => done(err ? encodeErrorReply(h, err) : encodeOkReply(h)), (e: unknown) => done(this.failed(h, proc, e)));
  }

  /** virtlockd's order: flags, restricted, registered (REGISTER: owner id), lockspace known. */
  private check(conn: Conn, call: LockCall): RpcErrorSpec | Promise<RpcErrorSpec> | null {
    if (call.proc !== PROC.CREATE_LOCKSPACE) {
      const bad = checkFlags(call.proc, call.flags);
      if (bad) return this.rejected(new BadInputError(bad.message), undefined).then((r) => unjournaled(r) ?? bad);
    }
    if (conn.restricted) return restricted();
    switch (call.proc) {
      case PROC.REGISTER:
        return call.owner.id === 0 ? notRegistered() : null;
      case PROC.CREATE_LOCKSPACE:
        return null;
      case PROC.RESTRICT:
      case PROC.NEW:
        return conn.owner ? null : notRegistered();
      case PROC.CREATE_RESOURCE:
      case PROC.DELETE_RESOURCE:
      case PROC.ACQUIRE_RESOURCE:
      case PROC.RELEASE_RESOURCE:
        if (!conn.owner) return notRegistered();
        return this.knownLockspace(call.path) ? null : lockspaceMissing(call.path);
      default: {
        const _exhaustive: never = call;
        return _exhaustive;
      }
    }
  }

  private run(conn: Conn, call: LockCall): RpcErrorSpec | Promise<RpcErrorSpec | null> | null {
    switch (call.proc) {
      case PROC.REGISTER: {
        const o = call.owner;
        const owner: RegisteredOwner = { uuid: uuidString(o.uuid), name: o.name, id: o.id, pid: o.pid };
        conn.owner = owner;
        this.registered(conn, owner);
        return null;
      }
      case PROC.RESTRICT:
        conn.restricted = true;
        return null;
      case PROC.NEW:
        if (call.path === '') return defaultLockspaceExists();
        if (this.registry.lockspaces.has(call.path)) return lockspaceExists(call.path);
        return this.createLockspace(call.path);
      case PROC.CREATE_LOCKSPACE:
        if (this.knownLockspace(call.path)) return null;
        return this.createLockspace(call.path);
      case PROC.CREATE_RESOURCE:
        return this.createResource(call.path, call.name);
      case PROC.DELETE_RESOURCE:
        return this.deleteResource(call.path, call.name);
      case PROC.ACQUIRE_RESOURCE:
      case PROC.RELEASE_RESOURCE:
        throw new Error(`proc ${call.proc} is dispatched by callback (dispatch())`);
      default: {
        const _exhaustive: never = call;
        return _exhaustive;
      }
    }
  }

  private knownLockspace(p: string): boolean {
    return p === '' || this.registry.lockspaces.has(p);
  }

  private persist(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.ctx.log('error', `cannot save ${this.opts.registryFile}: ${(e as Error).message}; a restart would forget it`);
    }
  }

  private createLockspace(dir: string): RpcErrorSpec | Promise<RpcErrorSpec> | null {
    // virtlockd would mkdir relative to its working directory; nothing names a lockspace that way.
    if (!path.isAbsolute(dir)) return this.badInput(`lockspace must be an absolute directory path, got ${JSON.stringify(dir)}`);
    try {
      if (!fs.statSync(dir).isDirectory()) return notADirectory(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') return createLockspaceFailed(dir, (e as NodeJS.ErrnoException).errno ?? -5);
      try {
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch (m) {
        return createLockspaceFailed(dir, (m as NodeJS.ErrnoException).errno ?? -5);
      }
    }
    this.persist(() => this.registry.addLockspace(dir));
    return null;
  }

  /** INVALID_ARG, answered once its InputRejected fact is durable (or the journal's error). */
  private badInput(message: string): Promise<RpcErrorSpec> {
    return this.rejected(new BadInputError(message), undefined).then((r) => unjournaled(r) ?? invalidArg(message));
  }

  /** The name must be one file inside a directory lockspace, or an absolute path in the default one. */
  private nameProblem(lockspace: string, name: string): string | null {
    if (name.includes('\0')) return `resource name must not contain a NUL byte, got ${JSON.stringify(name)}`;
    if (lockspace === '') {
      return path.isAbsolute(name) ? null : `a resource in the default lockspace is the file itself and needs an absolute path, got ${JSON.stringify(name)}`;
    }
    // virtlockd accepts "../x" and opens whatever it names, outside the lockspace.
    if (name === '' || name === '.' || name === '..' || name.includes('/')) return `resource name must be a single file name inside the lockspace, got ${JSON.stringify(name)}`;
    return null;
  }

  /** The engine's resource id for a named resource (see resolveNamed in src/engine/resolve.ts). */
  private resourceId(lockspace: string, name: string, ownerUuid?: string): string {
    if (lockspace !== '') return this.joined(lockspace, name);
    const canonical = canonicalPath(name);
    const state = this.ctx.state();
    if (state.resources.has(canonical)) return canonical;
    // The image may be held under another name (a file-lockspace lock by path, a hard link): the
    // engine then gave this lease that resource (resolveNamed), so look it up by identity too.
    const identity = diskIdentity(canonical);
    const ids = identity === undefined ? [] : [...(state.byInode.get(identity) ?? [])].sort();
    return ids.find((id) => ownerUuid !== undefined && state.resources.get(id)?.holders.has(ownerUuid)) ?? ids[0] ?? canonical;
  }

  /** Normalized lockspace directories with a trailing '/', by the path a client names (a few per host). */
  private readonly lockspacePrefix = new Map<string, string>();

  /**
   * path.join(lockspace, name) for a name that is one plain file name: the lockspace's normalized
   * prefix is computed once, then it is one concatenation.
   */
  private joined(lockspace: string, name: string): string {
    if (name === '' || name === '.' || name === '..' || name.includes('/')) return path.join(lockspace, name);
    let prefix = this.lockspacePrefix.get(lockspace);
    if (prefix === undefined) {
      if (this.lockspacePrefix.size >= 1024) this.lockspacePrefix.clear();
      prefix = path.join(lockspace, '/');
      this.lockspacePrefix.set(lockspace, prefix);
    }
    return prefix + name;
  }

  private fileOf(lockspace: string, name: string): string {
    return lockspace === '' ? name : `${lockspace}/${name}`;
  }

  private holderText(res: ResourceState): string | undefined {
    const h = [...res.holders.values()][0];
    if (!h) return undefined;
    return refusalMessage(res.ref.canonical, { host: this.ctx.host, owner: h.owner, mode: res.mode, since: h.since });
  }

  private busy(name: string, res: ResourceState): RpcErrorSpec {
    return busyNaming(name, this.holderText(res));
  }

  private createResource(lockspace: string, name: string): RpcErrorSpec | Promise<RpcErrorSpec> | null {
    const problem = this.nameProblem(lockspace, name);
    if (problem) return this.badInput(problem);
    const res = this.ctx.state().resources.get(this.resourceId(lockspace, name));
    if (res && res.holders.size > 0) return this.busy(name, res);
    const file = this.fileOf(lockspace, name);
    try {
      createLeaseFile(file);
    } catch (e) {
      if (e instanceof BadInputError) return this.badInput(e.message);
      return createResourceFailed(file, e as NodeJS.ErrnoException);
    }
    return null;
  }

  private deleteResource(lockspace: string, name: string): RpcErrorSpec | Promise<RpcErrorSpec> | null {
    const problem = this.nameProblem(lockspace, name);
    if (problem) return this.badInput(problem);
    if (lockspace === '') {
      // In the default lockspace the resource is the disk image itself.
      return this.badInput(`refusing to delete ${name}: in the default lockspace the resource is the disk image itself`);
    }
    const res = this.ctx.state().resources.get(this.resourceId(lockspace, name));
    if (res && res.holders.size > 0) return this.busy(name, res);
    const file = this.fileOf(lockspace, name);
    // Unlinking a lease another host holds would let a third host lock a fresh inode beside it
    // (docs/decisions/0004): the locker unlinks it only under a lock of its own.
    try {
      const r = deleteLeaseFile(file);
      if (r.status === 'locked') return busyNaming(name, `lock file ${file} is locked (${r.by}) by another process or host`);
    } catch (e) {
      if (e instanceof BadInputError) return this.badInput(e.message);
      return deleteFailed(file, (e as NodeJS.ErrnoException).errno ?? -5);
    }
    return null;
  }

  private acquire(o: RegisteredOwner, lockspace: string, name: string, flags: number, h: Header, done: (out: Outcome) => void): void {
    const problem = this.nameProblem(lockspace, name);
    if (problem) return this.later(h, PROC.ACQUIRE_RESOURCE, this.badInput(problem), done);
    const shared = (flags & ACQUIRE_FLAG.SHARED) !== 0;
    const autocreate = (flags & ACQUIRE_FLAG.AUTOCREATE) !== 0;
    const file = this.fileOf(lockspace, name);
    const owner: Owner = { uuid: o.uuid, name: o.name };
    // The plugin sends only the SHA-256 of the disk path; when another source locked the disk by its
    // path, the state knows it, and refusals and facts can name the disk instead of the hash.
    const known = this.ctx.state().resources.get(this.resourceId(lockspace, name))?.ref.canonical;
    const disk: DiskRequest = { path: known ?? file, mode: shared ? 'shared' : 'exclusive', named: { lockspace, name, create: autocreate } };
    if (this.goneOwners.has(o.pid)) return done(encodeErrorReply(h, this.ownerIsGone(o, file)));
    this.ctx.dispatch({ kind: 'acquire', owner, disks: [disk], at: now(), source: SOURCE }, (reply) => {
      // Inside the engine's group commit (SourceContext.dispatch): the common answers here, anything
      // that records or releases in a microtask of its own, as a promise's continuation did.
      let out: Buffer;
      try {
        switch (reply.status) {
          case 'ok': {
            const id = reply.acquired[0]?.resource;
            if (reply.acquired.length === 0 || this.goneOwners.has(o.pid)) {
              queueMicrotask(() => this.later(h, PROC.ACQUIRE_RESOURCE, this.acquiredOrHeld(o, lockspace, name, file, shared, owner, disk.mode, reply), done));
              return;
            }
            if (id !== undefined) {
              this.leaseIds.set(leaseKey(lockspace, name, o.uuid), id);
              this.registry.setPids(id, o.uuid, [o.pid]);
            }
            out = encodeOkReply(h);
            break;
          }
          case 'refused':
            out = encodeErrorReply(h, busyNaming(name, reply.refusals[0]?.message ?? reply.message));
            break;
          case 'error':
            out = encodeErrorReply(h, this.engineError(reply, file, autocreate));
            break;
          default: {
            const _exhaustive: never = reply;
            return _exhaustive;
          }
        }
      } catch (e) {
        out = this.failed(h, PROC.ACQUIRE_RESOURCE, e);
      }
      done(out);
    });
  }

  /** An acquire's `ok` that is not a plain grant: already held by this owner, or its owner left meanwhile. */
  private async acquiredOrHeld(o: RegisteredOwner, lockspace: string, name: string, file: string, shared: boolean, owner: Owner, mode: DiskRequest['mode'], reply: Extract<Reply, { status: 'ok' }>): Promise<RpcErrorSpec | null> {
    const id = reply.acquired[0]?.resource ?? reply.already[0]?.resource;
    if (reply.acquired.length > 0) {
      if (id === undefined) return null;
      this.leaseIds.set(leaseKey(lockspace, name, o.uuid), id);
      this.registry.setPids(id, o.uuid, [o.pid]);
      // The close rule (or the watch) released this owner while the acquire was in flight (a
      // hot-plug on libvirtd's connection as QEMU exits): give the lock back at once.
      if (this.goneOwners.has(o.pid)) {
        await this.releasePid(o.pid, [id], 'its owner left while the acquire was in flight');
        return this.ownerIsGone(o, file);
      }
      return null;
    }
    const res = id !== undefined ? this.ctx.state().resources.get(id) : undefined;
    // Already ours. virtlockd lists a shared holder again (one release each) and refuses any
    // other repeat: acquire is not re-entrant.
    if (res && shared && res.mode === 'shared') {
      if (takenHere(res.holders.get(o.uuid)?.source)) {
        this.registry.setPids(res.ref.id, o.uuid, [...this.registry.pidsOf(res.ref.id, o.uuid), o.pid]);
      }
      return null;
    }
    const holder = res ? this.holderText(res) : undefined;
    if (res) {
      const h = res.holders.get(o.uuid);
      // The refusal is answered once its LockRefused fact is durable, as any reply.
      const recorded = this.ctx.record([
        fact('LockRefused', now(), {
          resource: res.ref.id,
          name: res.ref.name,
          lockspace: res.ref.lockspace,
          kind: res.ref.kind,
          disk: res.ref.canonical,
          path: file,
          owner,
          mode,
          source: SOURCE,
          holder: { host: this.ctx.host, owner, mode: res.mode, ...(h ? { since: h.since } : {}) },
          message: `${holder ?? file}: acquire is not re-entrant (the owner already holds it)`,
        }),
      ], { answers: true });
      if (!recorded) return internalError(`refused (${busyNaming(name, holder).message}), but the journal could not record its LockRefused fact (the log says why); no lock changed`);
    }
    return busyNaming(name, holder);
  }

  private release(o: RegisteredOwner, lockspace: string, name: string, h: Header, done: (out: Outcome) => void): void {
    // A name that could never be acquired is simply not in the table.
    if (this.nameProblem(lockspace, name)) return done(encodeErrorReply(h, notLocked(name)));
    const key = leaseKey(lockspace, name, o.uuid);
    const mapped = this.leaseIds.get(key);
    const byName = this.resourceId(lockspace, name, o.uuid);
    const id = mapped !== undefined && this.ctx.state().resources.get(mapped)?.holders.has(o.uuid) ? mapped : byName;
    const res = this.ctx.state().resources.get(id);
    if (!res || res.holders.size === 0) return done(encodeErrorReply(h, notLocked(name)));
    if (!res.holders.has(o.uuid)) return done(encodeErrorReply(h, ownerNotHolding(o.pid)));
    // Keyed by the owner pid that took it, as virtlockd: another pid of the same VM does not hold it.
    const pids = this.registry.pidsOf(id, o.uuid);
    if (pids && pids.length > 0) {
      const i = pids.indexOf(o.pid);
      if (i < 0) return done(encodeErrorReply(h, ownerNotHolding(o.pid)));
      if (pids.length > 1) {
        this.registry.setPids(id, o.uuid, pids.filter((_, j) => j !== i));
        return done(encodeOkReply(h));
      }
    }
    const file = this.fileOf(lockspace, name);
    // The lease's own resource, by the path it holds, when the name alone would now resolve elsewhere.
    const command: Command =
      id !== byName
        ? { kind: 'release', owner: { uuid: o.uuid, name: o.name }, paths: [res.ref.canonical], at: now(), source: SOURCE }
        : { kind: 'release', owner: { uuid: o.uuid, name: o.name }, named: [{ path: file, mode: res.mode, named: { lockspace, name, create: false } }], at: now(), source: SOURCE };
    this.ctx.dispatch(command, (reply) => {
      // Inside the engine's group commit (SourceContext.dispatch): nothing here submits or records.
      let out: Buffer;
      try {
        if (reply.status === 'error') {
          out = encodeErrorReply(h, this.engineError(reply, file, false));
        } else {
          this.leaseIds.delete(key);
          this.registry.setPids(id, o.uuid, []);
          out = encodeOkReply(h);
        }
      } catch (e) {
        out = this.failed(h, PROC.RELEASE_RESOURCE, e);
      }
      done(out);
    });
  }

  private ownerIsGone(o: RegisteredOwner, file: string): RpcErrorSpec {
    const msg = `owner ${o.pid} (VM ${o.name}, uuid ${o.uuid}) has gone: its own connection closed or its process exited, and its locks were released; not locking ${file}`;
    this.ctx.log('warning', `virtlockd: ${msg}`);
    return internalError(msg);
  }

  /**
   * A REGISTER. The connection whose peer is the owner pid itself is the owner's own (QEMU keeps it
   * for its whole life): the close rule watches it. An owner registered by another process (libvirtd)
   * while no own connection is open (a restart cut it) is watched by pid instead. Both are written
   * to the registry so a restart keeps watching them.
   */
  private registered(conn: Conn, o: RegisteredOwner): void {
    const own = conn.clientPid === o.pid && o.pid > 0;
    this.setOwnPid(conn, own ? o.pid : null);
    if (own) this.goneOwners.delete(o.pid);
    if (!own && (o.pid <= 0 || this.ownConns.has(o.pid) || this.registry.owners.get(o.pid)?.uuid === o.uuid)) return;
    const start = processStartTime(o.pid);
    if (!own && start === null) return; // no such process: nothing will ever exit to be watched
    this.registry.setOwner({ uuid: o.uuid, name: o.name, pid: o.pid, start });
  }

  /** An engine error as virtlockd would have reported the same failure. */
  private engineError(reply: Extract<Reply, { status: 'error' }>, file: string, autocreate: boolean): RpcErrorSpec {
    const errno = errnoOf(reply.errno);
    if (reply.code === 'VMLOCKD_ERR_IO' && errno !== undefined) {
      if (reply.syscall === 'open') return openFailed(file, errno, undefined, { autocreate });
      if (reply.syscall?.startsWith('fcntl')) return lockFailed(file, errno);
    }
    if (reply.code === 'VMLOCKD_ERR_BAD_INPUT') return invalidArg(reply.message);
    return internalError(reply.message);
  }

  // ── owners leaving ─────────────────────────────────────────────────────────────────────────

  /** Resource ids (per owner uuid) whose protocol holding lists `pid`, pruning entries the state no longer holds. */
  private holdingsOfPid(pid: number): Map<string, string[]> {
    const state = this.ctx.state();
    const out = new Map<string, string[]>();
    for (const [id, m] of [...this.registry.holds]) {
      for (const [uuid, pids] of [...m]) {
        if (!takenHere(state.resources.get(id)?.holders.get(uuid)?.source)) {
          this.registry.setPids(id, uuid, []);
          continue;
        }
        if (!pids.includes(pid)) continue;
        let l = out.get(uuid);
        if (!l) out.set(uuid, (l = []));
        l.push(id);
      }
    }
    return out;
  }

  /**
   * Take `pid` off the given holdings (or every holding it is on); a holding no pid is left on is
   * released. Returns how many locks were released.
   */
  private async releasePid(pid: number, only: readonly string[] | null, why: string): Promise<number> {
    const state = this.ctx.state();
    let released = 0;
    for (const [uuid, ids] of this.holdingsOfPid(pid)) {
      const last: ResourceState[] = [];
      for (const id of ids) {
        if (only && !only.includes(id)) continue;
        // Every occurrence goes (virtlockd drops one and leaks the stacked rest).
        const left = this.registry.pidsOf(id, uuid).filter((p) => p !== pid);
        this.registry.setPids(id, uuid, left);
        const res = state.resources.get(id);
        if (left.length === 0 && res) last.push(res);
      }
      if (last.length === 0) continue;
      const owner: Owner = { uuid, ...(state.owners.get(uuid)?.name !== undefined ? { name: state.owners.get(uuid)!.name! } : {}) };
      const named = last.map((res): DiskRequest => ({ path: res.holders.get(uuid)!.path, mode: res.mode, named: { lockspace: res.ref.lockspace, name: res.ref.name, create: false } }));
      const reply = await this.ctx.submit({ kind: 'release', owner, named, at: now(), source: SOURCE });
      if (reply.status === 'ok') {
        released += reply.released.length;
        for (const res of last) this.registry.setPids(res.ref.id, uuid, []);
      } else {
        this.ctx.log('error', `releasing the locks of owner pid ${pid} (uuid ${uuid}) ${why} failed: ${reply.message}`);
        // Back on the list, so the watch tries again.
        for (const res of last) this.registry.setPids(res.ref.id, uuid, [...this.registry.pidsOf(res.ref.id, uuid), pid]);
      }
    }
    return released;
  }

  /**
   * virtlockd's close rule: the connection whose peer is the owner's own process (QEMU keeps it open
   * for its whole life) closed, so that QEMU is gone: release what that pid took, and only that (an
   * old QEMU's connection inherited by a child must not free a newer QEMU's lease of the same VM).
   * Unlike virtlockd, every stacked shared occurrence goes, and the process is never signalled.
   */
  private async onClose(conn: Conn): Promise<void> {
    if (this.stopping) return;
    await this.idleOf(conn);
    const o = conn.owner;
    if (!o || this.stopping || conn.clientPid !== o.pid || o.pid <= 0) return;
    // Another own connection of the same pid still open: that process still holds its token.
    if (this.ownConns.has(o.pid)) return;
    await this.ownerGone(o, processAlive(o.pid), 'its connection closed');
  }

  private async ownerGone(o: { uuid: string; name: string; pid: number }, alive: boolean, why: string): Promise<void> {
    this.goneOwners.add(o.pid);
    if (this.goneOwners.size > GONE_OWNERS_MAX) this.goneOwners.delete(this.goneOwners.values().next().value as number);
    const released = await this.releasePid(o.pid, null, why);
    const owner: Owner = { uuid: o.uuid, name: o.name };
    this.ctx.record([fact('OwnerGone', now(), { owner, pid: o.pid, alive, released, source: SOURCE })]);
    if (this.holdingsOfPid(o.pid).size === 0) this.registry.dropOwner(o.pid);
    if (alive) {
      this.ctx.log(
        'warning',
        `VM ${o.name} (uuid ${o.uuid}) pid ${o.pid}: ${why} but the process still runs; released ${released} lock(s). ` +
          'vmlockd does not signal it (virtlockd would SIGTERM, then SIGKILL it); check the VM.',
      );
    } else {
      this.ctx.log('info', `VM ${o.name} (uuid ${o.uuid}) pid ${o.pid}: ${why}; released ${released} lock(s)`);
    }
  }

  /**
   * At start: every protocol holding needs the owner pid that took it. A registry written before
   * pids were kept per holding (or a crash inside the save delay) leaves some without: give them
   * the pid the registry knows for their VM, so the watch still releases them.
   */
  private adoptHoldings(): void {
    const state = this.ctx.state();
    const pidOfUuid = new Map<string, number>();
    for (const rec of this.registry.owners.values()) pidOfUuid.set(rec.uuid, rec.pid);
    for (const res of state.resources.values()) {
      for (const [uuid, h] of res.holders) {
        if ((h.source !== SOURCE && h.source !== FOUND) || this.registry.pidsOf(res.ref.id, uuid).length > 0) continue;
        const pid = pidOfUuid.get(uuid);
        if (pid === undefined && h.source === FOUND) continue;
        if (pid === undefined) {
          this.ctx.log('warning', `virtlockd: no owner pid is known for ${res.ref.id} held by VM ${h.owner.name ?? ''} (${uuid}); it stays held until released`);
          continue;
        }
        this.registry.setPids(res.ref.id, uuid, [pid]);
      }
    }
    this.holdingsOfPid(-1); // prunes holdings the journal no longer has
  }

  /**
   * Owners with no own connection open (a restart cut it, or only libvirtd registered them) are
   * watched by pid: when the process is gone, what it took is released. Owners that hold nothing
   * are still watched (a suspended VM re-acquires later); dead ones are pruned.
   */
  private polling = false;
  private async pollOrphans(): Promise<void> {
    if (this.polling || this.stopping) return;
    this.polling = true;
    try {
      for (const rec of [...this.registry.owners.values()]) {
        if (this.stopping) return;
        if (this.ownConns.has(rec.pid) || processAlive(rec.pid, rec.start)) continue;
        if (this.holdingsOfPid(rec.pid).size === 0) {
          this.registry.dropOwner(rec.pid);
          continue;
        }
        await this.ownerGone(rec, false, 'its process exited while no connection of its own was open');
      }
    } catch (e) {
      this.ctx.log('error', `virtlockd owner watch failed: ${(e as Error).stack ?? e}`);
    } finally {
      this.polling = false;
    }
  }
}

export async function startVirtlockdServer(opts: VirtlockdServerOptions): Promise<VirtlockdServer> {
  const s = new VirtlockdServer(opts);
  await s.start();
  return s;
}
