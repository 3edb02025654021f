// The locker: the only code that opens lock files (invariant 4).
//
// One open file description per held resource, locked with a non-blocking OFD lock on byte 0,
// length 1 (virtlockd's byte; QEMU's own image locks sit at bytes 100+ and 200+). OFD locks belong
// to the description, not the process, so nothing else this process opens or closes can drop them,
// and two descriptions conflict even inside one process. See docs/decisions/0001-ofd-locks-native-binding.md.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { identityOfFd, identityOfStats, sameIdentity } from './disk-identity.js';
import { BadInputError, VmlockdError } from './errors.js';
import { TAKEN_AGAIN, fact, type NewFact } from './facts.js';
import type { ResourceFields, TakeSeen } from './facts.js';
import { refusalMessage } from './messages.js';
import { native as defaultNative, type NativeBinding } from './native.js';
import { lockspaceProblem, type LockspacePin } from './locker-hosts.js';
import { readAligned, writeAligned } from './aligned-io.js';
import type { State } from './state.js';
import type { HolderInfo, Intent, Mode, Owner, ResolvedDisk, ResourceRef } from './types.js';
import {
  FILE_SPAN,
  HANDOVER_OFFSET,
  LEASE_SPAN,
  decodeRequest,
  encodeRequest,
  isHandOverRefusal,
  isOwnHost,
  reservationAgainst,
  reservationByRequest,
  reservationOnRelease,
  type ExclusiveRecord,
  type HandOverRequest,
  type Reservation,
  RECORD_SIZE,
  SLOT_COUNT,
  decodeExclusive,
  decodeShared,
  emptySlot,
  encodeExclusive,
  encodeShared,
  holdersOfExclusive,
  holdersOfShared,
  nextGeneration,
  slotOffset,
  type Inspection,
} from './holder-record.js';
import { mayWriteRecords, openLockFile, readLease, type Lease } from './locker-files.js';
import { takeNative, type NativeTake } from './locker-native.js';

const LOCK_START = 0;
const LOCK_LEN = 1;

export interface DiskResult {
  readonly path: string;
  readonly disk: string;
  readonly resource: string;
  readonly name: string;
  readonly mode: Mode;
}

/**
 * A held lock that did not check out: `lost` on evidence, `error` when the check itself failed.
 * `renamed`: it holds, but it is a disk locked in place whose path no longer names it (renamed or
 * replaced under its lock): news for the log, never a reason to take or drop anything.
 */
export interface Verification {
  readonly resource: string;
  readonly status: 'lost' | 'error' | 'renamed';
  readonly reason: string;
}

/** Errnos of a description whose locks the filesystem dropped (a dead FUSE client; a GlusterFS brick restart with strict-locks). */
const DEAD_DESCRIPTION: ReadonlySet<string> = new Set(['ENOTCONN', 'EBADFD', 'EBADF']);

export interface Refusal extends DiskResult {
  readonly holder: HolderInfo;
  readonly message: string;
  /** The refusal's LockRefused fact, once journaled (src/engine/conflict-line.ts). */
  readonly seq?: number;
}

export type Outcome =
  | {
      readonly status: 'ok';
      readonly acquired: DiskResult[];
      readonly released: DiskResult[];
      readonly already: DiskResult[];
      /** For a check: disks that could be taken now. */
      readonly free: DiskResult[];
    }
  | { readonly status: 'refused'; readonly message: string; readonly refusals: Refusal[] };

/** The locker's half of a command: kernel effects done (or planned) and the facts that describe them. */
export interface Prepared {
  readonly facts: NewFact[];
  readonly outcome: Outcome;
  /** Run once the facts are durable: closes the descriptions of released resources. */
  commit(): void;
  /** Run when the facts could not be journaled: undoes the locks this command took. */
  abort(): void;
}

export interface Context {
  readonly at: string;
  readonly source: string;
  /** A refusal journals nothing (a waiting migration destination's repeated attempt). */
  readonly quiet?: boolean;
}

interface Held {
  readonly fd: number;
  readonly mode: Mode;
  readonly ref: ResourceRef;
  /** Shared holders: the slot this host claimed in the lock file, if any was free. */
  readonly slot?: number;
  /** The fencing generation of an exclusive grant. */
  readonly gen?: number;
  readonly since: string;
  /** Local owners holding it (one for exclusive; one or more for shared). */
  readonly vms: Map<string, Owner & { since: string }>;
}

/** A re-take's own record still to write (Locker.keptProof): who took it, and what it found. */
interface KeptProof {
  readonly taker: Taker;
  /** The lock file's size and exclusive record as the re-take found them. */
  readonly size: number;
  readonly head: ExclusiveRecord | undefined;
  /** The verifier's re-take (retake()), not the start's: its facts are not among the start's (recordRetakes('start') skips it). */
  readonly running?: true;
  /** Its descriptor is in the store already (retake()): recordRetakes() does not hand it over twice. */
  readonly stored?: true;
  /**
   * A running re-take's facts (its LeaseLost and Reacquired): the caller's mark of them once they are
   * journaled or wait to be (tieRetakes()); none yet: they are not even handed to the journal, so its
   * record is not written (engine29, review28b).
   */
  readonly ticket?: number;
}

/** What recordRetakes() asks of a kept re-take record: whose it is, and the mark of its facts (tieRetakes()). */
export interface KeptRetake {
  readonly resource: string;
  /** The verifier's re-take (retake()); else the start's (its facts are the start's). */
  readonly running: boolean;
  readonly ticket?: number;
}

interface Accumulator {
  facts: NewFact[];
  acquired: DiskResult[];
  released: DiskResult[];
  already: DiskResult[];
  free: DiskResult[];
  refusals: Refusal[];
  taken: string[];
  toClose: string[];
  leaving: Array<{ id: string; owner: string }>;
  /** Hand-over requests this command made (withdrawn again if its facts cannot be journaled). */
  requested: Array<{ id: string; owner: string }>;
  /** Owners this command added to a shared holding of this host (taken out of its record again if the command does not stand). */
  joined: Array<{ id: string; owner: string }>;
  refuse: (disk: ResolvedDisk, owner: Intent['owner'], holder: HolderInfo) => void;
}

/**
 * Where the descriptors of held locks are kept outside this process (systemd's file descriptor
 * store, src/daemon/service.ts): told after each lock is taken, and before a release closes one.
 */
export interface DescriptorStore {
  store(name: string, fd: number): void;
  remove(name: string): void;
}

/** A descriptor handed back at start (LISTEN_FDS or a takeover), with the name it was stored under. */
export interface PassedFd {
  readonly fd: number;
  readonly name: string;
  /**
   * The take this descriptor belongs to (descriptors() only): a lock released and taken again gets a
   * new take, and usually the same descriptor number, so name and number do not tell them apart.
   */
  readonly take?: object;
}

/** What adopt() did with the descriptors handed back. */
export interface Adoption {
  readonly facts: NewFact[];
  readonly lost: NewFact[];
  /** Resources held again through a handed-back description. */
  readonly adopted: number;
  /** Descriptors closed (and removed from the store): name and why. */
  readonly dropped: Array<{ name: string; reason: string }>;
  /** Adopted disks locked in place whose path no longer names them (renamed under their lock): why, per disk. */
  readonly renamed?: Array<{ disk: string; reason: string }>;
  /**
   * Adopted shared disks locked in place whose description cannot be shown to have held its lock
   * throughout (review27c F3): another host's read lock hides whether it is a released one's, and a
   * disk carries no record to compare. Held all the same; the start counts them as unproven
   * (src/daemon/direct-gap.ts).
   */
  readonly unproven?: string[];
}

/**
 * The name a lock file's descriptor is stored under: FDNAME allows at most 255 printable ASCII
 * characters without ':', and a lock file path may hold anything, so a digest of the path.
 */
export function fdName(resource: string): string {
  return `lock-${createHash('sha256').update(resource).digest('hex').slice(0, 40)}`;
}

export function isLockFdName(name: string): boolean {
  return /^lock-[0-9a-f]{40}$/.test(name);
}

/** The refusal a reservation gives: the destination named as the holder-to-be. */
function reservationHolder(r: Reservation): HolderInfo {
  return { host: r.host, owner: r.vm, mode: 'exclusive', since: r.since, reservation: { from: r.from, since: r.since, until: r.until } };
}

/**
 * What a take found in the lock file before writing its own record: its size, its exclusive record
 * and its inode number. null: the file carries no records (not a lease); undefined: a disk locked
 * in place (no lock file).
 */
export interface LeaseSeen {
  readonly size: number;
  readonly head?: ExclusiveRecord | undefined;
  readonly ino?: string | undefined;
}

type TakeResult = Taken | { readonly ok: false; readonly holder: HolderInfo };

interface Taken {
  readonly ok: true;
  readonly fd: number;
  readonly slot?: number | undefined;
  readonly gen?: number | undefined;
  readonly lease?: LeaseSeen | null;
  readonly deferred?: boolean;
  /** An exclusive take that wrote its record: the exclusive record it wrote over (null: none), for an abort to put back. */
  readonly prior?: ExclusiveRecord | null;
}

/**
 * What a take journals of what it saw (TakeSeen, for the next start's gap check): the lock file's
 * inode, and for a shared take the generation of the exclusive record it found (0 for none).
 */
export function takeSeen(mode: Mode, lease: LeaseSeen | null | undefined): TakeSeen {
  if (!lease) return {};
  // Plain stores, not spreads: this runs on every take (issue 13).
  const seen: { lockIno?: string; headGeneration?: number; headStamp?: string } = {};
  if (lease.ino !== undefined) seen.lockIno = lease.ino;
  if (mode === 'shared') {
    seen.headGeneration = lease.head?.gen ?? 0;
    // A dead "exclusive" record the take closed is no longer there: no stamp then.
    if (lease.head === undefined) seen.headStamp = '';
    else if (lease.head.mode !== 'exclusive') seen.headStamp = headStamp(lease.head);
  }
  return seen;
}

/** Which write of the exclusive record this is (TakeSeen.headStamp). */
export function headStamp(r: ExclusiveRecord): string {
  return `${r.host}@${r.since}`;
}

/** Who takes a lock, for the holder record. */
interface Taker {
  readonly owner: Owner;
  readonly at: string;
}

export function resourceFields(ref: ResourceRef, path: string): ResourceFields {
  // Plain stores, not a spread of a temporary object: every lock and release fact starts here (issue 13).
  const f: { -readonly [K in keyof ResourceFields]: ResourceFields[K] } = { resource: ref.id, name: ref.name, lockspace: ref.lockspace, kind: ref.kind, disk: ref.canonical, path };
  if (ref.inode !== undefined) f.inode = ref.inode;
  return f;
}

function result(d: ResolvedDisk): DiskResult {
  return { path: d.path, disk: d.resource.canonical, resource: d.resource.id, name: d.resource.name, mode: d.mode };
}

export class Locker {
  private readonly held = new Map<string, Held>();
  /** The exclusive record of a take or a release is encoded here (written at once, before the next is encoded). */
  private readonly recordBuf = Buffer.alloc(RECORD_SIZE);
  /** Resources adopt() already recorded as lost: reacquire() leaves them alone. */
  private readonly settled = new Set<string>();
  /**
   * Re-taken locks whose lock file proves an intrusion in the gap (decision 0020): held, but this
   * host's record is not written over that proof, nor the descriptor handed to the store, until the
   * start's LeaseLost is journaled (recordRetakes()). A SIGKILL before that leaves the proof for the
   * next start (review26a F3).
   */
  private readonly keptProof = new Map<string, KeptProof>();
  /**
   * Shared holdings with no record slot to watch (a disk locked in place; past 32 sharing hosts)
   * whose description the kernel listed as holding its read lock when it was taken (ofdHeldBy): the
   * verifier sees that lock go, which another host's read lock otherwise hides (review27c F3).
   */
  private readonly listed = new WeakSet<Held>();
  private readonly native: NativeBinding;
  /**
   * The take and the release through one native call each (decision 0019): the default. Off when a
   * test hands in a binding of its own to watch each system call (unless it asks for it), or when
   * the built binding predates those calls (a stale native/build).
   */
  private readonly oneCall: boolean;

