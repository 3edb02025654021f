// The virtlockd wire protocol (libvirt 9.0.0 lock program 0x0EA7BEEF), as a pure codec: frame
// splitting, call decoding with virtlockd's own rejection rules, and byte-exact reply encoding.
// Reference: /work/shared/VIRTLOCKD_PROTOCOL.md (sections 2, 4, 5, 6); docs/protocol.md in the project.
import { constants as osConstants } from 'node:os';
import { XdrDecodeError, XdrReader, XdrWriter } from './xdr.js';

// ── constants ────────────────────────────────────────────────────────────────────────────────

export const LOCK_PROGRAM = 0x0ea7beef;
export const LOCK_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570; // "keep"
export const KEEPALIVE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROC = { PING: 1, PONG: 2 } as const;

export const PROC = {
  REGISTER: 1,
  RESTRICT: 2,
  NEW: 3,
  CREATE_RESOURCE: 4,
  DELETE_RESOURCE: 5,
  ACQUIRE_RESOURCE: 6,
  RELEASE_RESOURCE: 7,
  CREATE_LOCKSPACE: 8,
} as const;
export type ProcNumber = (typeof PROC)[keyof typeof PROC];
/** Procedures that carry a `flags` word (all but CREATE_LOCKSPACE). */
export type FlaggedProc = Exclude<ProcNumber, typeof PROC.CREATE_LOCKSPACE>;

export const PROC_NAME: Readonly<Record<ProcNumber, keyof typeof PROC>> = {
  1: 'REGISTER',
  2: 'RESTRICT',
  3: 'NEW',
  4: 'CREATE_RESOURCE',
  5: 'DELETE_RESOURCE',
  6: 'ACQUIRE_RESOURCE',
  7: 'RELEASE_RESOURCE',
  8: 'CREATE_LOCKSPACE',
};

export const MSG_TYPE = { CALL: 0, REPLY: 1, MESSAGE: 2, STREAM: 3, CALL_WITH_FDS: 4, REPLY_WITH_FDS: 5 } as const;
export const STATUS = { OK: 0, ERROR: 1, CONTINUE: 2 } as const;
export const ACQUIRE_FLAG = { SHARED: 1, AUTOCREATE: 2 } as const;

/** Flag bits each procedure accepts; anything else is INVALID_ARG (checked before anything else). */
export const ALLOWED_FLAGS: Readonly<Record<FlaggedProc, number>> = {
  1: 0,
  2: 0,
  3: 0,
  4: 0,
  5: 0,
  6: ACQUIRE_FLAG.SHARED | ACQUIRE_FLAG.AUTOCREATE,
  7: 0,
};

/** The C function name virtlockd puts into `unsupported flags` errors (str1 and the message). */
export const DISPATCH_FN: Readonly<Record<FlaggedProc, string>> = {
  1: 'virLockSpaceProtocolDispatchRegister',
  2: 'virLockSpaceProtocolDispatchRestrict',
  3: 'virLockSpaceProtocolDispatchNew',
  4: 'virLockSpaceProtocolDispatchCreateResource',
  5: 'virLockSpaceProtocolDispatchDeleteResource',
  6: 'virLockSpaceProtocolDispatchAcquireResource',
  7: 'virLockSpaceProtocolDispatchReleaseResource',
};

export const LENGTH_WORD_BYTES = 4;
export const HEADER_BYTES = 24;
export const MIN_FRAME_BYTES = LENGTH_WORD_BYTES + HEADER_BYTES; // 28
/** Largest body (frame minus length word) virtlockd 9.0.0 accepts; the upstream .x text says 16 MiB. */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;
export const MAX_FRAME_BYTES = LENGTH_WORD_BYTES + MAX_BODY_BYTES;
export const LOCK_STRING_MAX = 65536;
export const ERROR_STRING_MAX = 4194304;
export const UUID_BYTES = 16;

