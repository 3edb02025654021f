// The published segments' fast path (decision 0014, issue 15's catch-up speed): the fact lines the one
// encoder writes are split, located and their chain hash checked in native code (native/segscan.c)
// instead of JSON.parse and chainHash per line. It takes only a strict subset (the encoder's exact
// layout, ASCII values, the expected seq, a hash that matches) and stops at the first line it does not
// take: SegmentDecoder then reads that line itself, so every problem is found and named as before.
// Without the native function (a stale build) nothing is taken and the decoder reads every line.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChainRow } from './schema.js';

/** A fact line as segment.ts's SegmentFact (not imported from there: segment.ts imports this module). */
export interface ScannedFact extends ChainRow {
  t: 'fact';
  hash: string;
}

/** Numbers per fact in the native out array (SEGSCAN_STRIDE in native/segscan.h). */
const STRIDE = 19;
/** Facts per native call: the out array's size. */
const MAX_FACTS = 512;

type ScanFn = (buf: Buffer, start: number, end: number, expectSeq: number, prev: Buffer, out: Float64Array, pay: Buffer, work: Buffer) => number;

/**
 * The project's N-API binding (native/ofd.c + segscan.c), loaded here rather than through
 * src/engine/native.ts: the journal room imports nothing of the project. src/journal or dist/journal:
 * the binding sits two levels up. Not loadable, or a build without scanFacts: the JS decoder alone.
 */
function loadScan(): ScanFn | undefined {
  try {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const binding = createRequire(import.meta.url)(path.join(here, '..', '..', 'native', 'build', 'Release', 'vmlockd_native.node')) as { scanFacts?: unknown };
    return typeof binding.scanFacts === 'function' ? (binding.scanFacts as ScanFn) : undefined;
  } catch {
    return undefined;
  }
}

const scanFn = loadScan();
let available = typeof scanFn === 'function' && process.env.VMLOCKD_SEGMENT_SCAN !== '0';

// One set of buffers per thread (module state is per isolate); each call's results are read before
// the next call, so decoders share them.
const out = new Float64Array(STRIDE * MAX_FACTS);
/** The payloads of one call, unescaped (a line longer than the room left ends the call there). */
const pay = Buffer.allocUnsafe(1024 * 1024);
/** The chain hash's input (prev + the row's canonical text): a line longer than this is the JS path's. */
const work = Buffer.allocUnsafe(256 * 1024);
const prev = Buffer.alloc(32);

/** What a scan took: the facts, where the next line starts, and the last fact's hash (raw). */
export interface FactScan {
  facts: ScannedFact[];
  /** Offset in the buffer after the last fact line taken. */
  end: number;
  /** The chain hash of the last fact taken (a fresh Buffer). */
  prev: Buffer;
}

/** True when the native fast path can run in this process. */
export function factScanAvailable(): boolean {
  return available;
}

/** Tests: the fast path on or off (off: every line read by the JS decoder, as without the native function). */
export function setFactScan(on: boolean): void {
  available = on && typeof scanFn === 'function';
}

/**
 * The fact lines of `buf` from `start` (a line's first byte) up to `end` that the fast path takes,
 * chained from `prevHash` (the hash before the first) with seqs from `expectSeq`; undefined when it
 * takes none (the line at `start` is the JS decoder's).
 */
export function scanFacts(buf: Buffer, start: number, end: number, expectSeq: number, prevHash: Buffer): FactScan | undefined {
  if (!available) return undefined;
  prevHash.copy(prev, 0, 0, 32);
  const n = scanFn!(buf, start, end, expectSeq, prev, out, pay, work);
  if (n < 0) {
    available = false; // no SHA-256 in this process's native code
    return undefined;
  }
  if (n === 0) return undefined;
  const facts: ScannedFact[] = new Array<ScannedFact>(n);
  for (let i = 0; i < n; i++) {
    const o = i * STRIDE;
    const h = out[o + 18]!;
    facts[i] = {
      t: 'fact',
      seq: out[o]!,
      at: buf.toString('latin1', out[o + 2]!, out[o + 3]!),
      host: buf.toString('latin1', out[o + 4]!, out[o + 5]!),
      kind: buf.toString('latin1', out[o + 6]!, out[o + 7]!),
      resource: out[o + 8]! < 0 ? null : buf.toString('latin1', out[o + 8]!, out[o + 9]!),
      disk: out[o + 10]! < 0 ? null : buf.toString('latin1', out[o + 10]!, out[o + 11]!),
      owner: out[o + 12]! < 0 ? null : buf.toString('latin1', out[o + 12]!, out[o + 13]!),
      owner_name: out[o + 14]! < 0 ? null : buf.toString('latin1', out[o + 14]!, out[o + 15]!),
      payload: pay.toString('latin1', out[o + 16]!, out[o + 17]!),
      hash: buf.toString('latin1', h, h + 64),
    };
  }
  return { facts, end: out[(n - 1) * STRIDE + 1]! + 1, prev: Buffer.from(prev) };
}
