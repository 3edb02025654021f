// The holder record: what a lock file says about who holds it. Pure encode/decode; the locker does the I/O.
//
// Layout of a lock file in a file lockspace (virtlockd ignores the content and locks byte 0 only):
//   [0, 512)                 the exclusive record: written only by an exclusive holder, under its
//                            write lock on byte 0. It carries the fencing generation, which grows by
//                            one with every exclusive grant; a release rewrites it as "free" and
//                            keeps the generation.
//   [512 + i*512, +512)      shared slot i (i < 32): a host holding the disk shared claims a slot by
//                            taking an OFD write lock on the slot's bytes, so shared holders on
//                            several hosts each keep an entry without clobbering the others. A slot
//                            whose bytes are not locked is stale (its host died) and is ignored.
//   [16896, +512)            the hand-over request (HANDOVER_OFFSET): a migration destination waiting
//                            for the source to let go claims it by taking an OFD write lock on its
//                            bytes and names itself (host, VM). The holder's release then writes
//                            "free, reserved for that host and VM" into the exclusive record, and
//                            every other taker refuses while the request is still locked (its
//                            writer alive and waiting) and the reservation has not expired
//                            (docs/decisions/0009). Unlocked, it is stale and ignored.
// Each record is one JSON object padded with spaces to its region size and ended by "\n", so a
// reader can `cat` a lock file. `v` versions the format.
import { createHash } from 'node:crypto';
import type { HolderInfo, Mode, Owner } from './types.js';

export const RECORD_SIZE = 512;
export const SLOT_COUNT = 32;
export const FILE_SPAN = RECORD_SIZE * (1 + SLOT_COUNT);
export const RECORD_VERSION = 1;
/** Where a migration destination's hand-over request lives, after the shared slots. */
export const HANDOVER_OFFSET = FILE_SPAN;
/** The largest lock file vmlockd writes: the records, the slots and the hand-over request. */
export const LEASE_SPAN = FILE_SPAN + RECORD_SIZE;
/**
 * How long a reservation the source's release writes lasts at most (milliseconds). It ends sooner
 * when the destination takes the disk, withdraws its request (its wait ended) or dies (its request
 * lock goes with its process); this bounds a destination that lives on but never comes to take it.
 */
export const RESERVATION_TTL_MS = 60_000;

export function slotOffset(i: number): number {
  return RECORD_SIZE * (1 + i);
}

export interface ExclusiveRecord {
  readonly v: number;
  readonly mode: 'exclusive' | 'free';
  readonly gen: number;
  readonly host: string;
  readonly pid: number;
  readonly since: string;
  readonly disk: string;
  readonly vm?: Owner;
  /** A free record only: the release handed the disk over to a migration destination. */
  readonly reserved?: Reservation;
  /**
   * A free record only: written by a SHARED take (host, pid, since, vm: the shared taker) that found
   * a dead exclusive holder's record ("exclusive" with no write lock behind it) and closed it, so
   * that holder's next start sees another host came between (decision 0020). The generation is kept.
   */
  readonly took?: 'shared';
}

/** "Free, but only for this VM on this host": written by a migration source's release. */
export interface Reservation {
  /** The destination host. */
  readonly host: string;
  readonly vm: Owner;
  /** The source host that released the disk. */
  readonly from: string;
  /** When the source released it, and when the reservation lapses at the latest (ISO times). */
  readonly since: string;
  readonly until: string;
}

/** A migration destination's request: "reserve this disk for VM vm on host host when you let go". */
export interface HandOverRequest {
  readonly v: number;
  readonly mode: 'handover';
  readonly host: string;
  readonly pid: number;
  readonly since: string;
  readonly vm: Owner;
}

export interface SharedRecord {
  readonly v: number;
  readonly mode: 'shared';
  readonly host: string;
  readonly pid: number;
  readonly since: string;
  readonly disk: string;
  readonly vms: ReadonlyArray<Owner & { readonly since: string }>;
}

function clip(s: string | undefined, n: number): string | undefined {
  return s === undefined ? undefined : s.length > n ? s.slice(0, n) : s;
}

function pad(json: string, into?: Buffer): Buffer {
  // One buffer, the JSON written straight into it (no copy of it first): this runs for every take
  // and release, 10,000 times in a restart with 10,000 locks (issue 13).
  const length = Buffer.byteLength(json, 'utf8');
  if (length > RECORD_SIZE - 1) throw new Error(`holder record of ${length} bytes does not fit ${RECORD_SIZE}`);
  const buf = into ?? Buffer.allocUnsafe(RECORD_SIZE);
  buf.write(json, 0, length, 'utf8');
  buf.fill(0x20, length, RECORD_SIZE - 1);
  buf[RECORD_SIZE - 1] = 0x0a;
  return buf;
}