/** virErrorNumber values virtlockd sends. */
export const ERR = {
  INTERNAL_ERROR: 1,
  INVALID_ARG: 8,
  OPERATION_DENIED: 29,
  SYSTEM_ERROR: 38,
  RPC: 39,
  OPERATION_INVALID: 55,
  RESOURCE_BUSY: 87,
} as const;
/** virErrorDomain values: RPC for dispatch-level errors, LOCKSPACE for resource/lockspace errors. */
export const ERR_DOMAIN = { NONE: 0, RPC: 7, LOCKING: 42, LOCKSPACE: 51 } as const;
export const ERR_LEVEL = { NONE: 0, WARNING: 1, ERROR: 2 } as const;

// ── types ────────────────────────────────────────────────────────────────────────────────────

export interface Header {
  readonly prog: number; // unsigned
  readonly vers: number; // unsigned
  readonly proc: number; // signed
  readonly type: number; // signed (enum)
  readonly serial: number; // unsigned
  readonly status: number; // signed (enum)
}

export interface LockOwner {
  /** The domain UUID, 16 raw bytes. */
  readonly uuid: Buffer;
  readonly name: string;
  /** libvirt runtime domain id; 0 means "not registered". */
  readonly id: number;
  /** The QEMU pid: the only ownership key. */
  readonly pid: number;
}

interface ResourceCall<P extends ProcNumber> {
  readonly proc: P;
  readonly path: string;
  readonly name: string;
  readonly flags: number;
}

export type LockCall =
  | { readonly proc: typeof PROC.REGISTER; readonly owner: LockOwner; readonly flags: number }
  | { readonly proc: typeof PROC.RESTRICT; readonly flags: number }
  | { readonly proc: typeof PROC.NEW; readonly path: string; readonly flags: number }
  | ResourceCall<typeof PROC.CREATE_RESOURCE>
  | ResourceCall<typeof PROC.DELETE_RESOURCE>
  | ResourceCall<typeof PROC.ACQUIRE_RESOURCE>
  | ResourceCall<typeof PROC.RELEASE_RESOURCE>
  | { readonly proc: typeof PROC.CREATE_LOCKSPACE; readonly path: string };

/** The error struct of an ERROR reply, as virtlockd fills it (dom and net are always absent). */
export interface RpcErrorSpec {
  readonly code: number;
  readonly domain: number;
  readonly message: string;
  /** Defaults to ERR_LEVEL.ERROR. */
  readonly level?: number;
  readonly str1: string | null;
  readonly str2: string | null;
  readonly str3?: string | null;
  readonly int1: number;
  readonly int2: number;
}

/** An error struct as decoded from a reply, every field as sent. */
export interface RpcError {
  readonly code: number;
  readonly domain: number;
  readonly message: string | null;
  readonly level: number;
  readonly dom: { readonly name: string; readonly uuid: Buffer; readonly id: number } | null;
  readonly str1: string | null;
  readonly str2: string | null;
  readonly str3: string | null;
  readonly int1: number;
  readonly int2: number;
  readonly net: { readonly name: string; readonly uuid: Buffer } | null;
}

// ── framing ──────────────────────────────────────────────────────────────────────────────────

/** One complete frame (length word included), or the framing failure after which virtlockd closes. */
export type Frame =
  | { readonly kind: 'frame'; readonly bytes: Buffer }
  | {
      readonly kind: 'fatal';
      readonly reason: 'too_short' | 'too_long';
      /** The offending length word. */
      readonly length: number;
      readonly message: string;
    };