  /**
   * fdatasync each holder record: on a cluster filesystem a client may keep writes in a cache
   * (GlusterFS write-behind), so another host would read an old record and an old generation.
   */
  private readonly syncRecords: boolean;
  private readonly store: DescriptorStore | undefined;

  /** The highest generation the journal gave a disk, for a lock file without a readable record. */
  private readonly generationFloor: ((disk: string) => number) | undefined;
  /** The highest generation this process handed out per resource (facts may still be staged). */
  private readonly highestGen = new Map<string, number>();
  /** Lockspace directory -> the id its id file held at start (pinLockspace): a lock file is only ever created in that lockspace. */
  private readonly lockspaceIds = new Map<string, LockspacePin>();
  /**
   * Hand-over requests this host holds as a migration destination: resource id -> the description
   * whose write lock on the request bytes keeps the request standing, and the waiting owner.
   */
  private readonly requests = new Map<string, { fd: number; owner: string }>();
  /**
   * Takes of a command not committed yet whose exclusive record this host wrote: the record each
   * wrote over (null: none). An abort puts it back before the lock goes (review26d F4), so the file
   * never names a holder that does not hold it: the next start's found scan (locker-found.ts) took
   * a record naming this host with a generation the journal never gave as a grant it forgot.
   */
  private readonly priorHeads = new Map<string, ExclusiveRecord | null>();
  private readonly now: () => number;

  constructor(
    readonly host: string,
    options: { native?: NativeBinding; oneCall?: boolean; fileLockspaceDir?: string | null; syncRecords?: boolean; store?: DescriptorStore; generationFloor?: (disk: string) => number; now?: () => number } = {},
  ) {
    this.native = options.native ?? defaultNative;
    this.oneCall = (options.oneCall ?? options.native === undefined) && typeof this.native.takeLockFile === 'function' && typeof this.native.releaseLockFile === 'function';
    this.now = options.now ?? Date.now;
    this.generationFloor = options.generationFloor;
    this.syncRecords = options.syncRecords ?? false;
    this.store = options.store;
    if (options.fileLockspaceDir) fs.mkdirSync(options.fileLockspaceDir, { recursive: true, mode: 0o700 });
  }

  /**
   * From now on a lock file in `dir` is created only while `dir` still is the lockspace whose id
   * file holds `id`, and a lock file missing from a `dir` that is not is no evidence of a loss. A
   * cluster filesystem being mounted again leaves a bare local directory at its mount point for a
   * while; a re-take there "succeeded" on a local file while another host held the disk.
   */
  pinLockspace(dir: string, id: string): void {
    this.lockspaceIds.set(dir, { id, dev: fs.statSync(dir).dev });
  }

  /** Why the lockspace of a lock file is not the pinned one (undefined: it is, or none is pinned). */
  private lockspaceAway(ref: ResourceRef): string | undefined {
    if (ref.kind === 'direct') return undefined;
    const dir = path.dirname(ref.id);
    const pin = this.lockspaceIds.get(dir);
    if (pin === undefined) return undefined;
    const why = lockspaceProblem(dir, pin);
    return why === undefined ? undefined : `lockspace ${dir} is not the one vmlockd started with: ${why}`;
  }

  /**
   * A disk locked in place is its own lock file, and its path is not its identity: renamed under its
   * lock (QEMU writes it through its descriptor all the same), the path names another file or none.
   * Why the path no longer names the journaled disk (ref.inode); undefined when it does, or when that
   * cannot be told (no identity journaled, a stat failing otherwise than ENOENT).
   */
  private pathMoved(ref: ResourceRef): string | undefined {
    if (ref.kind !== 'direct' || ref.inode === undefined) return undefined;
    let now: string;
    try {
      now = identityOfStats(fs.statSync(ref.id, { bigint: true }));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === 'ENOENT' || code === 'ENOTDIR' ? `no disk is at ${ref.id} any more (renamed or deleted)` : undefined;
    }
    return sameIdentity(ref.inode, now) ? undefined : `the disk at ${ref.id} is another file now (the locked disk was renamed or replaced)`;
  }