/** Encode, shortening names and the disk path until it fits (a record must never fail to write). */
/**
 * The host field of a record that cannot hold the host id whole (a long id beside a long disk path
 * and VM name): a prefix of at most 40 bytes and 16 hex digits of the id's SHA-256, so the writer
 * knows its own record again (isOwnHost) and no other host's id reads as it. A plain prefix did
 * neither: the re-take after a restart read its own clipped record as another host's (a false
 * LEASE LOST on every restart), and two ids sharing a prefix would read alike (review24a F2).
 * An id of at most 64 bytes is kept whole: the shortest record always has room for it.
 */
export function shortHost(host: string): string {
  if (Buffer.byteLength(host) <= 64) return host;
  let prefix = '';
  for (const ch of host) {
    if (Buffer.byteLength(prefix) + Buffer.byteLength(ch) > 40) break;
    prefix += ch;
  }
  return `${prefix}~${createHash('sha256').update(host).digest('hex').slice(0, 16)}`;
}

/** Whether a record's host field is this host's: the id whole, or as shortHost wrote it. */
export function isOwnHost(recorded: string, host: string): boolean {
  return recorded === host || recorded === shortHost(host);
}

const CLIPS = [1024, 200, 64, 16];

/**
 * `into`: a RECORD_SIZE buffer of the caller's to encode into (the locker's, reused by every take and
 * release: the record is written before the next one is encoded); without it, a new buffer.
 */
export function encodeExclusive(r: ExclusiveRecord, into?: Buffer): Buffer {
  if (into !== undefined && into.length !== RECORD_SIZE) throw new RangeError(`a holder record is encoded into ${RECORD_SIZE} bytes, not ${into.length}`);
  // The host is never clipped to a bare prefix (shortHost): the disk path and VM name give way first.
  const host = Buffer.byteLength(r.host) <= 200 ? r.host : shortHost(r.host);
  for (const n of CLIPS) {
    const reserved = r.reserved && { ...r.reserved, host: clip(r.reserved.host, n), from: clip(r.reserved.from, n), vm: { uuid: r.reserved.vm.uuid, name: clip(r.reserved.vm.name, n) } };
    // A literal in the record's field order, not a spread of `r` (half the cost of the encode).
    const json = JSON.stringify({ v: r.v, mode: r.mode, gen: r.gen, host, pid: r.pid, since: r.since, disk: clip(r.disk, n * 2), vm: r.vm && { uuid: r.vm.uuid, name: clip(r.vm.name, n) }, reserved, took: r.took });
    if (Buffer.byteLength(json) < RECORD_SIZE) return pad(json, into);
  }
  // A reservation must survive the shortening: it is what keeps a third host out.
  const reserved = r.reserved && { host: r.reserved.host.slice(0, 64), from: '', since: r.reserved.since, until: r.reserved.until, vm: { uuid: r.reserved.vm.uuid } };
  return pad(JSON.stringify({ v: r.v, mode: r.mode, gen: r.gen, host: shortHost(r.host), pid: r.pid, since: r.since, disk: '', ...(reserved ? { reserved } : {}), ...(r.took ? { took: r.took } : {}) }), into);
}

export function encodeRequest(r: HandOverRequest): Buffer {
  for (const n of [1024, 200, 64]) {
    const json = JSON.stringify({ ...r, host: clip(r.host, n), vm: { uuid: r.vm.uuid, name: clip(r.vm.name, n) } });
    if (Buffer.byteLength(json) < RECORD_SIZE) return pad(json);
  }
  return pad(JSON.stringify({ v: r.v, mode: r.mode, host: r.host.slice(0, 64), pid: r.pid, since: r.since, vm: { uuid: r.vm.uuid } }));
}