/**
 * Splits a byte stream into frames, whatever the chunking. After a fatal result it yields nothing
 * more: the stream is out of sync and the only correct answer is to close the connection.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private want: number | null = null;
  private dead = false;

  get failed(): boolean {
    return this.dead;
  }

  /** Bytes received but not yet returned as part of a frame. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Frame[] {
    if (this.dead) return [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Frame[] = [];
    for (;;) {
      if (this.want === null) {
        if (this.buffered < LENGTH_WORD_BYTES) break;
        const length = this.peekLength();
        if (length < MIN_FRAME_BYTES) {
          out.push(this.fail('too_short', length, `frame length word ${length} is below the ${MIN_FRAME_BYTES}-byte minimum (length word + header)`));
          break;
        }
        if (length > MAX_FRAME_BYTES) {
          out.push(
            this.fail('too_long', length, `packet ${length - LENGTH_WORD_BYTES} bytes received too large, want at most ${MAX_BODY_BYTES}`),
          );
          break;
        }
        this.want = length;
      }
      if (this.buffered < this.want) break;
      out.push({ kind: 'frame', bytes: this.take(this.want) });
      this.want = null;
    }
    return out;
  }

  /** Every byte received but not yet returned as a frame, taken out (the reader starts afresh). */
  takePending(): Buffer {
    const all = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    this.want = null;
    return all;
  }

  private fail(reason: 'too_short' | 'too_long', length: number, message: string): Frame {
    this.dead = true;
    this.chunks = [];
    this.buffered = 0;
    return { kind: 'fatal', reason, length, message };
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.alloc(4);
    let filled = 0;
    for (const c of this.chunks) {
      filled += c.copy(head, filled, 0, Math.min(c.length, 4 - filled));
      if (filled === 4) break;
    }
    return head.readUInt32BE(0);
  }

  // Concatenates only once a whole frame is buffered, so a frame arriving in many small chunks
  // costs one copy rather than one per chunk.
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let frame: Buffer;
    if (first.length >= n) {
      frame = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks, this.buffered);
      frame = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return frame;
  }
}

// ── header ───────────────────────────────────────────────────────────────────────────────────

/** Decodes the 24-byte header after the length word. Throws XdrDecodeError on a frame under 28 bytes. */
export function decodeHeader(frame: Buffer): Header {
  if (frame.length < MIN_FRAME_BYTES) {
    throw new XdrDecodeError('truncated', 0, `frame of ${frame.length} bytes is shorter than the ${MIN_FRAME_BYTES}-byte header`);
  }
  // Read in place: one object per frame (this runs for every call).
  return {
    prog: frame.readUInt32BE(4),
    vers: frame.readUInt32BE(8),
    proc: frame.readInt32BE(12),
    type: frame.readInt32BE(16),
    serial: frame.readUInt32BE(20),
    status: frame.readInt32BE(24),
  };
}

/** The length word and header of a frame of `total` bytes, written into the start of `b`. */
function writeHeader(b: Buffer, total: number, prog: number, vers: number, proc: number, type: number, serial: number, status: number): void {
  b.writeUInt32BE(total, 0);
  b.writeUInt32BE(prog >>> 0, 4);
  b.writeUInt32BE(vers >>> 0, 8);
  b.writeInt32BE(proc | 0, 12);
  b.writeInt32BE(type | 0, 16);
  b.writeUInt32BE(serial >>> 0, 20);
  b.writeInt32BE(status | 0, 24);
}

/** A whole frame: length word (counting itself), header, payload. */
export function encodeFrame(header: Header, payload?: Buffer): Buffer {
  const total = MIN_FRAME_BYTES + (payload?.length ?? 0);
  if (total > MAX_FRAME_BYTES) throw new RangeError(`frame of ${total} bytes exceeds the ${MAX_FRAME_BYTES}-byte maximum`);
  const b = Buffer.allocUnsafe(total);
  writeHeader(b, total, header.prog, header.vers, header.proc, header.type, header.serial, header.status);
  if (payload) payload.copy(b, MIN_FRAME_BYTES);
  return b;
}

// ── decoding calls ───────────────────────────────────────────────────────────────────────────

/** What the server must do with one frame, following virtlockd's order of checks. */
export type DecodedCall =
  | { readonly kind: 'call'; readonly header: Header; readonly call: LockCall }
  /** Send encodeErrorReply(header, error). `cause` says why a payload did not decode (for logs). */
  | { readonly kind: 'error'; readonly header: Header; readonly error: RpcErrorSpec; readonly cause?: XdrDecodeError }
  /** No reply; the connection stays usable. */
  | { readonly kind: 'drop'; readonly header: Header; readonly drop: true }
  /** Send these bytes as they are (keepalive PONG). */
  | { readonly kind: 'reply'; readonly header: Header; readonly reply: Buffer }
  /** Close the connection without a reply. */
  | { readonly kind: 'close'; readonly header: Header; readonly close: string };

