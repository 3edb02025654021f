// JSON-lines events: `vmlockd ingest` and the control API's /v1/events.
// Each bad line gets an error naming the field and what was received; it changes no lock.
import { BadInputError } from '../engine/errors.js';
import { checkUuid, show } from './uuid.js';
import { VM_EVENT_TYPES, type DiskSpec, type Owner, type VmEvent, type VmEventType } from '../engine/types.js';

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export { checkUuid };

export function checkOwner(v: unknown, field = 'vm'): Owner {
  if (!isObject(v)) throw new BadInputError(`${field} must be an object with a uuid, got ${show(v)}`);
  const uuid = checkUuid(v.uuid, `${field}.uuid`);
  if (v.name !== undefined && (typeof v.name !== 'string' || v.name.length > 256)) {
    throw new BadInputError(`${field}.name must be a string of at most 256 characters, got ${show(v.name)}`);
  }
  return v.name !== undefined ? { uuid, name: v.name as string } : { uuid };
}

export function checkTime(v: unknown, field: string): string {
  if (typeof v !== 'string' || !ISO_RE.test(v) || Number.isNaN(Date.parse(v))) {
    throw new BadInputError(`${field} must be an ISO-8601 time such as 2026-11-25T10:00:00Z, got ${show(v)}`);
  }
  return new Date(v).toISOString();
}

function checkBool(v: unknown, field: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new BadInputError(`${field} must be true or false, got ${show(v)}`);
  return v;
}

export function checkDisks(v: unknown, field = 'disks'): DiskSpec[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new BadInputError(`${field} must be an array, got ${show(v)}`);
  return v.map((d, i) => {
    const f = `${field}[${i}]`;
    if (!isObject(d)) throw new BadInputError(`${f} must be an object with a path, got ${show(d)}`);
    if (typeof d.path !== 'string' || !d.path.startsWith('/') || d.path.includes('\0')) {
      throw new BadInputError(`${f}.path must be an absolute path, got ${show(d.path)}`);
    }
    // create: the caller says the disk will be created; otherwise it must exist (a typo protects nothing).
    return { path: d.path, readonly: checkBool(d.readonly, `${f}.readonly`), shareable: checkBool(d.shareable, `${f}.shareable`), create: checkBool(d.create, `${f}.create`) };
  });
}

const NEEDS_DISKS: ReadonlySet<VmEventType> = new Set(['started', 'resumed', 'migrated_in', 'disk_attached', 'disk_detached']);

/** Validate a decoded JSON value as an event. `now` is used when the event has no `at`. */
export function toVmEvent(v: unknown, source: string, now: string): VmEvent {
  if (!isObject(v)) throw new BadInputError(`an event must be a JSON object, got ${show(v)}`);
  if (typeof v.type !== 'string' || !(VM_EVENT_TYPES as readonly string[]).includes(v.type)) {
    throw new BadInputError(`type must be one of ${VM_EVENT_TYPES.join(', ')}, got ${show(v.type)}`);
  }
  const type = v.type as VmEventType;
  const vm = checkOwner(v.vm);
  const disks = checkDisks(v.disks);
  if (NEEDS_DISKS.has(type) && v.disks === undefined) throw new BadInputError(`disks is required for a ${type} event`);
  // The daemon's time orders and filters the journal; the client's own `at` is kept beside it.
  const clientAt = v.at === undefined ? undefined : checkTime(v.at, 'at');
  return { type, vm, disks, at: now, ...(clientAt !== undefined ? { clientAt } : {}), source };
}

/** The longest line any JSON-lines source accepts (bytes, without its newline). */
export const MAX_LINE_BYTES = 1 << 20;
/** The deepest nesting of arrays and objects accepted in one JSON value (an event needs 3). */
export const MAX_JSON_DEPTH = 64;

/**
 * A decoded JSON value nested deeper than `max` is bad input: deeper values serve no event or request,
 * and walking them recursively (JSON.stringify in an error message) would overflow the stack.
 */
export function checkDepth(v: unknown, max = MAX_JSON_DEPTH, what = 'JSON'): void {
  // Iterative: the check itself must not recurse.
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    if (d > max) throw new BadInputError(`${what} is nested deeper than ${max} levels`);
    for (const child of Array.isArray(x) ? x : Object.values(x)) if (typeof child === 'object' && child !== null) stack.push([child, d + 1]);
  }
}

export type BoundedLine = { readonly line: string } | { readonly tooLong: number };

/**
 * Split a byte stream into lines of at most `max` bytes, holding no more than that in memory: an
 * over-long line is skipped up to its newline and reported once as `{ tooLong: bytes }` (so a file
 * without newlines, a disk image given by mistake, costs one buffer, not its size). A last line
 * without a newline counts as a line (`end()`).
 *
 * Synchronous, one call per chunk: the control API's /v1/events takes every line of a chunk in one
 * go (no promise per line). A line that lies whole inside one chunk is decoded straight from it; only
 * a line split across chunks is copied (the stream may reuse its buffer).
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;
  private skipped = 0;

  constructor(private readonly max = MAX_LINE_BYTES) {}

  /** The lines this chunk completes, in order. */
  push(raw: Buffer | string): BoundedLine[] {
    const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    const out: BoundedLine[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      const len = end - start;
      if (!this.skipping && this.size === 0 && nl >= 0 && len <= this.max) {
        // The common case: the whole line is in this chunk.
        out.push({ line: stripCr(chunk.toString('utf8', start, end)) });
        start = nl + 1;
        continue;
      }
      if (this.skipping) this.skipped += len;
      else if (this.size + len > this.max) {
        this.skipping = true;
        this.skipped = this.size + len;
        this.parts = [];
        this.size = 0;
      } else if (len > 0) {
        this.parts.push(Buffer.from(chunk.subarray(start, end)));
        this.size += len;
      }
      if (nl < 0) break;
      out.push(this.take());
      start = nl + 1;
    }
    return out;
  }

  /** The last line, if the stream did not end with a newline. */
  end(): BoundedLine | undefined {
    if (!this.skipping && this.size === 0) return undefined;
    return this.take();
  }

  private take(): BoundedLine {
    const item: BoundedLine = this.skipping ? { tooLong: this.skipped } : { line: stripCr(Buffer.concat(this.parts, this.size).toString('utf8')) };
    this.parts = [];
    this.size = 0;
    this.skipping = false;
    this.skipped = 0;
    return item;
  }
}

/** `LineSplitter` over an async stream, one line at a time (`vmlockd ingest`'s reader). */
export async function* boundedLines(input: AsyncIterable<Buffer | string>, max = MAX_LINE_BYTES): AsyncGenerator<BoundedLine> {
  const splitter = new LineSplitter(max);
  for await (const raw of input) yield* splitter.push(raw);
  const last = splitter.end();
  if (last !== undefined) yield last;
}

function stripCr(s: string): string {
  return s.endsWith('\r') ? s.slice(0, -1) : s;
}

/** Parse one line of JSON-lines input. Blank lines yield null. */
export function parseEventLine(line: string, source: string, now: string): VmEvent | null {
  const text = line.trim();
  if (text === '') return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new BadInputError(`not valid JSON: ${(e as Error).message}`);
  }
  checkDepth(v, MAX_JSON_DEPTH, 'the event');
  return toVmEvent(v, source, now);
}
