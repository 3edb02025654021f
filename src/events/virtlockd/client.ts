// A virtlockd client that behaves like libvirt's lockd plugin: one connection, serials from 0,
// one outstanding call at a time. Used by tests and tools against virtlockd or vmlockd's server.
import * as net from 'node:net';
import { VmlockdError } from '../../engine/errors.js';
import {
  ACQUIRE_FLAG,
  FrameReader,
  KEEPALIVE_PROC,
  KEEPALIVE_PROGRAM,
  LOCK_PROGRAM,
  MSG_TYPE,
  PROC,
  PROC_NAME,
  decodeHeader,
  decodeReply,
  encodeCall,
  encodeKeepalive,
  type CallArgs,
  type OwnerInput,
  type ProcNumber,
  type RpcError,
} from './codec.js';

/** An ERROR reply from the server. `code`/`domain` are libvirt's numbers (e.g. 87/51 = resource busy). */
export class LockRpcError extends Error {
  readonly code: number;
  readonly domain: number;
  constructor(
    readonly proc: ProcNumber,
    readonly serial: number,
    readonly rpc: RpcError,
    /** The reply frame exactly as received. */
    readonly reply: Buffer,
  ) {
    super(rpc.message ?? `virtlockd error ${rpc.code}/${rpc.domain} without a message`);
    this.name = 'LockRpcError';
    this.code = rpc.code;
    this.domain = rpc.domain;
  }
}

export interface LockClientOptions {
  /** How long to wait for the connection (default 5000 ms). */
  readonly connectTimeoutMs?: number;
  /** How long a call may wait for its reply before the client gives up (default 30000 ms). */
  readonly callTimeoutMs?: number;
}

export interface AcquireOptions {
  readonly shared?: boolean;
  readonly autocreate?: boolean;
  /** Raw flags word; overrides shared/autocreate (to test flag validation). */
  readonly flags?: number;
}

type Waiter = (frame: Buffer | null) => void;

export class LockClient {
  private readonly reader = new FrameReader();
  private serial = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private waiter: Waiter | null = null;
  private inbox: Buffer[] = [];
  private ended = false;
  private readonly closedPromise: Promise<void>;