function isProc(n: number): n is ProcNumber {
  return Number.isInteger(n) && n >= PROC.REGISTER && n <= PROC.CREATE_LOCKSPACE;
}

/**
 * Decodes one complete frame (from FrameReader) sent by a client. Order of checks as in libvirt:
 * fd count (CALL_WITH_FDS) → keepalive → program/version → message type → status → procedure → args.
 * Bytes after the args are ignored, as virtlockd ignores them.
 */
export function decodeCall(frame: Buffer): DecodedCall {
  const header = decodeHeader(frame);
  let payloadAt = MIN_FRAME_BYTES;

  if (header.type === MSG_TYPE.CALL_WITH_FDS) {
    // virtlockd reads the fd count at receive time and then waits for that many SCM_RIGHTS fds;
    // the lock protocol never passes fds, so anything but a count of 0 ends the connection here.
    if (frame.length < payloadAt + 4) return { kind: 'close', header, close: 'CALL_WITH_FDS frame lacks its fd count' };
    const nfds = frame.readUInt32BE(payloadAt);
    if (nfds !== 0) {
      return { kind: 'close', header, close: `CALL_WITH_FDS announces ${nfds} file descriptors; the lock protocol passes none` };
    }
    payloadAt += 4;
  }

  if (header.prog === KEEPALIVE_PROGRAM && header.vers === KEEPALIVE_PROTOCOL_VERSION && header.type === MSG_TYPE.MESSAGE) {
    if (header.proc === KEEPALIVE_PROC.PING) return { kind: 'reply', header, reply: encodeKeepalive(KEEPALIVE_PROC.PONG) };
    return { kind: 'drop', header, drop: true };
  }

  const isCall = header.type === MSG_TYPE.CALL || header.type === MSG_TYPE.CALL_WITH_FDS;
  if (header.prog !== LOCK_PROGRAM || header.vers !== LOCK_PROTOCOL_VERSION) {
    return isCall ? { kind: 'error', header, error: noProgram(header.prog, header.vers) } : { kind: 'drop', header, drop: true };
  }
  // REPLY, MESSAGE, STREAM and unknown types get no answer from virtlockd (a "dummy reply" that writes nothing).
  if (!isCall) return { kind: 'drop', header, drop: true };
  if (header.status !== STATUS.OK) return { kind: 'error', header, error: unexpectedStatus(header.status) };
  if (!isProc(header.proc)) return { kind: 'error', header, error: unknownProc(header.proc) };

  try {
    return { kind: 'call', header, call: decodeArgs(header.proc, new XdrReader(frame, payloadAt)) };
  } catch (e) {
    if (e instanceof XdrDecodeError) return { kind: 'error', header, error: decodeFailed(), cause: e };
    throw e;
  }
}

function decodeArgs(proc: ProcNumber, r: XdrReader): LockCall {
  const str = (): string => r.strictString(LOCK_STRING_MAX);
  switch (proc) {
    case PROC.REGISTER: {
      const owner: LockOwner = { uuid: r.fixedOpaque(UUID_BYTES), name: str(), id: r.u32(), pid: r.u32() };
      return { proc, owner, flags: r.u32() };
    }
    case PROC.RESTRICT:
      return { proc, flags: r.u32() };
    case PROC.NEW:
      return { proc, path: str(), flags: r.u32() };
    case PROC.CREATE_RESOURCE:
    case PROC.DELETE_RESOURCE:
    case PROC.ACQUIRE_RESOURCE:
    case PROC.RELEASE_RESOURCE: {
      const path = str();
      const name = str();
      return { proc, path, name, flags: r.u32() } as LockCall;
    }
    case PROC.CREATE_LOCKSPACE:
      return { proc, path: str() };
    default: {
      const _exhaustive: never = proc;
      throw new Error(`unreachable procedure ${String(_exhaustive)}`);
    }
  }
}

// ── encoding calls (client side, tests) ──────────────────────────────────────────────────────

export interface OwnerInput {
  /** 16 raw bytes, or 32 hex digits with or without dashes. */
  readonly uuid: Buffer | string;
  readonly name: string;
  readonly id: number;
  readonly pid: number;
}

