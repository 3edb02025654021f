// XDR (RFC 4506) primitives for the virtlockd wire protocol: big-endian 32-bit words,
// length-prefixed strings padded to 4 bytes, fixed opaques, and `*T` optionals.
import { BadInputError } from '../../engine/errors.js';

/** A read ran past the end of the buffer, or a length field broke its declared maximum. */
export class XdrDecodeError extends BadInputError {
  constructor(
    readonly reason: 'truncated' | 'over_max' | 'bad_utf8' | 'embedded_nul',
    readonly offset: number,
    message: string,
  ) {
    super(message);
    this.name = 'XdrDecodeError';
  }
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;
const ZEROS = Buffer.alloc(4);
// fatal: a path that is not valid UTF-8 would otherwise be replaced by U+FFFD and name another file.
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

export class XdrReader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    offset = 0,
  ) {
    this.pos = offset;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.remaining < n) {
      throw new XdrDecodeError(
        'truncated',
        this.pos,
        `XDR ${what} needs ${n} bytes at offset ${this.pos}, only ${this.remaining} left`,
      );
    }
  }

  u32(): number {
    this.need(4, 'unsigned int');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i32(): number {
    this.need(4, 'int');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** Fixed-length opaque[n]: n bytes plus padding to 4. The result is a copy. */
  fixedOpaque(n: number): Buffer {
    const total = n + pad4(n);
    this.need(total, `opaque[${n}]`);
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + n));
    this.pos += total;
    return out;
  }

  /** string<max> as raw bytes (a copy); the padding must be present (xdrmem refuses a short tail too). */
  stringBytes(max: number): Buffer {
    return Buffer.from(this.stringView(max));
  }

  /** string<max> as a view into the frame (no copy): read it before the frame is reused. */
  private stringView(max: number): Buffer {
    const at = this.pos;
    const len = this.u32();
    if (len > max) {
      this.pos = at;
      throw new XdrDecodeError('over_max', at, `XDR string of ${len} bytes at offset ${at} exceeds its maximum of ${max}`);
    }
    const total = len + pad4(len);
    if (this.remaining < total) {
      const left = this.remaining;
      this.pos = at;
      throw new XdrDecodeError(
        'truncated',
        at,
        `XDR string at offset ${at} declares ${len} bytes (+${pad4(len)} padding), only ${left} left`,
      );
    }
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += total;
    return out;
  }

  /** string<max> decoded as UTF-8; invalid sequences become U+FFFD (for display text only). */
  string(max: number): string {
    return this.stringView(max).toString('utf8');
  }

  /**
   * string<max> that will name a file or a lock: it must be valid UTF-8 without NUL bytes, because
   * C would silently cut the name at a NUL and a lossy decode would name a different file.
   */
  strictString(max: number): string {
    const at = this.pos;
    const bytes = this.stringView(max);
    if (bytes.indexOf(0) !== -1) {
      throw new XdrDecodeError('embedded_nul', at, `XDR string at offset ${at} contains a NUL byte`);
    }
    try {
      return STRICT_UTF8.decode(bytes);
    } catch {
      throw new XdrDecodeError('bad_utf8', at, `XDR string at offset ${at} is not valid UTF-8`);
    }
  }

  /** `*T`: a u32 0 (absent), else present and followed by T; any non-zero counts, as in xdr_bool. */
  optional<T>(read: (r: XdrReader) => T): T | null {
    return this.u32() === 0 ? null : read(this);
  }
}

export class XdrWriter {
  private readonly parts: Buffer[] = [];
  private size = 0;

  private push(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }

  get length(): number {
    return this.size;
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`XDR unsigned int must be an integer in 0..4294967295, got ${v}`);
    }
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v, 0);
    return this.push(b);
  }

  i32(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
      throw new RangeError(`XDR int must be an integer in -2147483648..2147483647, got ${v}`);
    }
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(v, 0);
    return this.push(b);
  }

  fixedOpaque(bytes: Buffer, n: number): this {
    if (bytes.length !== n) throw new RangeError(`XDR opaque[${n}] needs exactly ${n} bytes, got ${bytes.length}`);
    this.push(Buffer.from(bytes));
    const p = pad4(n);
    return p ? this.push(ZEROS.subarray(0, p)) : this;
  }

  string(value: string | Buffer, max: number): this {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
    if (bytes.length > max) throw new RangeError(`XDR string of ${bytes.length} bytes exceeds its maximum of ${max}`);
    this.u32(bytes.length);
    this.push(bytes);
    const p = pad4(bytes.length);
    return p ? this.push(ZEROS.subarray(0, p)) : this;
  }

  optional<T>(value: T | null | undefined, write: (w: XdrWriter, v: T) => void): this {
    if (value === null || value === undefined) return this.u32(0);
    this.u32(1);
    write(this, value);
    return this;
  }

  /** Raw bytes, already XDR-encoded (used to build deliberately malformed frames in tests). */
  raw(bytes: Buffer): this {
    return this.push(Buffer.from(bytes));
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}