  /**
   * Why `file` no longer names the inode a held description is on (`own`: its fstat); undefined
   * when it does, or when the stat fails otherwise than ENOENT (the open that follows tells then).
   */
  private pathLeft(file: string, own: fs.BigIntStats): string | undefined {
    let st: fs.BigIntStats;
    try {
      st = fs.statSync(file, { bigint: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === 'ENOENT' || code === 'ENOTDIR' ? `no disk is at ${file} any more (renamed or deleted under its lock)` : undefined;
    }
    if (st.dev === own.dev && st.ino === own.ino) return undefined;
    // A block device is its device number: a device node made again for it is the same disk, and the
    // lock belongs on the node that names it now (a replaced lock file, as before).
    if (own.isBlockDevice() && st.isBlockDevice() && st.rdev === own.rdev) return undefined;
    return `the disk at ${file} is another file now (the locked disk was renamed or replaced under its lock)`;
  }

  /**
   * For a held disk locked in place whose path no longer names it: a path that opens the very inode
   * its description is on (a new description of it), for a re-take on the disk itself, never on
   * whatever its old path names now. undefined: the path still names it (or that cannot be told).
   */
  private renamedVia(h: Held): string | undefined {
    if (h.ref.kind !== 'direct') return undefined;
    try {
      return this.pathLeft(h.ref.id, fs.fstatSync(h.fd, { bigint: true })) === undefined ? undefined : `/proc/self/fd/${h.fd}`;
    } catch {
      return undefined;
    }
  }

  /** Open a lock file; one that does not exist yet is created only in the pinned lockspace. */
  private openForTake(ref: ResourceRef, flags: number): number {
    const opts = { blockDevice: ref.kind === 'direct' };
    if ((flags & fs.constants.O_CREAT) === 0 || !this.lockspaceIds.has(path.dirname(ref.id))) return openLockFile(ref.id, flags, opts);
    try {
      return openLockFile(ref.id, flags & ~fs.constants.O_CREAT, opts);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const away = this.lockspaceAway(ref);
    if (away !== undefined) throw new Error(away);
    return openLockFile(ref.id, flags, opts);
  }

  get size(): number {
    return this.held.size;
  }

  isHeld(resource: string): boolean {
    return this.held.has(resource);
  }

  heldResources(): IterableIterator<string> {
    return this.held.keys();
  }

  /** Apply one command's intents, all or nothing. */
  prepare(intents: readonly Intent[], ctx: Context): Prepared {
    const facts: NewFact[] = [];
    const acquired: DiskResult[] = [];
    const released: DiskResult[] = [];
    const already: DiskResult[] = [];
    const free: DiskResult[] = [];
    const refusals: Refusal[] = [];
    const taken: string[] = [];
    const toClose: string[] = [];
    const leaving: Array<{ id: string; owner: string }> = [];
    const requested: Array<{ id: string; owner: string }> = [];
    const joined: Array<{ id: string; owner: string }> = [];
    // A command that does not stand gives back what it did: its takes (the records they wrote put
    // back), its joins (the slot's record without them), its hand-over requests.
    const undo = (withdraw: boolean) => {
      for (const id of taken) this.drop(id, 'abort');
      for (const j of joined) this.leaveRecord(j.id, j.owner);
      if (withdraw) for (const r of requested) this.withdraw(r.id, r.owner);
    };

    const refuse = (disk: ResolvedDisk, owner: Intent['owner'], holder: HolderInfo) => {
      const message = refusalMessage(disk.path, holder);
      refusals.push({ ...result(disk), holder, message });
      // Quiet: an attempt of a waiting migration destination, refused because its own VM still
      // holds the disk on the source host, journals nothing (HandOverWaiting said it once). Any
      // other refusal is news and journaled as ever.
      if (ctx.quiet && isHandOverRefusal(holder, owner, this.host)) return;
      facts.push(
        fact('LockRefused', ctx.at, { ...resourceFields(disk.resource, disk.path), owner, mode: disk.mode, source: ctx.source, holder, message }),
      );
    };

    try {
      this.applyAll(intents, ctx, { facts, acquired, released, already, free, refusals, taken, toClose, leaving, requested, joined, refuse });
    } catch (e) {
      // An I/O failure half-way must not leave this command's earlier locks behind.
      undo(true);
      throw e;
    }

    if (refusals.length > 0) {
      // All or nothing: give back what this command took, and record only the refusal.
      undo(false);
      const kept = facts.filter((f) => f.kind === 'OwnerSeen' || f.kind === 'LockRefused');
      return {
        facts: kept,
        outcome: { status: 'refused', message: refusals.map((r) => r.message).join('; '), refusals },
        commit: () => {},
        abort: () => {},
      };
    }
    return {
      facts,
      outcome: { status: 'ok', acquired, released, already, free },
      commit: () => {
        for (const l of leaving) this.leaveRecord(l.id, l.owner);
        for (const id of toClose) this.drop(id, 'release');
        // A waiting destination that has its disk: its request has done its work.
        for (const id of taken) {
          this.priorHeads.delete(id);
          const owner = this.held.get(id)?.vms.keys().next().value;
          if (owner !== undefined) this.withdraw(id, owner);
        }
      },
      abort: () => undo(true),
    };
  }

  private applyAll(intents: readonly Intent[], ctx: Context, acc: Accumulator): void {
    const { facts, acquired, released, already, free, refusals, taken, toClose, leaving, requested, joined, refuse } = acc;
    for (const intent of intents) {
      if (refusals.length > 0 && intent.kind === 'lock') break;
      switch (intent.kind) {
        case 'see':
          facts.push(fact('OwnerSeen', ctx.at, { owner: intent.owner, source: ctx.source }));
          break;
        case 'refuse':
          refuse(intent.disk, intent.owner, intent.holder);
          break;
        case 'already':
          already.push(result(intent.disk));
          break;
        case 'lock': {
          const { disk, owner } = intent;
          let generation: number | undefined;
          let seen: TakeSeen = {};
          if (intent.how === 'take') {
            const r = this.take(disk.resource, disk.mode, { owner, at: ctx.at });
            if (!r.ok) {
              refuse(disk, owner, r.holder);
              break;
            }
            // Plain stores, not spreads of temporary objects (issue 13: the take's hot path).
            const entry: { -readonly [K in keyof Held]: Held[K] } = { fd: r.fd, mode: disk.mode, ref: disk.resource, since: ctx.at, vms: new Map() };
            entry.vms.set(owner.uuid, { ...owner, since: ctx.at });
            if (r.slot !== undefined) entry.slot = r.slot;
            if (r.gen !== undefined) entry.gen = r.gen;
            this.held.set(disk.resource.id, entry);
            this.noteListed(entry);
            if (r.prior !== undefined) this.priorHeads.set(disk.resource.id, r.prior);
            generation = r.gen;
            seen = takeSeen(disk.mode, r.lease);
            taken.push(disk.resource.id);
            this.store?.store(fdName(disk.resource.id), r.fd);
          } else if (this.joinRecord(disk.resource.id, owner, ctx.at)) {
            joined.push({ id: disk.resource.id, owner: owner.uuid });
          }
          acquired.push(result(disk));
          // The fields in the order the spreads wrote them ever since (the journaled JSON is unchanged).
          const payload = resourceFields(disk.resource, disk.path) as ResourceFields & { owner: Owner; mode: Mode; source: string; generation?: number };
          payload.owner = owner;
          payload.mode = disk.mode;
          payload.source = ctx.source;
          if (generation !== undefined) payload.generation = generation;
          facts.push(fact('LockAcquired', ctx.at, Object.assign(payload, seen)));
          break;
        }
        case 'probe': {
          const holder = this.probe(intent.disk.resource, intent.disk.mode, intent.owner);
          if (holder) refuse(intent.disk, intent.owner, holder);
          else free.push(result(intent.disk));
          break;
        }
        case 'unlock': {
          const { resource, path, owner } = intent;
          const h = this.held.get(resource.id);
          const mode = h?.mode ?? 'exclusive';
          released.push({ path, disk: resource.canonical, resource: resource.id, name: resource.name, mode });
          // A migration destination waiting for this VM's disk: the release (at commit) reserves it for it.
          const to = intent.how === 'drop' && h ? this.reservationOnDrop(h) : undefined;
          const payload = resourceFields(resource, path) as ResourceFields & { owner: Owner; source: string; reason: string; handedTo?: { host: string; owner: Owner; until: string } };
          payload.owner = owner;
          payload.source = ctx.source;
          payload.reason = ctx.source;
          if (to) payload.handedTo = { host: to.host, owner: to.vm, until: to.until };
          facts.push(fact('LockReleased', ctx.at, payload));
          if (intent.how === 'drop') toClose.push(resource.id);
          else leaving.push({ id: resource.id, owner: owner.uuid });
          break;
        }
        case 'await': {
          const disks = intent.disks.map((d) => {
            const r = this.request(d.resource, intent.owner, ctx.at);
            if (r.requested && r.made) requested.push({ id: d.resource.id, owner: intent.owner.uuid });
            return { resource: d.resource.id, disk: d.resource.canonical, path: d.path, requested: r.requested, ...(r.why !== undefined ? { why: r.why } : {}) };
          });
          facts.push(fact('HandOverWaiting', ctx.at, { owner: intent.owner, from: intent.from, disks, source: ctx.source }));
          break;
        }
        case 'withdraw': {
          let withdrawn = 0;
          for (const d of intent.disks) if (this.withdraw(d.resource.id, intent.owner.uuid)) withdrawn++;
          facts.push(fact('HandOverEnded', ctx.at, { owner: intent.owner, outcome: intent.outcome, ...(intent.detail !== undefined ? { detail: intent.detail } : {}), withdrawn, source: ctx.source }));
          break;
        }
        default: {
          const _exhaustive: never = intent;
          return _exhaustive;
        }
      }
    }
  }

  /**
   * A migration destination's request (decision 0009): claim the lock file's hand-over bytes with
   * an OFD write lock on a description of its own and name this host and VM there, so the source's
   * release reserves the disk for it. The lock is what makes the request count: it goes with this
   * process, so a destination that dies reserves nothing. `made`: this call opened it.
   */
  private request(ref: ResourceRef, owner: Owner, at: string): { requested: boolean; made?: boolean; why?: string } {
    if (ref.kind === 'direct') return { requested: false, why: 'a disk locked in place carries no records' };
    const prev = this.requests.get(ref.id);
    if (prev) return prev.owner === owner.uuid ? { requested: true } : { requested: false, why: 'another VM of this host waits for it' };
    if (this.held.has(ref.id)) return { requested: false, why: 'this host holds it' };
    let fd: number;
    try {
      // Created (O_CREAT) only in the pinned lockspace, as a take: never on a bare mount point.
      fd = this.openForTake(ref, this.openFlags(ref, 'exclusive'));
    } catch (e) {
      return { requested: false, why: `cannot open the lock file: ${(e as Error).message}` };
    }
    const fail = (why: string) => {
      try {
        fs.closeSync(fd);
      } catch {
        // nothing held
      }
      return { requested: false, why };
    };
    try {
      if (!mayWriteRecords(fd)) return fail('the lock file is not a vmlockd lease (it carries no records)');
      if (!this.native.ofdSetLk(fd, 'write', HANDOVER_OFFSET, RECORD_SIZE)) return fail('another destination waits for it');
      writeAligned(fd, encodeRequest({ v: 1, mode: 'handover', host: this.host, pid: process.pid, since: at, vm: owner }), HANDOVER_OFFSET);
      if (this.syncRecords) fs.fdatasyncSync(fd);
    } catch (e) {
      return fail(`cannot write the request: ${errnoName(e)}`);
    }
    this.requests.set(ref.id, { fd, owner: owner.uuid });
    return { requested: true, made: true };
  }

  /** Withdraw this owner's hand-over request for a resource: blank it and let its bytes go. */
  private withdraw(id: string, ownerUuid: string): boolean {
    const r = this.requests.get(id);
    if (!r || r.owner !== ownerUuid) return false;
    this.requests.delete(id);
    try {
      writeAligned(r.fd, emptySlot(), HANDOVER_OFFSET);
      if (this.syncRecords) fs.fdatasyncSync(r.fd);
    } catch {
      // the lock is what counts; a blank is for readers
    }
    try {
      this.native.ofdSetLk(r.fd, 'unlock', HANDOVER_OFFSET, RECORD_SIZE);
    } catch {
      // a broken descriptor holds nothing
    }
    try {
      fs.closeSync(r.fd);
    } catch {
      // nothing left to release
    }
    return true;
  }

  /** Whether this host waits as a migration destination for a resource (tests, status). */
  isRequested(resource: string): boolean {
    return this.requests.has(resource);
  }

  /** The hand-over request in a lock file, if one stands (its bytes locked by another description). */
  private liveRequest(fd: number): HandOverRequest | undefined {
    return readRequest(this.native, fd);
  }

  /** The reservation a release of this exclusive holding writes (a destination waits for its VM). */
  private reservationOnDrop(h: Held): Reservation | undefined {
    if (h.mode !== 'exclusive' || h.gen === undefined || h.ref.kind === 'direct') return undefined;
    const last = h.vms.values().next().value as (Owner & { since: string }) | undefined;
    return reservationOnRelease(last && { uuid: last.uuid, ...(last.name ? { name: last.name } : {}) }, this.host, this.liveRequest(h.fd), this.now());
  }

  /**
   * After a restart: take again every lock the journal says this host held.
   * A lock another owner took in the gap is never stolen back: it becomes LeaseLost.
   */
  reacquire(state: State, at: string): { facts: NewFact[]; lost: NewFact[] } {
    const facts: NewFact[] = [];
    const lost: NewFact[] = [];
    for (const res of state.resources.values()) {
      if (this.held.has(res.ref.id) || this.settled.has(res.ref.id)) continue;
      const holders = [...res.holders.values()];
      const first = holders[0]!;
      let r: TakeResult;
      let reason = 'taken by another owner while vmlockd was down';
      // What the take finds is judged before it writes: an intrusion's proof stays in the lock file
      // until the LeaseLost is journaled (recordRetakes(), review26a F3).
      const proves = (seen: LeaseSeen) => gapIntruder(seen, this.host, res.mode, holders) !== undefined;
      // A disk locked in place and renamed (or replaced) under its lock: no description of it was
      // handed back (those are adopted before), so its lock went with the old process, and the file
      // its old path names now is another disk; locking that one would say "held" of a disk nobody
      // locks (review27 F4).
      const moved = this.pathMoved(res.ref);
      if (moved !== undefined) {
        r = { ok: false, holder: {} };
        reason = `${moved} while vmlockd was down, and no descriptor of it was handed back: its lock is not moved to the file that path names now`;
      } else {
        try {
          r = this.take(res.ref, res.mode, { owner: first.owner, at }, holders.map((h) => ({ ...h.owner, since: h.since })), proves);
        } catch (e) {
          r = { ok: false, holder: {} };
          reason = `could not be taken again: ${(e as Error).message}`;
        }
      }
      // Free now, but what the take found shows the exclusion was not continuous (another host's
      // grant, shared or exclusive, or the lock file replaced): this host's VM (still running,
      // perhaps) lost its lock in the gap (decision 0020).
      const intrusion = r.ok ? gapIntruder(r.lease, this.host, res.mode, holders) : undefined;
      const seen = r.ok ? takeSeen(res.mode, r.lease) : {};
      for (const h of holders) {
        const fields = resourceFields(res.ref, h.path);
        if (r.ok && intrusion) {
          const f = fact('LeaseLost', at, { ...fields, owner: h.owner, mode: h.mode, holder: intrusion.holder, reason: intrusion.reason });
          facts.push(f);
          lost.push(f);
        }
        if (r.ok) {
          facts.push(fact('Reacquired', at, { ...fields, owner: h.owner, mode: h.mode, source: h.source, ...(r.gen !== undefined ? { generation: r.gen } : {}), ...seen }));
        } else {
          const f = fact('LeaseLost', at, { ...fields, owner: h.owner, mode: h.mode, holder: r.holder, reason });
          facts.push(f);
          lost.push(f);
        }
      }
      if (r.ok) {
        const h: Held = {
          fd: r.fd,
          mode: res.mode,
          ref: res.ref,
          since: at,
          vms: new Map(holders.map((h) => [h.owner.uuid, { ...h.owner, since: h.since }])),
          ...(r.slot !== undefined ? { slot: r.slot } : {}),
          ...(r.gen !== undefined ? { gen: r.gen } : {}),
        };
        this.held.set(res.ref.id, h);
        this.noteListed(h);
        if (r.deferred && r.lease) this.keptProof.set(res.ref.id, { taker: { owner: first.owner, at }, size: r.lease.size, head: r.lease.head });
        else this.store?.store(fdName(res.ref.id), r.fd);
      }
    }
    return { facts, lost };
  }

  /** Re-taken locks whose own record waits for the start's LeaseLost to be journaled. */
  get keptProofCount(): number {
    return this.keptProof.size;
  }

  /**
   * The verifier's re-takes of `resources` (their facts just handed to the journal): `ticket` marks
   * those facts, so recordRetakes() can write each record once its own facts are journaled, not when
   * some other re-take's are (engine29, review28b). A re-take already tied keeps its mark.
   */
  tieRetakes(resources: Iterable<string>, ticket: number): void {
    for (const id of resources) {
      const u = this.keptProof.get(id);
      if (u?.running && u.ticket === undefined) this.keptProof.set(id, { ...u, ticket });
    }
  }

  /**
   * Once a re-take's facts (its LeaseLost among them) are journaled: write this host's record over
   * the proof of the intrusion the take found, and hand its descriptor to the store. Before that, a
   * SIGKILL (a crash loop, a start timeout, the OOM killer) would leave this host's own record and
   * nothing journaled: the next start would find nothing to report, and an adoption of a stored
   * descriptor checks no gap (review26a F3). `which`: every kept record (no facts wait at all),
   * the start's only ('start': the start's facts are journaled, the verifier's may wait: wait27), or
   * those `which` says are journaled: each record by its own facts (its ticket, tieRetakes()), so a
   * re-take whose facts still wait, or were never handed to the journal, writes nothing (engine29,
   * review28b). Returns how many were written.
   */
  recordRetakes(which?: 'start' | ((r: KeptRetake) => boolean)): number {
    let n = 0;
    for (const [id, u] of [...this.keptProof]) {
      if (which === 'start' && u.running) continue;
      if (typeof which === 'function' && !which({ resource: id, running: u.running === true, ...(u.ticket !== undefined ? { ticket: u.ticket } : {}) })) continue;
      this.keptProof.delete(id);
      const h = this.held.get(id);
      if (!h) continue;
      try {
        if (h.mode === 'exclusive') {
          if (h.gen !== undefined) this.putExclusive(h.fd, h.ref, h.gen, u.taker, u.size);
        } else {
          const slot = this.putShared(h.fd, h.ref, u.taker, [...h.vms.values()], u.head);
          if (slot !== undefined) this.held.set(id, { ...h, slot });
        }
      } catch {
        // The record is for other hosts' readers and the next start's check: the lock holds, and the
        // proof left in place is reported again (its LeaseLost is journaled already).
      }
      if (!u.stored) this.store?.store(fdName(id), h.fd);
      n++;
    }
    return n;
  }

  /**
   * At start, before reacquire(): hold again, through the very same open file descriptions, the
   * locks whose descriptors were handed back (systemd's store, a takeover). A description counts
   * only if the journal holds its resource, the descriptor's (dev, inode) is the lock file's on disk
   * now, it still holds the lock, and re-asserting the lock on it succeeds; anything else is closed
   * and removed from the store, and reacquire() re-takes the resource as after any restart (with the
   * gap check). Never unlocks: another copy of the description (the store's) must keep the lock.
   *
   * systemd keeps every descriptor it is given under its name, several under one name if so given,
   * and hands them back newest first, oldest first after a daemon-reload. A released lock's
   * description left there (an FDSTOREREMOVE that never arrived, review26a) holds no lock: it is
   * never adopted, and never taken for "another owner" of the lock its name shares with the live
   * description (that recorded a false LeaseLost and closed both, dropping the lock).
   */
  adopt(state: State, passed: readonly PassedFd[], at: string, how: 'adopted' | 'taken-over'): Adoption {
    const facts: NewFact[] = [];
    const lost: NewFact[] = [];
    const dropped: Array<{ name: string; reason: string }> = [];
    const byName = new Map<string, State['resources'] extends Map<string, infer R> ? R : never>();
    for (const res of state.resources.values()) byName.set(fdName(res.ref.id), res);
    let adopted = 0;
    const renamed: Array<{ disk: string; reason: string }> = [];
    const unproven: string[] = [];
    const close = (p: PassedFd, reason: string) => {
      dropped.push({ name: p.name, reason });
      try {
        fs.closeSync(p.fd);
      } catch {
        // already unusable
      }
    };
    // Each name's descriptors together, in the order handed back.
    const groups = new Map<string, PassedFd[]>();
    for (const p of passed) {
      const g = groups.get(p.name);
      if (g === undefined) groups.set(p.name, [p]);
      else g.push(p);
    }
    for (const [name, group] of groups) {
      const res = byName.get(name);
      if (!res || res.holders.size === 0) {
        for (const p of group) close(p, 'the journal holds no lock on this resource');
        this.store?.remove(name);
        continue;
      }
      const type = res.mode === 'exclusive' ? 'write' : 'read';
      const holders = [...res.holders.values()];
      // The description that holds the lock first, when one provably does: then a released one
      // before it is never met while the lock is held (by the live one).
      const candidates = group.length > 1 ? [...group].sort((a, b) => Number(this.holdsNow(b.fd, res.ref, res.mode)) - Number(this.holdsNow(a.fd, res.ref, res.mode))) : group;
      let kept: Held | undefined;
      let refused: { p: PassedFd; holder: HolderInfo } | undefined;
      let closedAny = false;
      for (const p of candidates) {
        if (kept !== undefined) {
          // A second description of one resource: the store gets the adopted one back below.
          close(p, 'a second descriptor of a resource already adopted');
          closedAny = true;
          continue;
        }
        let mismatch: string | null = null;
        let ino: string | undefined;
        let moved: string | undefined;
        try {
          const mine = this.native.fstatId(p.fd);
          ino = mine.ino;
          // A direct lock may be on a block device node (an LV, a LUN; review26a F4): its (dev, ino) is the node's.
          if (mine.type !== 'file' && !(mine.type === 'block' && res.ref.kind === 'direct')) mismatch = `the descriptor is not a regular file${res.ref.kind === 'direct' ? ' or a block device' : ''} (${mine.type})`;
          else if (res.ref.kind === 'direct' && res.ref.inode !== undefined) {
            // A disk locked in place is judged by the description itself: renamed under its lock, its
            // old path names another file or none while this description still locks the disk QEMU
            // writes; closing it (and re-taking the old path) would give the disk away (review27 F4).
            if (!sameIdentity(res.ref.inode, identityOfFd(p.fd))) mismatch = `the descriptor is on another disk than the one journaled (${res.ref.inode})`;
            else moved = this.pathMoved(res.ref);
          } else {
            const onDisk = fs.statSync(res.ref.id, { bigint: true });
            if (mine.dev !== u64(onDisk.dev) || mine.ino !== u64(onDisk.ino)) mismatch = 'the lock file on disk is another file now (replaced)';
          }
          // Nobody holds the lock, so neither does this description: a released lock's (its removal
          // never reached the store), or one whose lock the filesystem dropped. Re-asserting would
          // take it afresh with no gap check; reacquire() takes it and checks the gap. A renamed
          // direct disk is asked through the description's own inode, not its old path.
          if (mismatch === null && this.nobodyHolds(moved !== undefined ? `/proc/self/fd/${p.fd}` : res.ref.id)) mismatch = 'the descriptor holds no lock (a released lock\'s description, or its lock was lost)';
        } catch (e) {
          mismatch = `the lock file cannot be checked: ${errnoName(e)}`;
        }
        if (mismatch !== null) {
          close(p, mismatch);
          closedAny = true;
          continue;
        }
        // A disk locked in place, shared (review27c F3): another host's read lock keeps nobodyHolds()
        // false whether or not this description still holds its own, so a released one's description
        // (its FDSTOREREMOVE lost, or its lock dropped) would be re-asserted "as held throughout", and
        // a disk carries no record for a gap check: another host may have held it exclusively between
        // the release and now. Asked before the re-assert: the kernel's own list of this description's
        // locks (/proc/self/fdinfo) proves it held; without that proof, and with another holder there,
        // it is adopted (never closed: it may be the only copy of a running VM's lock) and counted as
        // unproven like a direct re-take after a gap.
        const doubt = res.ref.kind === 'direct' && res.mode === 'shared' && this.unprovenShared(p.fd);
        let granted: boolean;
        try {
          granted = this.native.ofdSetLk(p.fd, type, LOCK_START, LOCK_LEN);
        } catch (e) {
          close(p, `re-asserting the lock failed: ${errnoName(e)}`);
          closedAny = true;
          continue;
        }
        if (!granted) {
          // Another description holds it: another owner, unless it is another of these (tried next).
          refused ??= { p, holder: this.conflictOn(p.fd, type, res.ref.kind === 'file') };
          close(p, 'another owner holds the lock');
          closedAny = true;
          continue;
        }
        const vms = holders.map((h) => ({ ...h.owner, since: h.since }));
        let gen: number | undefined;
        let slot: number | undefined;
        // The description may be one whose take the journal never learnt: a start's re-take (or the
        // verifier's) whose facts waited for room on a full disk and died with the process that handed
        // it over (a takeover, a resume, systemd's store). Its lock file is checked against the journal
        // as a re-take's is (decision 0020): an intrusion in a gap the journal knows nothing of is a
        // loss, recorded, and its proof kept until then (recordRetakes()).
        const gap = res.ref.kind !== 'direct' ? this.adoptedGap(p.fd, ino, res.mode, holders) : undefined;
        if (res.ref.kind === 'file' && gap === undefined) {
          try {
            ({ gen, slot } = this.ownRecord(p.fd, res.ref.id, res.mode));
          } catch {
            // The record is for other hosts' readers; the lock is what counts.
          }
        }
        if (gap !== undefined && res.mode === 'exclusive') {
          // As a take would: the next generation after what the file and the journal have seen.
          const floor = Math.max(this.highestGen.get(res.ref.id) ?? 0, gap.lease.head ? 0 : (this.generationFloor?.(res.ref.canonical) ?? 0));
          gen = Math.max(nextGeneration(gap.lease.head), floor + 1);
          this.highestGen.set(res.ref.id, gen);
        }
        const h: Held = { fd: p.fd, mode: res.mode, ref: res.ref, since: holders[0]!.since, vms: new Map(vms.map((v) => [v.uuid, v])), ...(slot !== undefined ? { slot } : {}), ...(gen !== undefined ? { gen } : {}) };
        this.held.set(res.ref.id, h);
        this.noteListed(h);
        if (gap !== undefined) this.keptProof.set(res.ref.id, { taker: { owner: holders[0]!.owner, at }, size: gap.lease.size, head: gap.lease.head });
        else if (res.ref.kind === 'file') this.refreshRecord(h);
        adopted++;
        kept = h;
        if (moved !== undefined) renamed.push({ disk: res.ref.canonical, reason: moved });
        if (doubt) unproven.push(res.ref.canonical);
        const taken = gap !== undefined ? takeSeen(res.mode, { ...gap.lease, ino }) : {};
        for (const o of holders) {
          if (gap !== undefined) {
            const f = fact('LeaseLost', at, { ...resourceFields(res.ref, o.path), owner: o.owner, mode: o.mode, holder: gap.intrusion.holder, reason: `${gap.intrusion.reason} (found in the lock file of the description handed over, whose take the journal does not hold)` });
            facts.push(f);
            lost.push(f);
          }
          facts.push(fact('Reacquired', at, { ...resourceFields(res.ref, o.path), owner: o.owner, mode: o.mode, how, ...(gen !== undefined ? { generation: gen } : {}), ...taken }));
        }
      }
      // FDSTOREREMOVE drops every descriptor of the name: the adopted one is handed back at once.
      if (closedAny) {
        this.store?.remove(name);
        if (kept !== undefined) this.store?.store(name, kept.fd);
      }
      if (kept === undefined && refused !== undefined) {
        for (const h of holders) {
          const f = fact('LeaseLost', at, { ...resourceFields(res.ref, h.path), owner: h.owner, mode: h.mode, holder: refused.holder, reason: 'another owner held the lock when its handed-back descriptor was adopted' });
          facts.push(f);
          lost.push(f);
        }
        // reacquire() must not try again: the loss is recorded.
        this.settled.add(res.ref.id);
      }
    }
    return { facts, lost, adopted, dropped, ...(renamed.length > 0 ? { renamed } : {}), ...(unproven.length > 0 ? { unproven } : {}) };
  }

  /**
   * An adopted description's lock file against the journal's holders (gapIntruder): what the file
   * shows of an intrusion the journal never recorded, and the lease as read; undefined for none (or
   * a file that cannot be read: the lock is what counts, and the verifier reads it again).
   */
  private adoptedGap(fd: number, ino: string | undefined, mode: Mode, holders: ReadonlyArray<GapHolding>): { intrusion: GapIntrusion; lease: Lease } | undefined {
    let lease: Lease | null;
    try {
      lease = readLease(fd);
    } catch {
      return undefined;
    }
    // Not a lease (a disk image a name points to): no records, nothing to compare.
    if (lease === null) return undefined;
    const intrusion = gapIntruder({ size: lease.size, head: lease.head, ...(ino !== undefined ? { ino } : {}) }, this.host, mode, holders);
    return intrusion === undefined ? undefined : { intrusion, lease };
  }

  /** A shared holding with no slot to watch: whether the kernel lists its description's read lock (this.listed). */
  private noteListed(h: Held): void {
    if (h.mode !== 'shared' || (h.ref.kind === 'file' && h.slot !== undefined)) return;
    if (ofdHeldBy(h.fd) === true) this.listed.add(h);
  }

  /**
   * A handed-back shared description of a disk locked in place that cannot be shown to hold its lock:
   * not listed among its own locks by the kernel, while another description holds a read lock.
   * Any doubt (a check that fails) counts as unproven.
   */
  private unprovenShared(fd: number): boolean {
    try {
      return ofdHeldBy(fd) !== true && this.native.ofdGetLk(fd, 'write', LOCK_START, LOCK_LEN) !== null;
    } catch {
      return true;
    }
  }

  /**
   * Whether nobody at all holds a lock on byte 0 of `file`, asked from a fresh description that
   * takes nothing (a held lock of any description, this process's too, shows as a conflict).
   */
  private nobodyHolds(file: string): boolean {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      return this.native.ofdGetLk(fd, 'write', LOCK_START, LOCK_LEN) === null;
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * Whether this handed-back description provably holds its lock now (to try it first among several
   * of one name). Exclusive: nobody else conflicts with it while someone holds the lock. Shared (other
   * hosts' read locks hide its own): it holds the write lock of a record slot, which a shared holder's
   * description keeps beside its read lock (a fresh description sees that slot locked, it does not).
   */
  private holdsNow(fd: number, ref: ResourceRef, mode: Mode): boolean {
    const file = ref.id;
    try {
      // A disk locked in place has no record slots: the kernel's list of the description's locks says it.
      if (ref.kind === 'direct' && mode === 'shared') return ofdHeldBy(fd) === true;
      if (mode === 'exclusive') {
        if (this.native.ofdGetLk(fd, 'write', LOCK_START, LOCK_LEN) !== null) return false;
        return !this.nobodyHolds(file);
      }
      const fresh = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      try {
        for (let i = 0; i < SLOT_COUNT; i++) {
          const off = slotOffset(i);
          if (this.native.ofdGetLk(fresh, 'write', off, RECORD_SIZE) !== null && this.native.ofdGetLk(fd, 'write', off, RECORD_SIZE) === null) return true;
        }
        return false;
      } finally {
        fs.closeSync(fresh);
      }
    } catch {
      return false;
    }
  }

  /** The descriptors of every held lock, by store name (for a takeover). */
  descriptors(): PassedFd[] {
    return [...this.held].map(([id, h]) => ({ name: fdName(id), fd: h.fd, take: h }));
  }

  /**
   * In an adopted description: the generation our exclusive record carries, or the shared slot this
   * description locks. Read through the page-aligned buffer (decision 0008): the description is
   * O_DIRECT on a cluster filesystem, where a read into Buffer memory failed with EINVAL at random;
   * the adoption then knew no generation, refreshed no record (engine29, review28b).
   */
  private ownRecord(fd: number, file: string, mode: Mode): { gen?: number; slot?: number } {
    const buf = readAligned(fd, FILE_SPAN, 0);
    const n = buf.length;
    if (mode === 'exclusive') {
      const head = decodeExclusive(buf.subarray(0, Math.min(n, RECORD_SIZE)));
      return head && head.mode === 'exclusive' && isOwnHost(head.host, this.host) ? { gen: head.gen } : {};
    }
    for (let i = 0; i < SLOT_COUNT; i++) {
      const off = slotOffset(i);
      if (off >= n) break;
      const rec = decodeShared(buf.subarray(off, off + RECORD_SIZE));
      // Our own description's locks never conflict with it: a slot we lock reads as free from here.
      if (rec && isOwnHost(rec.host, this.host) && this.native.ofdGetLk(fd, 'write', off, RECORD_SIZE) === null) {
        let other: number | undefined;
        try {
          other = fs.openSync(file, fs.constants.O_RDONLY);
          if (this.native.ofdGetLk(other, 'write', off, RECORD_SIZE) !== null) return { slot: i };
        } catch {
          // fall through
        } finally {
          if (other !== undefined) fs.closeSync(other);
        }
      }
    }
    return {};
  }

  /**
   * The adopted record names the old process; write this one's pid (same generation). Through the
   * page-aligned buffer (decision 0008): the descriptor is O_DIRECT on a cluster filesystem (openFlags;
   * the flag is the open file description's, so a handed-back copy has it too), where a write from
   * Buffer memory failed with EINVAL whenever it crossed a page boundary (engine29, review28b).
   */
  private refreshRecord(h: Held): void {
    if (h.mode === 'shared') {
      this.rewriteSlot(h);
      return;
    }
    if (h.gen === undefined) return;
    const first = h.vms.values().next().value as (Owner & { since: string }) | undefined;
    if (!first) return;
    try {
      writeAligned(h.fd, encodeExclusive({ v: 1, mode: 'exclusive', gen: h.gen, host: this.host, pid: process.pid, since: h.since, disk: h.ref.canonical, vm: { uuid: first.uuid, ...(first.name ? { name: first.name } : {}) } }, this.recordBuf), 0);
      if (this.syncRecords) fs.fdatasyncSync(h.fd);
    } catch {
      // The record is for humans and other hosts' readers; the verifier checks the descriptor.
    }
  }

  /**
   * Check that every held lock still holds. A cluster filesystem can drop locks behind our back
   * (GlusterFS brick restart: EBADFD with strict-locks, or a silent reopen without the lock without
   * them; NFSv4 lost lease: EIO; a dead FUSE client: ENOTCONN; virtlockd unlinking the file: an
   * orphaned inode).
   *
   * `lost` only on evidence that the lock is gone: the file is gone or replaced, nothing holds it,
   * another description holds it, or our own description is dead (ENOTCONN, EBADFD: the filesystem
   * dropped its locks) while the file is reachable again. Anything else (EMFILE, EIO, a mount that
   * does not answer) is an `error`: it says nothing about the lock, so it is retried, not reported lost.
   */
  verify(): Verification[] {
    const out: Verification[] = [];
    for (const [id, h] of this.held) {
      const v = this.check(h);
      if (v !== null) out.push({ resource: id, ...v });
    }
    return out;
  }

  private check(h: Held): { status: 'lost' | 'error' | 'renamed'; reason: string } | null {
    const type = h.mode === 'exclusive' ? 'write' : 'read';
    const why = (what: string, e: unknown) => `${what}: ${errnoName(e)}`;
    // A disk locked in place and renamed under its lock: why its path no longer names it.
    let renamed: string | undefined;
    const lost = (reason: string) => ({ status: 'lost' as const, reason: renamed === undefined ? reason : `${reason} (${renamed})` });
    const error = (reason: string) => ({ status: 'error' as const, reason });
    let own: fs.BigIntStats | undefined;
    let ownError: unknown;
    try {
      own = fs.fstatSync(h.fd, { bigint: true });
      // A whole record, not one byte: under O_DIRECT a GlusterFS brick refuses unaligned sizes (EINVAL).
      readAligned(h.fd, RECORD_SIZE, 0);
    } catch (e) {
      ownError = e;
    }
    // A disk locked in place is its own lock file: renamed under its lock, its path names another
    // file or none while this description still locks the disk QEMU writes. It is judged through
    // that description (a second one opened on the same inode through /proc/self/fd), never by its
    // old path: that took it for a removed or replaced lock file and gave the disk away (review27 F5).
    let where = h.ref.id;
    if (h.ref.kind === 'direct') {
      if (own === undefined) {
        // The description cannot say which disk it is on: its path counts only while it names the journaled disk.
        const moved = this.pathMoved(h.ref);
        if (moved !== undefined) return error(`${why('the disk\'s descriptor failed', ownError)}, and ${moved}: its lock cannot be checked`);
      } else {
        renamed = this.pathLeft(h.ref.id, own);
        if (renamed !== undefined) where = `/proc/self/fd/${h.fd}`;
      }
    }
    let fd2: number;
    try {
      fd2 = fs.openSync(where, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (e) {
      // A disk locked in place renamed between the stat and the open: the next round tells.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && h.ref.kind === 'direct') return error(why(`the disk ${where} cannot be opened again`, e));
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        // Missing from a directory that is not our lockspace any more (not mounted): that says nothing about the lock.
        const away = this.lockspaceAway(h.ref);
        if (away !== undefined) return error(`the lock file cannot be reached: ${away}` + (ownError !== undefined ? `; ${why('the lock file descriptor failed', ownError)}` : ''));
        return lost('the lock file was removed (unlinked) behind the holder');
      }
      if (ownError !== undefined) return error(why('the lock file descriptor failed', ownError) + `, and ${why('the lock file cannot be opened again', e)}`);
      return error(why('the lock file cannot be opened again', e));
    }
    try {
      if (own !== undefined && fs.fstatSync(fd2, { bigint: true }).ino !== own.ino) return lost('the lock file was replaced (unlinked and created again)');
      // From a second description our own lock shows as a conflict; nothing there means it is gone.
      const c = this.native.ofdGetLk(fd2, 'write', LOCK_START, LOCK_LEN);
      if (c === null) return lost('the lock is gone: nothing holds the lock file any more');
      if (ownError !== undefined) {
        // Someone holds it, and our description cannot be used: a dead one (the filesystem says its
        // locks are gone) means that someone is another owner; any other error says nothing.
        if (DEAD_DESCRIPTION.has(errnoName(ownError))) return lost(why('the lock file descriptor is dead and another owner holds the lock', ownError));
        return error(why('the lock file descriptor failed', ownError));
      }
      // Shared: other hosts' read locks hide whether ours is still there; the write lock on our
      // record slot (same description) goes with it, so its absence is the evidence.
      if (h.mode === 'shared' && h.slot !== undefined && h.ref.kind === 'file' && this.native.ofdGetLk(fd2, 'write', slotOffset(h.slot), RECORD_SIZE) === null) {
        return lost('our shared (read) lock is gone; another holder\'s read lock remains');
      }
      // No slot to watch (a disk locked in place): the kernel's list of our description's locks, where
      // it listed the lock when taken (review27c F3: re-asserting it below would take it again unseen).
      if (h.mode === 'shared' && this.listed.has(h) && ofdHeldBy(h.fd) === false) {
        return lost('our shared (read) lock is gone (our descriptor holds it no more); another holder\'s read lock remains');
      }
    } catch (e) {
      return error(why('checking from a second description failed', e));
    } finally {
      try {
        fs.closeSync(fd2);
      } catch {
        // nothing to do
      }
    }
    try {
      // Re-asserting a lock this description holds is a no-op; if another description holds it
      // now, this fails: that is the evidence.
      if (!this.native.ofdSetLk(h.fd, type, LOCK_START, LOCK_LEN)) return lost('another owner holds the lock now');
    } catch (e) {
      return error(why('re-asserting the lock failed', e));
    }
    return renamed === undefined ? null : { status: 'renamed', reason: `${renamed}; its lock holds through its descriptor` };
  }

  /**
   * Take a lock again on a fresh description (after a loss), for the given local holders. The new
   * description is opened and locked BEFORE the old one is closed, so there is no moment at which
   * neither holds it. If the new one is refused and the old one can still re-assert the lock, the
   * lock was never lost: it is kept (`kept`). The old description is closed without touching its record.
   *
   * The new description's own record is not written here (wait27): what the take found stays in the
   * lock file (`keptProof`) until the caller has journaled this loss's LeaseLost and Reacquired, then
   * recordRetakes() writes it. Written at once, a SIGKILL while those facts wait (a full state
   * directory: they wait in memory) left the file naming this host at a generation above the
   * journal's, which the next start takes for its own lost facts, not an intrusion: the record
   * claimed more than the journal could vouch for. The descriptor goes to the store at once (the lock
   * must outlive a crash, invariant 9): an adoption of it checks the file against the journal.
   */
  retake(
    ref: ResourceRef,
    mode: Mode,
    vms: Array<Owner & { since: string }>,
    at: string,
  ): { ok: true; gen?: number; kept?: boolean; seen?: TakeSeen } | { ok: false; holder: HolderInfo; error?: string } {
    const old = this.held.get(ref.id);
    // A disk locked in place whose path no longer names it (renamed under its lock): taken again on
    // the disk itself, through a new description of the inode the old one is on; the file its old
    // path names now is another disk (review27 F5).
    const via = old !== undefined ? this.renamedVia(old) : undefined;
    // No description to reach the disk through (a re-take pending after its old description was
    // dropped, or one that cannot say which disk it is on), and its path names another disk: that
    // one is neither taken nor named as the holder of this one.
    const moved = via === undefined ? this.pathMoved(ref) : undefined;
    if (moved !== undefined) {
      if (old && this.stillHolds(old)) return { ok: true, kept: true, ...(old.gen !== undefined ? { gen: old.gen } : {}) };
      this.drop(ref.id);
      return { ok: false, holder: {}, error: `${moved}: it is not taken again by that name` };
    }
    let r: TakeResult;
    try {
      // What the take finds stays unwritten until its facts are journaled (recordRetakes(), wait27).
      r = this.take(ref, mode, { owner: vms[0]!, at }, vms, () => true, via);
    } catch (e) {
      if (old && this.stillHolds(old)) return { ok: true, kept: true, ...(old.gen !== undefined ? { gen: old.gen } : {}) };
      this.drop(ref.id);
      return { ok: false, holder: {}, error: (e as Error).message };
    }
    if (!r.ok) {
      if (old && this.stillHolds(old)) return { ok: true, kept: true, ...(old.gen !== undefined ? { gen: old.gen } : {}) };
      this.drop(ref.id);
      return r;
    }
    const taken: Held = {
      fd: r.fd,
      mode,
      ref,
      since: at,
      vms: new Map(vms.map((v) => [v.uuid, v])),
      ...(r.slot !== undefined ? { slot: r.slot } : {}),
      ...(r.gen !== undefined ? { gen: r.gen } : {}),
    };
    this.held.set(ref.id, taken);
    this.noteListed(taken);
    if (old) {
      // The old description may live on in systemd's store too: unlock it, not only close it.
      try {
        this.native.ofdSetLk(old.fd, 'unlock', 0, 0);
      } catch {
        // a dead cluster-filesystem descriptor holds nothing
      }
      this.store?.remove(fdName(ref.id));
      try {
        fs.closeSync(old.fd);
      } catch {
        // a dead cluster-filesystem descriptor: nothing left to release
      }
    }
    this.store?.store(fdName(ref.id), r.fd);
    if (r.deferred && r.lease) this.keptProof.set(ref.id, { taker: { owner: vms[0]!, at }, size: r.lease.size, head: r.lease.head, running: true, stored: true });
    else this.keptProof.delete(ref.id);
    return { ok: true, ...(r.gen !== undefined ? { gen: r.gen } : {}), seen: takeSeen(mode, r.lease) };
  }

  /**
   * The old description still holds the lock on the file the path names now (a disk locked in
   * place: on the journaled disk, whatever its path names now).
   */
  private stillHolds(h: Held): boolean {
    try {
      const same = h.ref.kind === 'direct' && h.ref.inode !== undefined ? sameIdentity(h.ref.inode, identityOfFd(h.fd)) : this.sameInode(h.fd, h.ref.id);
      return same && this.native.ofdSetLk(h.fd, h.mode === 'exclusive' ? 'write' : 'read', LOCK_START, LOCK_LEN);
    } catch {
      return false;
    }
  }

  /**
   * Close every description, without unlocking: at a stop or after a takeover. A lock whose
   * description has another copy (systemd's store, the daemon that took over) stays held; the
   * others go with the last close.
   */
  closeAll(): void {
    // A hand-over request is this process's alone: its wait ends with it.
    for (const [id, r] of [...this.requests]) this.withdraw(id, r.owner);
    this.keptProof.clear();
    this.priorHeads.clear();
    for (const [id, h] of [...this.held]) {
      this.held.delete(id);
      try {
        fs.closeSync(h.fd);
      } catch {
        // EBADF/EIO on a lost cluster-filesystem descriptor
      }
    }
  }

  /**
   * Let a lock go: a release, an abort (a take of a command refused or not journaled), a lost
   * description. It is unlocked (F_UNLCK drops it for every copy of the description, the store's
   * too) and removed from the store before the close.
   */
  private drop(id: string, how: 'release' | 'abort' | 'lost' = 'lost'): void {
    const h = this.held.get(id);
    if (!h) return;
    this.held.delete(id);
    // From here the journal (its facts are moved into SQLite within milliseconds) keeps the floor.
    this.highestGen.delete(id);
    const prior = this.priorHeads.get(id);
    this.priorHeads.delete(id);
    // A release says so in the record before the lock goes. An abort takes back what its take wrote:
    // the exclusive record it wrote over, its shared slot blanked (a dead holder's record a shared
    // take closed stays closed: a holder that is gone, not one that holds). A lost description
    // leaves the record (readers ignore a record no lock backs; a crash leaves it too).
    let record: { data: Buffer; offset: number; sync: boolean } | undefined;
    // A re-take's own record never written: the lock file keeps the intrusion's proof (recordRetakes()).
    const keptProof = this.keptProof.delete(id);
    if (how === 'abort' && h.ref.kind !== 'direct' && !keptProof) {
      try {
        if (h.mode === 'exclusive') {
          // Our record only if this take wrote one (not a lease: no record, nothing to put back).
          if (prior !== undefined) record = { data: prior === null ? emptySlot() : encodeExclusive(prior), offset: 0, sync: this.syncRecords };
        } else if (h.slot !== undefined) {
          record = { data: emptySlot(), offset: slotOffset(h.slot), sync: false };
        }
      } catch {
        // No record put back: the lock goes all the same.
      }
    } else if (how === 'release' && h.ref.kind !== 'direct' && !keptProof) {
      try {
        if (h.mode === 'exclusive' && h.gen !== undefined) {
          const last = h.vms.values().next().value as (Owner & { since: string }) | undefined;
          // Written under our lock on byte 0, so every taker after us reads it before it writes.
          const reserved = this.reservationOnDrop(h);
          record = { data: encodeExclusive(freeRecord(h.gen ?? 0, this.host, h.since, h.ref.canonical, last, reserved), this.recordBuf), offset: 0, sync: this.syncRecords };
        } else if (h.slot !== undefined) {
          record = { data: emptySlot(), offset: slotOffset(h.slot), sync: false };
        }
      } catch {
        // No record: the lock goes all the same.
      }
    }
    if (this.oneCall) {
      // Record, unlock (and close, unless the store must hear of it first) in one call; it never
      // throws for the descriptor's own failures: a broken cluster-filesystem descriptor holds nothing.
      this.native.releaseLockFile(h.fd, record?.data ?? null, record?.offset ?? 0, record?.sync ?? false, this.store === undefined);
      if (this.store === undefined) return;
      this.store.remove(fdName(id));
      try {
        fs.closeSync(h.fd);
      } catch {
        // EBADF/EIO on close of a lost cluster-filesystem fd: the lock is gone either way.
      }
      return;
    }
    if (record !== undefined) {
      try {
        writeAligned(h.fd, record.data, record.offset);
        if (record.sync) fs.fdatasyncSync(h.fd);
      } catch {
        // A broken cluster-filesystem descriptor: the lock is gone anyway.
      }
    }
    try {
      this.native.ofdSetLk(h.fd, 'unlock', 0, 0);
    } catch {
      // A broken descriptor holds nothing.
    }
    this.store?.remove(fdName(id));
    try {
      fs.closeSync(h.fd);
    } catch {
      // EBADF/EIO on close of a lost cluster-filesystem fd: the lock is gone either way.
    }
  }

  private openFlags(ref: ResourceRef, mode: Mode): number {
    const { O_RDWR, O_RDONLY, O_CREAT, O_DIRECT } = fs.constants;
    if (ref.kind === 'direct') return mode === 'exclusive' ? O_RDWR : O_RDONLY;
    // On a cluster filesystem the record must bypass this client's cache (see syncRecords).
    return (ref.create === false ? O_RDWR : O_RDWR | O_CREAT) | (this.syncRecords ? O_DIRECT : 0);
  }

  /**
   * One attempt's open + lock + checks through the single native call (decision 0019): the same
   * flags, create rule, checks and error wording as lockJs, which stays for an injected binding.
   */
  private lockOneCall(ref: ResourceRef, mode: Mode, via?: string): NativeTake {
    const flags = this.openFlags(ref, mode);
    const records = ref.kind !== 'direct';
    const how = { write: mode === 'exclusive', blockDevice: !records, identity: records, lease: records };
    try {
      if (via !== undefined) return takeNative(this.native, via, flags, how);
      const { O_CREAT } = fs.constants;
      // A lock file that does not exist yet is created only in the pinned lockspace (openForTake's rule).
      if ((flags & O_CREAT) === 0 || !this.lockspaceIds.has(path.dirname(ref.id))) return takeNative(this.native, ref.id, flags, how);
      const first = takeNative(this.native, ref.id, flags & ~O_CREAT, { ...how, missingOk: true });
      if (first.status !== 'missing') return first;
      const away = this.lockspaceAway(ref);
      if (away !== undefined) throw new Error(away);
      return takeNative(this.native, ref.id, flags, how);
    } catch (e) {
      if (e instanceof BadInputError) throw e;
      const syscall = (e as NodeJS.ErrnoException).syscall;
      if (syscall === 'fcntl(F_OFD_SETLK)') throw new VmlockdError('VMLOCKD_ERR_IO', `cannot lock ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
      if (syscall === 'read') throw new VmlockdError('VMLOCKD_ERR_IO', `cannot write the holder record of ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
      throw new VmlockdError('VMLOCKD_ERR_IO', `cannot open lock file ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** One attempt's open + lock + inode check, one fs call at a time (an injected native binding). */
  private lockJs(ref: ResourceRef, mode: Mode, via?: string): NativeTake {
    let fd: number;
    try {
      fd = via !== undefined ? openLockFile(via, this.openFlags(ref, mode), { blockDevice: ref.kind === 'direct' }) : this.openForTake(ref, this.openFlags(ref, mode));
    } catch (e) {
      if (e instanceof BadInputError) throw e;
      throw new VmlockdError('VMLOCKD_ERR_IO', `cannot open lock file ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
    }
    let granted: boolean;
    try {
      granted = this.native.ofdSetLk(fd, mode === 'exclusive' ? 'write' : 'read', LOCK_START, LOCK_LEN);
    } catch (e) {
      fs.closeSync(fd);
      throw new VmlockdError('VMLOCKD_ERR_IO', `cannot lock ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
    }
    if (!granted) return { status: 'busy', fd };
    if (ref.kind !== 'direct' && !this.sameInode(fd, ref.id)) {
      fs.closeSync(fd);
      return { status: 'replaced' };
    }
    if (ref.kind === 'direct') return { status: 'taken', fd };
    let ino: string | undefined;
    try {
      ino = u64(fs.fstatSync(fd, { bigint: true }).ino);
    } catch {
      // unknown: the start's gap check then has no inode to compare
    }
    return { status: 'taken', fd, ...(ino !== undefined ? { ino } : {}) };
  }

  /**
   * `defer`: asked with what the lock file holds, under the lock just taken and before this host's
   * record is written; true: write nothing now (the result says `deferred`; recordRetakes() writes it).
   * `via`: the path to open instead of ref.id (a disk locked in place and renamed: renamedVia()).
   */
  private take(ref: ResourceRef, mode: Mode, taker: Taker, vms?: Array<Owner & { since: string }>, defer?: (seen: LeaseSeen) => boolean, via?: string): TakeResult {
    const type = mode === 'exclusive' ? 'write' : 'read';
    // virtlockd unlinks an indirect lease file when it releases it; if that happens between our
    // open and our lock, we would hold a lock on an orphaned inode. Re-check and retry.
    for (let attempt = 0; attempt < 5; attempt++) {
      const t = this.oneCall ? this.lockOneCall(ref, mode, via) : this.lockJs(ref, mode, via);
      if (t.status === 'replaced' || t.status === 'missing') continue;
      const fd = t.fd;
      if (t.status === 'busy') {
        const holder = this.conflictOn(fd, type, ref.kind !== 'direct');
        fs.closeSync(fd);
        // Nobody holds it by the time we look: a holder of an instant (another host's taker that
        // held byte 0 only to read a migration's reservation, and gave it back; on a cluster
        // filesystem each lock call is a round trip, so that instant is long). Try again.
        if (holder.mode === undefined && attempt < 4) continue;
        return { ok: false, holder };
      }
      if (ref.kind === 'direct') {
        // The disk its path names must be the one resolved and journaled: a disk renamed (or
        // replaced) under its lock leaves its path to another file, which is not the VM's disk and
        // must not be locked in its place (review27 F4).
        if (ref.inode !== undefined && !this.isDisk(fd, ref.inode)) {
          fs.closeSync(fd);
          throw new VmlockdError('VMLOCKD_ERR_IO', `${via ?? ref.id} is not the disk ${ref.canonical} was (${ref.inode}): renamed or replaced`);
        }
        return { ok: true, fd };
      }
      let rec: ReturnType<Locker['writeRecord']>;
      try {
        rec = this.writeRecord(fd, ref, mode, taker, vms ?? [{ ...taker.owner, since: taker.at }], t.lease, defer && ((l) => defer({ size: l.size, head: l.head, ino: t.ino })));
      } catch (e) {
        fs.closeSync(fd);
        throw new VmlockdError('VMLOCKD_ERR_IO', `cannot write the holder record of ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
      }
      if ('reserved' in rec) {
        // Reserved for a migration's destination: our lock on byte 0 goes with this description.
        fs.closeSync(fd);
        return { ok: false, holder: reservationHolder(rec.reserved) };
      }
      const lease = rec.lease === null ? null : { size: rec.lease.size, head: rec.lease.head, ino: t.ino };
      // Plain stores, not spreads (issue 13: the take's hot path).
      const r: { -readonly [K in keyof Taken]: Taken[K] } = { ok: true, fd, slot: rec.slot, gen: rec.gen, lease };
      if (rec.deferred) r.deferred = true;
      if (rec.prior !== undefined) r.prior = rec.prior;
      return r;
    }
    throw new VmlockdError('VMLOCKD_ERR_IO', `lock file ${ref.id} kept being replaced while locking it`);
  }

  /**
   * Under the lock just taken: bump the generation (exclusive) or claim a shared slot; or, when the
   * free record reserves the disk for a migration's destination that still waits (and that is not
   * this taker), write nothing and say so.
   */
  private writeRecord(
    fd: number,
    ref: ResourceRef,
    mode: Mode,
    taker: Taker,
    vms: Array<Owner & { since: string }>,
    read?: Lease | null,
    defer?: (lease: Lease) => boolean,
  ): { gen?: number; slot?: number; lease: Lease | null; deferred?: boolean; prior?: ExclusiveRecord | null } | { reserved: Reservation } {
    // Not a lease (a disk image a lockspace name points to): the lock alone, no record, no generation.
    // `read`: the lease as the native take read it, under the lock just taken.
    const lease = read === undefined ? readLease(fd) : read;
    if (lease === null) return { lease };
    // The head block's record as readLease decoded it (none in an empty file or a blank head).
    const prev = lease.head;
    const who = { host: this.host, uuid: taker.owner.uuid };
    const reserved = prev?.reserved
      ? reservationAgainst(prev, who, this.liveRequest(fd), this.now())
      : // A holder that died mid hand-over wrote no reservation; its destination's request stands for one.
        prev?.mode === 'exclusive'
        ? reservationByRequest(prev, who, this.liveRequest(fd), this.now())
        : undefined;
    if (reserved) return { reserved };
    const deferred = defer?.(lease) === true;
    if (mode === 'exclusive') {
      // Generations never go backwards: a deleted or damaged record does not restart the count.
      const floor = Math.max(this.highestGen.get(ref.id) ?? 0, prev ? 0 : (this.generationFloor?.(ref.canonical) ?? 0));
      const gen = Math.max(nextGeneration(prev), floor + 1);
      this.highestGen.set(ref.id, gen);
      if (deferred) return { gen, lease, deferred };
      try {
        this.putExclusive(fd, ref, gen, taker, lease.size);
      } catch (e) {
        // Written, perhaps, and then the grow or the sync failed: the caller closes the description,
        // and a record naming this host must not outlive it (the next start's found scan would
        // take it as a grant the journal forgot, review26d F4). What was there goes back.
        try {
          this.putRecord(fd, prev === undefined ? emptySlot() : encodeExclusive(prev), 0, 0);
        } catch {
          // The descriptor cannot write at all: then our record did not reach the file either.
        }
        throw e;
      }
      return { gen, lease, prior: prev ?? null };
    }
    if (deferred) return { lease, deferred };
    const slot = this.putShared(fd, ref, taker, vms, prev);
    return slot === undefined ? { lease } : { slot, lease };
  }

  /** This host's exclusive record, at generation `gen`, in a lock file of `size` bytes (before it). */
  private putExclusive(fd: number, ref: ResourceRef, gen: number, taker: Taker, size: number): void {
    // Room for a migration destination's hand-over request from the start: a cluster
    // filesystem's client caches the file's size, and a direct read beyond the end it believes
    // in returns nothing, so the release would miss a request another mount just wrote there.
    // (readLease read the whole file: its size is the file's.)
    this.putRecord(fd, encodeExclusive({ v: 1, mode: 'exclusive', gen, host: this.host, pid: process.pid, since: taker.at, disk: ref.canonical, vm: taker.owner }, this.recordBuf), 0, size < LEASE_SPAN ? LEASE_SPAN : 0);
  }

  /** A shared take's records under its read lock (`prev`: the exclusive record it found): the slot claimed, if any was free. */
  private putShared(fd: number, ref: ResourceRef, taker: Taker, vms: Array<Owner & { since: string }>, prev: ExclusiveRecord | undefined): number | undefined {
    if (prev?.mode === 'exclusive') {
      // The record says "exclusive" but our read lock was granted: its holder is gone without a
      // release (its daemon died, and nothing kept the lock). Close it, as ours, keeping the
      // generation: that holder's next start must see that another host came between (decision
      // 0020); untouched, the record would look as if nobody had. Other shared takers of this
      // instant write the same kind of record; no exclusive writer can come while we hold byte 0.
      this.putRecord(fd, encodeExclusive({ v: 1, mode: 'free', gen: prev.gen, host: this.host, pid: process.pid, since: taker.at, disk: ref.canonical, vm: taker.owner, took: 'shared' }), 0, 0);
    }
    for (let i = 0; i < SLOT_COUNT; i++) {
      if (!this.native.ofdSetLk(fd, 'write', slotOffset(i), RECORD_SIZE)) continue;
      this.putRecord(fd, encodeShared({ v: 1, mode: 'shared', host: this.host, pid: process.pid, since: taker.at, disk: ref.canonical, vms }), slotOffset(i), 0);
      return i;
    }
    // More than SLOT_COUNT hosts share this disk: the lock holds, only the record is missing.
    return undefined;
  }

  /** A take's record: written (page-aligned), the file grown to `growTo` when > 0, synced when syncRecords. */
  private putRecord(fd: number, data: Buffer, offset: number, growTo: number): void {
    if (this.oneCall) {
      this.native.writeRecord(fd, data, offset, growTo, this.syncRecords);
      return;
    }
    writeAligned(fd, data, offset);
    if (growTo > 0) fs.ftruncateSync(fd, growTo);
    if (this.syncRecords) fs.fdatasyncSync(fd);
  }

  private rewriteSlot(h: Held): void {
    if (h.slot === undefined || h.ref.kind === 'direct') return;
    try {
      writeAligned(h.fd, encodeShared({ v: 1, mode: 'shared', host: this.host, pid: process.pid, since: h.since, disk: h.ref.canonical, vms: [...h.vms.values()] }), slotOffset(h.slot));
    } catch {
      // The record is for humans; the verifier catches a broken descriptor.
    }
  }

  /** Add a local owner to a shared holding and its record; false when it was there already (or nothing is held). */
  private joinRecord(id: string, owner: Owner, at: string): boolean {
    const h = this.held.get(id);
    if (!h) return false;
    const added = !h.vms.has(owner.uuid);
    h.vms.set(owner.uuid, { ...owner, since: at });
    this.rewriteSlot(h);
    return added;
  }

  private leaveRecord(id: string, ownerUuid: string): void {
    const h = this.held.get(id);
    if (!h || !h.vms.delete(ownerUuid)) return;
    this.rewriteSlot(h);
  }

  /** Would `mode` be granted now? Looks from a fresh description that takes no lock. */
  private probe(ref: ResourceRef, mode: Mode, owner: Owner): HolderInfo | null {
    const mine = this.held.get(ref.id);
    if (mine) {
      if (mine.mode === 'exclusive' || mode === 'exclusive') return { host: this.host, mode: mine.mode };
      return null;
    }
    let fd: number;
    try {
      // As a take opens it: never through a symlink under a lock file's name, never a FIFO or a
      // device (an open alone may act on one), so the answer is the one a take would give.
      fd = openLockFile(ref.id, fs.constants.O_RDONLY, { blockDevice: ref.kind === 'direct' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      if (e instanceof VmlockdError) throw e;
      throw new VmlockdError('VMLOCKD_ERR_IO', `cannot open lock file ${ref.id}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const c = this.native.ofdGetLk(fd, mode === 'exclusive' ? 'write' : 'read', LOCK_START, LOCK_LEN);
      if (c) return this.conflictOn(fd, mode === 'exclusive' ? 'write' : 'read', ref.kind !== 'direct');
      if (ref.kind === 'direct') return null;
      // Free: but perhaps reserved for a migration's destination.
      const prev = decodeExclusive(readAligned(fd, RECORD_SIZE, 0));
      const reserved = prev?.reserved ? reservationAgainst(prev, { host: this.host, uuid: owner.uuid }, this.liveRequest(fd), this.now()) : undefined;
      return reserved ? reservationHolder(reserved) : null;
    } finally {
      fs.closeSync(fd);
    }
  }

  private conflictOn(fd: number, type: 'read' | 'write', records: boolean): HolderInfo {
    try {
      const c = this.native.ofdGetLk(fd, type, LOCK_START, LOCK_LEN);
      if (!c) return {};
      const mode: Mode = c.type === 'write' ? 'exclusive' : 'shared';
      if (!records) return { mode };
      const found = readHolders(this.native, fd, c.type === 'write' ? 'exclusive' : 'shared', c.pid);
      return found.holders[0] ?? { mode };
    } catch {
      return {};
    }
  }

  /** Whether a description is on the disk of this identity. */
  private isDisk(fd: number, identity: string): boolean {
    try {
      return sameIdentity(identity, identityOfFd(fd));
    } catch {
      return false;
    }
  }

  private sameInode(fd: number, p: string): boolean {
    try {
      return fs.fstatSync(fd).ino === fs.statSync(p).ino;
    } catch {
      return false;
    }
  }
}

/**
 * Read the holders a lock file's records name, trusting only records backed by a lock.
 * `lockPid` is what F_OFD_GETLK said of the lock on byte 0: -1 for an OFD lock (a vmlockd), a pid
 * for a classic POSIX lock (virtlockd, which writes no record). An exclusive record under a classic
 * lock is a dead vmlockd's leftover (SIGKILL leaves it), not the holder's: it names nobody.
 */
function readHolders(nat: NativeBinding, fd: number, state: 'exclusive' | 'shared', lockPid: number): { holders: HolderInfo[]; disk?: string; generation: number } {
  const buf = readAligned(fd, FILE_SPAN, 0);
  const n = buf.length;
  const head = decodeExclusive(buf.subarray(0, Math.min(n, RECORD_SIZE)));
  const generation = head?.gen ?? 0;
  const disk = head?.disk || undefined;
  if (state === 'exclusive') {
    // A record says "exclusive" only while its writer held the write lock; a record left "free"
    // (or none) under a write lock means a holder that writes none: virtlockd.
    // A free record reserved for a migration's destination, under a vmlockd's lock: a taker is
    // reading the reservation this very moment (refused and about to let go, or the destination
    // about to write its own record). Name the reservation: it is whom the disk goes to.
    const holders = !head || lockPid >= 0 ? [] : head.mode === 'exclusive' ? holdersOfExclusive(head) : head.reserved ? [reservationHolder(head.reserved)] : [];
    return { holders, generation, ...(disk ? { disk } : {}) };
  }
  const holders: HolderInfo[] = [];
  let sharedDisk = disk;
  for (let i = 0; i < SLOT_COUNT; i++) {
    const off = slotOffset(i);
    if (off >= n) break;
    if (!nat.ofdGetLk(fd, 'write', off, RECORD_SIZE)) continue;
    const rec = decodeShared(buf.subarray(off, off + RECORD_SIZE));
    if (!rec) continue;
    holders.push(...holdersOfShared(rec));
    sharedDisk ||= rec.disk || undefined;
  }
  return { holders, generation, ...(sharedDisk ? { disk: sharedDisk } : {}) };
}

/** The hand-over request of a lock file, if it stands (its bytes locked by some description). */
function readRequest(nat: NativeBinding, fd: number): HandOverRequest | undefined {
  try {
    if (!nat.ofdGetLk(fd, 'write', HANDOVER_OFFSET, RECORD_SIZE)) return undefined;
    return decodeRequest(readAligned(fd, RECORD_SIZE, HANDOVER_OFFSET));
  } catch {
    return undefined;
  }
}

/**
 * Who holds a lock file, read from a fresh read-only description that takes no lock, so it never
 * disturbs any lock of this process (OFD locks survive the close of other descriptions).
 */
export function inspectLockFile(file: string, opts: { direct?: boolean } = {}, nat: NativeBinding = defaultNative): Inspection {
  let fd: number;
  try {
    // direct: bypass this client's page cache on a cluster filesystem, or we may read an old record.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | (opts.direct ? fs.constants.O_DIRECT : 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { file, state: 'free', generation: 0, holders: [] };
    throw new VmlockdError('VMLOCKD_ERR_IO', `cannot open lock file ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const c = nat.ofdGetLk(fd, 'write', LOCK_START, LOCK_LEN);
    const state = c === null ? 'free' : c.type === 'write' ? 'exclusive' : 'shared';
    if (state === 'free') {
      const head = readAligned(fd, RECORD_SIZE, 0);
      const n = head.length;
      const rec = decodeExclusive(head.subarray(0, n));
      // A reservation as any other host's taker would see it now (nobody is the destination here).
      const reserved = rec?.reserved ? reservationAgainst(rec, { host: '', uuid: '' }, readRequest(nat, fd), Date.now()) : undefined;
      return { file, state, generation: rec?.gen ?? 0, holders: [], ...(rec?.disk ? { disk: rec.disk } : {}), ...(reserved ? { reserved } : {}) };
    }
    const found = readHolders(nat, fd, state, c?.pid ?? -1);
    return { file, state, generation: found.generation, holders: found.holders, ...(found.disk ? { disk: found.disk } : {}) };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A bigint stat's dev or ino as the unsigned decimal the native calls give (fstatId, the take's
 * inode). Node's bigint stats are signed 64-bit: a GlusterFS FUSE inode (from the file's GFID, whose
 * UUID variant bits set bit 63) comes out negative, and compared as text with the native unsigned
 * one every handed-back descriptor on GlusterFS looked "replaced" (test/e2e/gluster-adopt.e2e.ts).
 */
/**
 * Whether this open file description holds an OFD lock on byte 0, as the kernel lists it in
 * /proc/self/fdinfo (`lock: 1: OFDLCK ADVISORY  READ -1 fe:00:123 0 0`, review27c F3); undefined when
 * that cannot be read. A filesystem that keeps its locks outside the kernel's list (a FUSE client
 * such as GlusterFS's) lists none: false there proves nothing, true always does.
 */
export function ofdHeldBy(fd: number): boolean | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  } catch {
    return undefined;
  }
  for (const m of text.matchAll(/^lock:\s+\d+:\s+OFDLCK\s+\S+\s+(?:READ|WRITE)\s+\S+\s+\S+\s+(\d+)\s+(\d+|EOF)\s*$/gm)) {
    const start = Number(m[1]);
    if (start <= LOCK_START && (m[2] === 'EOF' || Number(m[2]) >= LOCK_START + LOCK_LEN - 1)) return true;
  }
  return false;
}

export function u64(v: bigint): string {
  return BigInt.asUintN(64, v).toString();
}

// os.constants.errno lacks some Linux errnos a cluster filesystem returns (EBADFD is 77).
const ERRNO_NAMES = new Map<number, string>([[77, 'EBADFD'], ...Object.entries(os.constants.errno).map(([name, n]) => [n, name] as [number, string])]);

/** libuv names only the errnos it knows: GlusterFS's EBADFD (77) arrives as "Unknown system error -77". */
function errnoName(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (typeof err.errno === 'number' && (!err.code || err.code.startsWith('Unknown'))) return ERRNO_NAMES.get(-err.errno) ?? `errno ${-err.errno}`;
  return err.code ?? err.message;
}

/** A journaled holding, as the start's gap check reads it (state.ts Holder). */
export interface GapHolding {
  readonly generation?: number;
  readonly headGeneration?: number;
  readonly headStamp?: string;
  readonly lockIno?: string;
}

/** What the start's gap check found: whom to name as the holder, and the LeaseLost reason. */
export interface GapIntrusion {
  readonly holder: HolderInfo;
  readonly reason: string;
}

const RAN_ON = `if this VM ran on meanwhile, the disk was not its alone; ${TAKEN_AGAIN}`;
const MAY_HAVE = `whether another host held the disk meanwhile cannot be told: if this VM ran on meanwhile, its exclusion was not continuous; ${TAKEN_AGAIN}`;

function named(r: ExclusiveRecord, mode: Mode): HolderInfo {
  return { host: r.host, mode, since: r.since, generation: r.gen, pid: r.pid, ...(r.vm ? { owner: r.vm } : {}) };
}

/**
 * The start's proof that a lock this host held (journaled; its daemon died and the lock went with
 * it) was not this host's alone while vmlockd was down, from what the re-take found (`found`: the
 * lock file's size, exclusive record and inode before the re-take wrote its own record; null when
 * it carries no records, undefined for a disk locked in place) against what the takes journaled
 * (`holders`). Decision 0020. Held `mode`:
 * - exclusive: nobody may write the exclusive record while this host holds the lock, and a shared
 *   taker closes a dead holder's "exclusive" record as its own (`took: 'shared'`); so a record of
 *   another host is an intruder, whatever its generation: above the journaled one, an exclusive
 *   grant; `took: 'shared'`, a shared one; otherwise the file was replaced or reset (an intruder's
 *   generation restarts low on a new file).
 * - shared: no exclusive grant can move the record's generation while this host holds the lock; a
 *   generation above the one the take saw (`headGeneration`) is another host's exclusive grant.
 * - either: another inode than the take's (`lockIno`), an empty file (removed and created again),
 *   a generation below the journaled one, or no records any more: the exclusion was not continuous.
 * A record of this host's own is never an intruder (the host file's lock makes this daemon the
 * host's only writer; a generation above the journal's is a fact the journal lost). A journal
 * without these fields (written before them) proves nothing, as before. A grant to the same VM on
 * another host counts too: the record cannot tell a migration from a second instance of the VM
 * started there (an HA restart: split brain), and a later grant to the same VM would hide an
 * earlier one to another VM (review23c).
 */
export function gapIntruder(found: LeaseSeen | null | undefined, host: string, mode: Mode, holders: ReadonlyArray<GapHolding>): GapIntrusion | undefined {
  const gens = holders.map((h) => (mode === 'exclusive' ? h.generation : h.headGeneration)).filter((g): g is number => g !== undefined);
  const inos = holders.map((h) => h.lockIno).filter((i): i is string => i !== undefined);
  if (found === undefined || (gens.length === 0 && inos.length === 0)) return undefined;
  if (found === null) {
    if (gens.length === 0) return undefined;
    return { holder: {}, reason: `the lock file no longer holds vmlockd's records (rewritten while vmlockd was down): ${MAY_HAVE}` };
  }
  const head = found.head;
  const other = head !== undefined && !isOwnHost(head.host, host) ? named(head, head.took === 'shared' ? 'shared' : 'exclusive') : {};
  if (found.ino !== undefined && inos.length > 0 && !inos.includes(found.ino)) {
    return { holder: other, reason: `the lock file was replaced while vmlockd was down (inode ${found.ino}, the take's was ${inos[0]})${head && !isOwnHost(head.host, host) ? `; it names host ${head.host}, generation ${head.gen}` : ''}: ${MAY_HAVE}` };
  }
  if (gens.length === 0) return undefined;
  const low = Math.min(...gens);
  const high = Math.max(...gens);
  if (found.size === 0) return { holder: {}, reason: `the lock file was removed (or emptied) while vmlockd was down, and created again by this re-take: ${MAY_HAVE}` };
  const reset = (g: number) => ({ holder: other, reason: `the lock file was replaced or reset while vmlockd was down (its record ${head && !isOwnHost(head.host, host) ? `names host ${head.host} at ` : 'carries '}generation ${g}, below the journaled ${low}): ${MAY_HAVE}` });
  if (mode === 'exclusive') {
    if (head === undefined) return { holder: {}, reason: `the lock file's exclusive record was erased while vmlockd was down: ${MAY_HAVE}` };
    if (isOwnHost(head.host, host)) return head.gen < low ? reset(head.gen) : undefined;
    if (head.took === 'shared') return { holder: other, reason: `taken shared by another owner while vmlockd was down (host ${head.host}${head.vm ? `, VM ${head.vm.name ?? head.vm.uuid}` : ''}) and released since: ${RAN_ON}` };
    if (head.gen > high) return { holder: other, reason: `taken by another owner while vmlockd was down (host ${head.host}, generation ${head.gen}) and released since: ${RAN_ON}` };
    if (head.gen < low) return reset(head.gen);
    // Not below: only this host could have written the record since its take (review24a F4).
    return { holder: other, reason: `the lock file's exclusive record names host ${head.host} at generation ${head.gen}, not this host (${host}), though only this host could write it while it held the lock: the lock file was replaced or reset while vmlockd was down, or this host's host_id changed since its take (then the record is its own): ${MAY_HAVE}` };
  }
  const g = head?.gen ?? 0;
  if (g > high) {
    if (head === undefined || isOwnHost(head.host, host)) return undefined;
    return { holder: named(head, 'exclusive'), reason: `taken exclusive by another owner while vmlockd was down (host ${head.host}, generation ${head.gen}) and released since: ${RAN_ON}` };
  }
  if (g < low) return reset(g);
  // The same generation, but another write of the record than the take saw: the file was reset or
  // created again and granted exclusive at that very generation (review24a F3). Another shared
  // take's closing write (took: shared) is no intrusion.
  const stamps = holders.map((h) => h.headStamp).filter((t): t is string => t !== undefined);
  if (stamps.length === 0 || head?.took === 'shared') return undefined;
  const now = head ? headStamp(head) : '';
  if (stamps.includes(now)) return undefined;
  return {
    holder: head && !isOwnHost(head.host, host) ? named(head, 'exclusive') : {},
    reason: `the lock file's exclusive record was rewritten while vmlockd was down (${head ? `it names host ${head.host} since ${head.since}` : 'it is gone'} at generation ${g}; the take saw ${stamps[0] === '' ? 'none' : stamps[0]}): the lock file was reset or replaced, and ${MAY_HAVE}`,
  };
}

/**
 * A release's free record. Plain stores, no spreads (issue 13: every release); encodeExclusive takes
 * only the vm's uuid and name, and leaves out what is absent, as the spreads did.
 */
function freeRecord(gen: number, host: string, since: string, disk: string, last: Owner | undefined, reserved: Reservation | undefined): ExclusiveRecord {
  const r: { -readonly [K in keyof ExclusiveRecord]: ExclusiveRecord[K] } = { v: 1, mode: 'free', gen, host, pid: process.pid, since, disk };
  // A VM without a name is recorded by its uuid alone (an empty name too, as before).
  if (last !== undefined) r.vm = last.name ? last : { uuid: last.uuid };
  if (reserved !== undefined) r.reserved = reserved;
  return r;
}