export type CallArgs<P extends ProcNumber> = P extends typeof PROC.REGISTER
  ? { readonly owner: OwnerInput; readonly flags?: number }
  : P extends typeof PROC.RESTRICT
    ? { readonly flags?: number }
    : P extends typeof PROC.NEW
      ? { readonly path: string; readonly flags?: number }
      : P extends typeof PROC.CREATE_LOCKSPACE
        ? { readonly path: string }
        : { readonly path: string; readonly name: string; readonly flags?: number };

interface AnyArgs {
  readonly owner?: OwnerInput;
  readonly path?: string;
  readonly name?: string;
  readonly flags?: number;
}

export function uuidBytes(uuid: Buffer | string): Buffer {
  if (Buffer.isBuffer(uuid)) {
    if (uuid.length !== UUID_BYTES) throw new RangeError(`owner uuid must be ${UUID_BYTES} bytes, got ${uuid.length}`);
    return uuid;
  }
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`owner uuid must be 32 hex digits, got "${uuid}"`);
  return Buffer.from(hex, 'hex');
}

/** Canonical lowercase dashed form of a 16-byte uuid. */
export function uuidString(uuid: Buffer): string {
  const h = uuid.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function required<T>(v: T | undefined, proc: ProcNumber, field: string): T {
  if (v === undefined) throw new TypeError(`${PROC_NAME[proc]} call needs ${field}`);
  return v;
}

/** A CALL frame for a lock procedure, as the lockd plugin writes it. */
export function encodeCall<P extends ProcNumber>(proc: P, serial: number, args: CallArgs<P>): Buffer {
  const a = args as AnyArgs;
  const w = new XdrWriter();
  const p: ProcNumber = proc;
  switch (p) {
    case PROC.REGISTER: {
      const o = required(a.owner, p, 'owner');
      w.fixedOpaque(uuidBytes(o.uuid), UUID_BYTES).string(o.name, LOCK_STRING_MAX).u32(o.id).u32(o.pid).u32(a.flags ?? 0);
      break;
    }
    case PROC.RESTRICT:
      w.u32(a.flags ?? 0);
      break;
    case PROC.NEW:
      w.string(required(a.path, p, 'path'), LOCK_STRING_MAX).u32(a.flags ?? 0);
      break;
    case PROC.CREATE_RESOURCE:
    case PROC.DELETE_RESOURCE:
    case PROC.ACQUIRE_RESOURCE:
    case PROC.RELEASE_RESOURCE:
      w.string(required(a.path, p, 'path'), LOCK_STRING_MAX)
        .string(required(a.name, p, 'name'), LOCK_STRING_MAX)
        .u32(a.flags ?? 0);
      break;
    case PROC.CREATE_LOCKSPACE:
      w.string(required(a.path, p, 'path'), LOCK_STRING_MAX);
      break;
    default: {
      const _exhaustive: never = p;
      throw new RangeError(`unknown lock procedure ${String(_exhaustive)}`);
    }
  }
  const header: Header = { prog: LOCK_PROGRAM, vers: LOCK_PROTOCOL_VERSION, proc, type: MSG_TYPE.CALL, serial, status: STATUS.OK };
  return encodeFrame(header, w.toBuffer());
}

/** A keepalive MESSAGE (PING or PONG), serial 0, no body: what virtlockd sends and accepts. */
export function encodeKeepalive(proc: (typeof KEEPALIVE_PROC)[keyof typeof KEEPALIVE_PROC]): Buffer {
  return encodeFrame({
    prog: KEEPALIVE_PROGRAM,
    vers: KEEPALIVE_PROTOCOL_VERSION,
    proc,
    type: MSG_TYPE.MESSAGE,
    serial: 0,
    status: STATUS.OK,
  });
}

// ── encoding replies ─────────────────────────────────────────────────────────────────────────

// Replies are encoded straight into one buffer of their final size (one allocation, one write).

/** The 28-byte OK reply: prog, vers, proc and serial echoed, type REPLY, status OK, no payload. */
export function encodeOkReply(call: Header): Buffer {
  const b = Buffer.allocUnsafe(MIN_FRAME_BYTES);
  writeHeader(b, MIN_FRAME_BYTES, call.prog, call.vers, call.proc, MSG_TYPE.REPLY, call.serial, STATUS.OK);
  return b;
}

/** XDR size of an optional error string (`*string<ERROR_STRING_MAX>`): presence word, length word, bytes, padding. */
function optionalStringSize(s: string | null | undefined): number {
  if (s === null || s === undefined) return 4;
  const n = Buffer.byteLength(s, 'utf8');
  if (n > ERROR_STRING_MAX) throw new RangeError(`XDR string of ${n} bytes exceeds its maximum of ${ERROR_STRING_MAX}`);
  return 8 + n + ((4 - (n % 4)) % 4);
}

function writeOptionalString(b: Buffer, at: number, s: string | null | undefined): number {
  if (s === null || s === undefined) {
    b.writeUInt32BE(0, at);
    return at + 4;
  }
  b.writeUInt32BE(1, at);
  const n = b.write(s, at + 8, 'utf8');
  b.writeUInt32BE(n, at + 4);
  let end = at + 8 + n;
  while (end % 4 !== 0) b[end++] = 0;
  return end;
}

function int32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`XDR int (${what}) must be an integer in -2147483648..2147483647, got ${v}`);
  return v;
}