export function encodeShared(r: SharedRecord): Buffer {
  const host = Buffer.byteLength(r.host) <= 200 ? r.host : shortHost(r.host);
  for (const n of [1024, 200, 64, 16]) {
    const vms = r.vms.map((vm) => ({ uuid: vm.uuid, name: clip(vm.name, n), since: vm.since }));
    // Many VMs of one host sharing one disk: list as many as fit; `more` counts the rest.
    for (let k = vms.length; k >= 0; k--) {
      const json = JSON.stringify({ ...r, disk: clip(r.disk, n * 2), host, vms: vms.slice(0, k), ...(k < vms.length ? { more: vms.length - k } : {}) });
      if (Buffer.byteLength(json) < RECORD_SIZE) return pad(json);
    }
  }
  return pad(JSON.stringify({ v: r.v, mode: r.mode, host: shortHost(r.host), pid: r.pid, since: r.since, disk: '', vms: [] }));
}

export function emptySlot(): Buffer {
  const buf = Buffer.alloc(RECORD_SIZE, 0x20);
  buf[RECORD_SIZE - 1] = 0x0a;
  return buf;
}

function parse(buf: Buffer): Record<string, unknown> | undefined {
  const text = buf.toString('utf8').replace(/\0+/g, '').trim();
  if (!text.startsWith('{')) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && (v as { v?: unknown }).v === RECORD_VERSION ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function owner(v: unknown): Owner | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as { uuid?: unknown; name?: unknown };
  if (typeof o.uuid !== 'string') return undefined;
  return typeof o.name === 'string' ? { uuid: o.uuid, name: o.name } : { uuid: o.uuid };
}

/** The exclusive record, or undefined if the region holds none (new file, virtlockd, garbage). */
export function decodeExclusive(buf: Buffer): ExclusiveRecord | undefined {
  const r = parse(buf.subarray(0, RECORD_SIZE));
  if (!r || (r.mode !== 'exclusive' && r.mode !== 'free') || typeof r.gen !== 'number') return undefined;
  const vm = owner(r.vm);
  const reserved = r.mode === 'free' ? reservation(r.reserved) : undefined;
  const took = r.mode === 'free' && r.took === 'shared' ? { took: 'shared' as const } : {};
  return {
    v: RECORD_VERSION,
    mode: r.mode,
    gen: r.gen,
    host: String(r.host ?? ''),
    pid: Number(r.pid ?? 0),
    since: String(r.since ?? ''),
    disk: String(r.disk ?? ''),
    ...(vm ? { vm } : {}),
    ...(reserved ? { reserved } : {}),
    ...took,
  };
}

function reservation(v: unknown): Reservation | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const vm = owner(o.vm);
  if (!vm || typeof o.host !== 'string' || o.host === '' || typeof o.until !== 'string' || Number.isNaN(Date.parse(o.until))) return undefined;
  return { host: o.host, vm, from: String(o.from ?? ''), since: String(o.since ?? ''), until: o.until };
}

/** The hand-over request region, or undefined if it holds none. */
export function decodeRequest(buf: Buffer): HandOverRequest | undefined {
  const r = parse(buf.subarray(0, RECORD_SIZE));
  if (!r || r.mode !== 'handover' || typeof r.host !== 'string' || r.host === '') return undefined;
  const vm = owner(r.vm);
  if (!vm) return undefined;
  return { v: RECORD_VERSION, mode: 'handover', host: r.host, pid: Number(r.pid ?? 0), since: String(r.since ?? ''), vm };
}

/**
 * The source's release of a disk its VM `vm` held exclusively: the reservation to write into the
 * free record, if a destination waits for this same VM. `request` is the hand-over request, given
 * only when its bytes are locked (its writer is alive and waiting).
 */
export function reservationOnRelease(vm: Owner | undefined, thisHost: string, request: HandOverRequest | undefined, nowMs: number, ttlMs = RESERVATION_TTL_MS): Reservation | undefined {
  if (!vm || !request || request.vm.uuid !== vm.uuid || request.host === thisHost) return undefined;
  const name = request.vm.name ?? vm.name;
  return { host: request.host, vm: { uuid: request.vm.uuid, ...(name !== undefined ? { name } : {}) }, from: thisHost, since: new Date(nowMs).toISOString(), until: new Date(nowMs + ttlMs).toISOString() };
}

/**
 * A taker (this host, this VM) has just been granted byte 0 of a lock file whose exclusive record is
 * `record`: the reservation that refuses it, if any. A reservation counts only for another host or
 * VM than the taker, before its `until`, and while the destination's request still stands (locked,
 * naming the same host and VM: `request` is given only when its bytes are locked). A dead or
 * withdrawn destination, or one whose time ran out, reserves nothing.
 */