  private constructor(
    private readonly socket: net.Socket,
    private readonly callTimeoutMs: number,
  ) {
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // ECONNRESET is how virtlockd's peer-credential check looks from here; 'close' follows and settles any call.
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.ended = true;
      this.deliver(null);
    });
  }

  static connect(socketPath: string, opts: LockClientOptions = {}): Promise<LockClient> {
    const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path: socketPath });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new VmlockdError('VMLOCKD_ERR_UNREACHABLE', `connecting to ${socketPath} took over ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(new VmlockdError('VMLOCKD_ERR_UNREACHABLE', `cannot connect to ${socketPath}: ${e.message}`, { cause: e }));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new LockClient(socket, opts.callTimeoutMs ?? 30000));
      });
    });
  }

  /** The serial the next call will carry. */
  get nextSerial(): number {
    return this.serial;
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Resolves true once the server has closed the connection, false if it is still open after timeoutMs. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const result = await Promise.race([this.closedPromise.then(() => true), timeout]);
    clearTimeout(timer);
    return result;
  }

  register(owner: OwnerInput, flags = 0): Promise<void> {
    return this.call(PROC.REGISTER, { owner, flags });
  }

  restrict(flags = 0): Promise<void> {
    return this.call(PROC.RESTRICT, { flags });
  }

  newLockspace(path: string, flags = 0): Promise<void> {
    return this.call(PROC.NEW, { path, flags });
  }

  createLockspace(path: string): Promise<void> {
    return this.call(PROC.CREATE_LOCKSPACE, { path });
  }

  createResource(path: string, name: string, flags = 0): Promise<void> {
    return this.call(PROC.CREATE_RESOURCE, { path, name, flags });
  }

  deleteResource(path: string, name: string, flags = 0): Promise<void> {
    return this.call(PROC.DELETE_RESOURCE, { path, name, flags });
  }

  acquire(path: string, name: string, opts: AcquireOptions = {}): Promise<void> {
    const flags = opts.flags ?? (opts.shared ? ACQUIRE_FLAG.SHARED : 0) | (opts.autocreate ? ACQUIRE_FLAG.AUTOCREATE : 0);
    return this.call(PROC.ACQUIRE_RESOURCE, { path, name, flags });
  }

  release(path: string, name: string, flags = 0): Promise<void> {
    return this.call(PROC.RELEASE_RESOURCE, { path, name, flags });
  }

  /**
   * Writes arbitrary bytes and resolves with the next frame the server sends, or null if the server
   * closes the connection or sends nothing within timeoutMs (a dropped message). Does not use a serial.
   */
  send(frame: Buffer, opts: { timeoutMs?: number } = {}): Promise<Buffer | null> {
    return this.serialize(() => this.exchange(frame, opts.timeoutMs ?? 500));
  }

  /** Ends the connection (EOF, as the plugin does) and waits until it is closed. */
  async close(): Promise<void> {
    if (!this.ended) this.socket.end();
    await this.closedPromise;
  }

  private call<P extends ProcNumber>(proc: P, args: CallArgs<P>): Promise<void> {
    return this.serialize(async () => {
      const serial = this.serial++;
      const reply = await this.exchange(encodeCall(proc, serial, args), this.callTimeoutMs);
      if (reply === null) {
        throw new VmlockdError(
          this.ended ? 'VMLOCKD_ERR_IO' : 'VMLOCKD_ERR_UNREACHABLE',
          this.ended
            ? `the server closed the connection before replying to ${PROC_NAME[proc]} (serial ${serial})`
            : `no reply to ${PROC_NAME[proc]} (serial ${serial}) within ${this.callTimeoutMs} ms`,
        );
      }
      const decoded = decodeReply(reply);
      const h = decoded.header;
      if (h.prog !== LOCK_PROGRAM || h.proc !== proc || h.serial !== serial || h.type !== MSG_TYPE.REPLY) {
        throw new VmlockdError(
          'VMLOCKD_ERR_BAD_INPUT',
          `reply does not match ${PROC_NAME[proc]} serial ${serial}: got prog 0x${h.prog.toString(16)} proc ${h.proc} type ${h.type} serial ${h.serial}`,
        );
      }
      if (decoded.kind === 'error') throw new LockRpcError(proc, serial, decoded.error, reply);
    });
  }

  // One outstanding request per connection, as virtlockd allows and the plugin does.
  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private exchange(frame: Buffer, timeoutMs: number): Promise<Buffer | null> {
    // A frame left over from an earlier send() that timed out would otherwise be taken as this reply.
    this.inbox = [];
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve(null);
      }, timeoutMs);
      this.waiter = (f) => {
        clearTimeout(timer);
        this.waiter = null;
        resolve(f);
      };
      this.socket.write(frame);
    });
  }

  private onData(chunk: Buffer): void {
    for (const f of this.reader.push(chunk)) {
      if (f.kind === 'fatal') {
        // The server's byte stream is out of sync; nothing after this can be trusted.
        this.socket.destroy();
        return;
      }
      const h = decodeHeader(f.bytes);
      // A server with keepalive on expects PONGs; a PONG itself is handed to send() like any frame.
      if (h.prog === KEEPALIVE_PROGRAM && h.type === MSG_TYPE.MESSAGE && h.proc === KEEPALIVE_PROC.PING) {
        this.socket.write(encodeKeepalive(KEEPALIVE_PROC.PONG));
        continue;
      }
      this.deliver(f.bytes);
    }
  }

  private deliver(frame: Buffer | null): void {
    if (this.waiter) this.waiter(frame);
    else if (frame) this.inbox.push(frame);
  }
}