/** An ERROR reply carrying the error struct in field order, dom and net absent. */
export function encodeErrorReply(call: Header, err: RpcErrorSpec): Buffer {
  // code, domain, message, level, dom (absent), str1, str2, str3, int1, int2, net (absent)
  const str3 = err.str3 ?? null;
  const total =
    MIN_FRAME_BYTES + 4 + 4 + optionalStringSize(err.message) + 4 + 4 + optionalStringSize(err.str1) + optionalStringSize(err.str2) + optionalStringSize(str3) + 4 + 4 + 4;
  if (total > MAX_FRAME_BYTES) throw new RangeError(`frame of ${total} bytes exceeds the ${MAX_FRAME_BYTES}-byte maximum`);
  const b = Buffer.allocUnsafe(total);
  writeHeader(b, total, call.prog, call.vers, call.proc, MSG_TYPE.REPLY, call.serial, STATUS.ERROR);
  let at = MIN_FRAME_BYTES;
  at = b.writeInt32BE(int32(err.code, 'code'), at);
  at = b.writeInt32BE(int32(err.domain, 'domain'), at);
  at = writeOptionalString(b, at, err.message);
  at = b.writeInt32BE(int32(err.level ?? ERR_LEVEL.ERROR, 'level'), at);
  at = b.writeUInt32BE(0, at); // dom: absent
  at = writeOptionalString(b, at, err.str1);
  at = writeOptionalString(b, at, err.str2);
  at = writeOptionalString(b, at, str3);
  at = b.writeInt32BE(int32(err.int1, 'int1'), at);
  at = b.writeInt32BE(int32(err.int2, 'int2'), at);
  b.writeUInt32BE(0, at); // net: absent
  return b;
}

// ── decoding replies (client side) ───────────────────────────────────────────────────────────

export type DecodedReply =
  | { readonly kind: 'ok'; readonly header: Header; readonly payload: Buffer }
  | { readonly kind: 'error'; readonly header: Header; readonly error: RpcError };

/** Decodes a REPLY frame. Throws XdrDecodeError when an ERROR reply's struct is malformed. */
export function decodeReply(frame: Buffer): DecodedReply {
  const header = decodeHeader(frame);
  if (header.status !== STATUS.ERROR) return { kind: 'ok', header, payload: frame.subarray(MIN_FRAME_BYTES) };
  const r = new XdrReader(frame, MIN_FRAME_BYTES);
  const str = (x: XdrReader): string => x.string(ERROR_STRING_MAX);
  const error: RpcError = {
    code: r.i32(),
    domain: r.i32(),
    message: r.optional(str),
    level: r.i32(),
    dom: r.optional((x) => ({ name: str(x), uuid: x.fixedOpaque(UUID_BYTES), id: x.i32() })),
    str1: r.optional(str),
    str2: r.optional(str),
    str3: r.optional(str),
    int1: r.i32(),
    int2: r.i32(),
    net: r.optional((x) => ({ name: str(x), uuid: x.fixedOpaque(UUID_BYTES) })),
  };
  return { kind: 'error', header, error };
}