export function reservationAgainst(record: ExclusiveRecord | undefined, taker: { readonly host: string; readonly uuid: string }, request: HandOverRequest | undefined, nowMs: number): Reservation | undefined {
  const r = record?.mode === 'free' ? record.reserved : undefined;
  if (!r) return undefined;
  if (r.host === taker.host && r.vm.uuid === taker.uuid) return undefined;
  if (!(Date.parse(r.until) > nowMs)) return undefined;
  if (!request || request.host !== r.host || request.vm.uuid !== r.vm.uuid) return undefined;
  return r;
}

/**
 * A taker has just been granted byte 0 of a lock file whose record still says *exclusive*: its
 * holder let go without a release (its daemon died, and no descriptor store kept the lock), so no
 * reservation was written. If a migration destination's request for that same VM stands (locked:
 * `request` is given only then) on another host than the dead holder's, the disk counts as reserved
 * for it, as the holder's release would have written (decisions/0009): every taker but that
 * destination's VM refuses. It lasts as long as the request (the destination's wait), which takes
 * the disk on its next attempt; `until` is only what the refusal shows.
 */
export function reservationByRequest(record: ExclusiveRecord | undefined, taker: { readonly host: string; readonly uuid: string }, request: HandOverRequest | undefined, nowMs: number, ttlMs = RESERVATION_TTL_MS): Reservation | undefined {
  if (record?.mode !== 'exclusive' || !record.vm || !request) return undefined;
  if (request.vm.uuid !== record.vm.uuid || request.host === record.host) return undefined;
  if (request.host === taker.host && request.vm.uuid === taker.uuid) return undefined;
  const name = request.vm.name ?? record.vm.name;
  return { host: request.host, vm: { uuid: request.vm.uuid, ...(name !== undefined ? { name } : {}) }, from: record.host, since: new Date(nowMs).toISOString(), until: new Date(nowMs + ttlMs).toISOString() };
}

export function decodeShared(buf: Buffer): SharedRecord | undefined {
  const r = parse(buf.subarray(0, RECORD_SIZE));
  if (!r || r.mode !== 'shared' || !Array.isArray(r.vms)) return undefined;
  const vms = (r.vms as unknown[]).flatMap((v) => {
    const o = owner(v);
    return o ? [{ ...o, since: String((v as { since?: unknown }).since ?? '') }] : [];
  });
  return { v: RECORD_VERSION, mode: 'shared', host: String(r.host ?? ''), pid: Number(r.pid ?? 0), since: String(r.since ?? ''), disk: String(r.disk ?? ''), vms };
}

/** The generation to write for a new exclusive grant. */
export function nextGeneration(previous: ExclusiveRecord | undefined): number {
  return (previous?.gen ?? 0) + 1;
}

/** What one lock file says about its holders, as `who` reports it. */
export interface Inspection {
  /** The lock file. */
  readonly file: string;
  readonly state: 'free' | 'exclusive' | 'shared';
  /** The disk path recorded by the holder (or the last holder), when known. */
  readonly disk?: string;
  /** The current fencing generation (the last exclusive grant's), 0 if never granted by vmlockd. */
  readonly generation: number;
  /** One entry per holder the records name; empty when the holder left no record (virtlockd). */
  readonly holders: HolderInfo[];
  /** Free, but reserved for a migration's destination that still waits (decision 0009). */
  readonly reserved?: Reservation;
}

export function holdersOfExclusive(r: ExclusiveRecord): HolderInfo[] {
  return [{ host: r.host, ...(r.vm ? { owner: r.vm } : {}), mode: 'exclusive' as Mode, since: r.since, generation: r.gen, pid: r.pid }];
}

export function holdersOfShared(r: SharedRecord): HolderInfo[] {
  if (r.vms.length === 0) return [{ host: r.host, mode: 'shared', since: r.since, pid: r.pid }];
  return r.vms.map((vm) => ({ host: r.host, owner: { uuid: vm.uuid, ...(vm.name ? { name: vm.name } : {}) }, mode: 'shared' as Mode, since: vm.since, pid: r.pid }));
}

/**
 * A refusal a waiting migration destination expects: this same VM holds the disk on another host
 * (the source), or the disk is reserved for this very VM on this host and another host's taker
 * holds byte 0 for the instant it reads that reservation.
 */
export function isHandOverRefusal(holder: HolderInfo, owner: Owner, host: string): boolean {
  if (holder.owner?.uuid !== owner.uuid || holder.host === undefined) return false;
  return holder.reservation === undefined ? holder.host !== host : holder.host === host;
}