// ── virtlockd's error texts ──────────────────────────────────────────────────────────────────
// libvirt's virReportError puts the code's format ("resource busy: %s") into str1, the detail into
// str2, the joined text into message, and -1 into int1/int2. System errors use "%s" and append
// ": <strerror>" with int1 = errno. Flag errors are built differently (see unsupportedFlags).

function reported(code: number, domain: number, prefix: string, detail: string): RpcErrorSpec {
  return { code, domain, message: prefix + detail, str1: `${prefix}%s`, str2: detail, int1: -1, int2: -1 };
}

// Node reports errno negated (libuv style, e.g. -2); virtlockd sends the positive C errno in int1.
function systemError(domain: number, text: string, errno: number, strerr: string): RpcErrorSpec {
  const detail = `${text}: ${strerr}`;
  return { code: ERR.SYSTEM_ERROR, domain, message: detail, str1: '%s', str2: detail, int1: Math.abs(errno), int2: -1 };
}

const busy = (detail: string): RpcErrorSpec => reported(ERR.RESOURCE_BUSY, ERR_DOMAIN.LOCKSPACE, 'resource busy: ', detail);
const denied = (detail: string): RpcErrorSpec => reported(ERR.OPERATION_DENIED, ERR_DOMAIN.RPC, 'operation forbidden: ', detail);
const invalid = (detail: string): RpcErrorSpec =>
  reported(ERR.OPERATION_INVALID, ERR_DOMAIN.RPC, 'Requested operation is not valid: ', detail);
const internal = (domain: number, detail: string): RpcErrorSpec => reported(ERR.INTERNAL_ERROR, domain, 'internal error: ', detail);
const rpc = (detail: string): RpcErrorSpec => reported(ERR.RPC, ERR_DOMAIN.RPC, '', detail);

/** ACQUIRE of a held resource, or CREATE/DELETE of one: 87/51. */
export const resourceBusy = (name: string): RpcErrorSpec => busy(`Lockspace resource '${name}' is locked`);
/** RELEASE of a resource that is not in the table: 87/51 ("busy", as virtlockd says). */
export const notLocked = (name: string): RpcErrorSpec => busy(`Lockspace resource '${name}' is not locked`);
export const restricted = (): RpcErrorSpec => denied('lock manager connection has been restricted');
export const notRegistered = (): RpcErrorSpec => invalid('lock owner details have not been registered');
export const defaultLockspaceExists = (): RpcErrorSpec => invalid('the default lockspace already exists');
export const lockspaceMissing = (path: string): RpcErrorSpec => internal(ERR_DOMAIN.RPC, `Lockspace for path ${path} does not exist`);
/** NEW on a known path: 1/7. */
export const lockspaceExists = (path: string): RpcErrorSpec => internal(ERR_DOMAIN.RPC, `Lockspace for path ${path} already exists`);
export const ownerNotHolding = (pid: number): RpcErrorSpec =>
  internal(ERR_DOMAIN.LOCKSPACE, `owner ${pid} does not hold the resource lock`);
export const notADirectory = (path: string): RpcErrorSpec =>
  internal(ERR_DOMAIN.LOCKSPACE, `Lockspace location ${path} exists, but is not a directory`);

/**
 * INVALID_ARG 8/7 from libvirt's flag check. `unsupportedBits` is `flags & ~allowed` (that is what the
 * message prints, in lowercase hex); str1 is the dispatch function, str2 the literal "flags", int1/int2 0.
 */
export function unsupportedFlags(unsupportedBits: number, fnName: string): RpcErrorSpec {
  return {
    code: ERR.INVALID_ARG,
    domain: ERR_DOMAIN.RPC,
    message: `unsupported flags (0x${(unsupportedBits >>> 0).toString(16)}) in function ${fnName}`,
    str1: fnName,
    str2: 'flags',
    int1: 0,
    int2: 0,
  };
}

/** virtlockd's first check for procedures 1–7: the error for bits outside ALLOWED_FLAGS, or null. */
export function checkFlags(proc: FlaggedProc, flags: number): RpcErrorSpec | null {
  const bits = (flags & ~ALLOWED_FLAGS[proc]) >>> 0;
  return bits === 0 ? null : unsupportedFlags(bits, DISPATCH_FN[proc]);
}

/** open() of a resource file failed: 38/51. With AUTOCREATE libvirt says "open/create". */
export function openFailed(path: string, errno: number, strerr = strerror(errno), opts: { autocreate?: boolean } = {}): RpcErrorSpec {
  return systemError(ERR_DOMAIN.LOCKSPACE, `Unable to ${opts.autocreate ? 'open/create' : 'open'} resource ${path}`, errno, strerr);
}
/** F_SETLK failed with something other than EACCES/EAGAIN: 38/51. */
export const lockFailed = (path: string, errno: number, strerr = strerror(errno)): RpcErrorSpec =>
  systemError(ERR_DOMAIN.LOCKSPACE, `Unable to acquire lock on '${path}'`, errno, strerr);
/** CREATE_LOCKSPACE / NEW could not mkdir -p the directory: 38/51. */
export const createLockspaceFailed = (path: string, errno: number, strerr = strerror(errno)): RpcErrorSpec =>
  systemError(ERR_DOMAIN.LOCKSPACE, `Unable to create lockspace ${path}`, errno, strerr);
/** DELETE_RESOURCE could not unlink (ENOENT is not an error): 38/51. */
export const deleteFailed = (path: string, errno: number, strerr = strerror(errno)): RpcErrorSpec =>
  systemError(ERR_DOMAIN.LOCKSPACE, `Unable to delete lockspace resource ${path}`, errno, strerr);

export const decodeFailed = (): RpcErrorSpec => rpc('Unable to decode message payload');
/** `%d` in libvirt: the procedure is a signed int. */
export const unknownProc = (proc: number): RpcErrorSpec => rpc(`unknown procedure: ${proc | 0}`);
/** `%d` in libvirt although prog and vers are unsigned, so 0xFFFFFFFF prints as -1. */
export const noProgram = (prog: number, vers: number): RpcErrorSpec => rpc(`Cannot find program ${prog | 0} version ${vers | 0}`);
/** `%u` in libvirt: a status of -1 prints as 4294967295. */
export const unexpectedStatus = (status: number): RpcErrorSpec => rpc(`Unexpected message status ${status >>> 0}`);

// glibc's strerror texts (libuv's own messages differ in case and wording, and virtlockd sends glibc's).
const GLIBC_STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EINTR: 'Interrupted system call',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EXDEV: 'Invalid cross-device link',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  ENFILE: 'Too many open files in system',
  EMFILE: 'Too many open files',
  ETXTBSY: 'Text file busy',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  EMLINK: 'Too many links',
  EDEADLK: 'Resource deadlock avoided',
  ENAMETOOLONG: 'File name too long',
  ENOLCK: 'No locks available',
  ENOSYS: 'Function not implemented',
  ELOOP: 'Too many levels of symbolic links',
  EOVERFLOW: 'Value too large for defined data type',
  EOPNOTSUPP: 'Operation not supported',
  ENOTSUP: 'Operation not supported',
  ENOTCONN: 'Transport endpoint is not connected',
  ESTALE: 'Stale file handle',
  EDQUOT: 'Disk quota exceeded',
};

const STRERROR_BY_ERRNO = new Map<number, string>();
for (const [name, text] of Object.entries(GLIBC_STRERROR)) {
  const n = (osConstants.errno as Record<string, number | undefined>)[name];
  if (n !== undefined && !STRERROR_BY_ERRNO.has(n)) STRERROR_BY_ERRNO.set(n, text);
}

/** glibc's strerror(errno) for the errnos a lock server meets; glibc's fallback text otherwise. */
export function strerror(errno: number): string {
  const n = Math.abs(errno);
  return STRERROR_BY_ERRNO.get(n) ?? `Unknown error ${n}`;
}
