// The daemon's state: the fold of the journal's facts. `evolve` is deterministic and does no I/O.
import type { Fact, LibvirtRef, NewFact, ResourceFields, TakeSeen } from './facts.js';
import type { Mode, Owner, ResourceRef } from './types.js';

export interface Holder {
  readonly owner: Owner;
  readonly mode: Mode;
  readonly since: string;
  /** The disk path as this holder's requester wrote it. */
  readonly path: string;
  readonly source: string;
  /** Fencing generation of an exclusive grant (file lockspaces). */
  readonly generation?: number;
  /** What the take saw of the lock file (TakeSeen): the next start's gap check compares it (decision 0020). */
  readonly lockIno?: string;
  readonly headGeneration?: number;
  readonly headStamp?: string;
}

export interface ResourceState {
  readonly ref: ResourceRef;
  readonly mode: Mode;
  /** Keyed by owner uuid. More than one only for shared locks. */
  readonly holders: Map<string, Holder>;
}

export interface State {
  /** Keyed by resource id (the lock file path). */
  readonly resources: Map<string, ResourceState>;
  /** Every owner seen, keyed by uuid. */
  readonly owners: Map<string, Owner>;
  /**
   * "dev:ino" of held disks -> ids of the resources recorded with it, so an alias the path rules
   * cannot see (a hard link, a bind mount) maps to the same resource. A set, not one id: two
   * resources can carry one inode (a disk deleted under its lock whose inode was reused, a journal
   * written before aliases were unified), and releasing one must not unindex the other.
   */
  readonly byInode: Map<string, Set<string>>;
  /**
   * Held resources whose disk had no identity when taken (it did not exist yet: --create, a direct
   * lease named ahead of its image) and whose lock is not the disk's name itself: until the image
   * exists and its identity is learnt (IdentityLearned), an alias of it cannot be told by inode, so
   * every grant re-checks these paths first (src/engine/identity-learn.ts).
   */
  readonly unidentified: Set<string>;
  /** Owner uuid -> ids of the resources it holds, so a release does not scan every lock. */
  readonly byOwner: Map<string, Set<string>>;
  /**
   * Owner uuid -> the libvirt that last reported it running while it held locks (LibvirtVouched):
   * only that libvirt's "gone" releases them at a reconcile (decision 0025). Kept while the owner
   * holds anything; its last release forgets it.
   */
  readonly vouchedBy: Map<string, LibvirtRef>;
  /** The seq of the last fact folded in (0 for none). */
  seq: number;
}

export function initialState(): State {
  return { resources: new Map(), owners: new Map(), byInode: new Map(), unidentified: new Set(), byOwner: new Map(), vouchedBy: new Map(), seq: 0 };
}

export function refOf(f: ResourceFields): ResourceRef {
  return {
    id: f.resource,
    name: f.name,
    lockspace: f.lockspace,
    kind: f.kind,
    canonical: f.disk,
    ...(f.inode !== undefined ? { inode: f.inode } : {}),
  };
}

/**
 * Fold one fact into the state.
 *
 * It updates `state` in place and returns it: copying a 10,000-entry map for every fact would make
 * start-up and the hot path O(locks) per fact. It is still a pure function of (state, fact) in the
 * sense the invariants need: no clock, no I/O, no randomness, so replaying the journal gives the
 * same state every time (test/engine/evolve.unit.ts checks fold equality).
 */
export function evolve(state: State, f: NewFact | Fact): State {
  if ('seq' in f) state.seq = f.seq;
  switch (f.kind) {
    case 'OwnerSeen':
      state.owners.set(f.payload.owner.uuid, f.payload.owner);
      return state;
    case 'LockAcquired': {
      const p = f.payload;
      const res = resourceOf(state, p, p.mode);
      // A join (a second VM of this host on a shared holding) took nothing: it carries what the
      // holding's take saw, so the gap check still has it once the taker left (decision 0020, F1).
      const joined = p.lockIno === undefined && p.headGeneration === undefined && p.headStamp === undefined ? res.holders.values().next().value : undefined;
      res.holders.set(p.owner.uuid, { owner: p.owner, mode: p.mode, since: f.at, path: p.path, source: p.source, ...(p.generation !== undefined ? { generation: p.generation } : {}), ...seen(p, joined) });
      indexOwner(state, p.owner.uuid, p.resource);
      if (!state.owners.has(p.owner.uuid)) state.owners.set(p.owner.uuid, p.owner);
      return state;
    }
    case 'LockReleased':
    case 'LeaseLost':
      dropHolder(state, f.payload.resource, f.payload.owner.uuid);
      return state;
    case 'Reacquired': {
      // After a restart the holder is already in the state; after a lost lease it was dropped and
      // comes back. Either way the new grant's generation is the current one.
      // A new hold's `since` is the clock's reading when it was taken (wallAt, when a step back left the
      // clock behind the label), not the label: past the waiting facts' bound a merged step relabels a
      // kept re-take after the daemon folded it (waiting-facts keepStep), and by the label the running
      // state (folded before) and the journal's fold (after) disagreed (aud31, review30 LOW 5).
      const p = f.payload;
      const res = resourceOf(state, p, p.mode);
      const prev = res.holders.get(p.owner.uuid);
      const wallAt = (p as { wallAt?: unknown }).wallAt;
      res.holders.set(p.owner.uuid, {
        owner: p.owner,
        mode: p.mode,
        since: prev?.since ?? (typeof wallAt === 'string' ? wallAt : f.at),
        path: p.path,
        source: prev?.source ?? p.source ?? 'reacquire',
        ...(p.generation !== undefined ? { generation: p.generation } : prev?.generation !== undefined ? { generation: prev.generation } : {}),
        // A new take says what it saw; an adoption (the same description, held throughout) keeps the take's.
        ...seen(p, p.how !== undefined ? prev : undefined),
      });
      indexOwner(state, p.owner.uuid, p.resource);
      return state;
    }
    case 'IdentityLearned': {
      // Learnt once: a resource whose identity is known keeps it (a later file at its path is another disk).
      const p = f.payload;
      const res = state.resources.get(p.resource);
      if (!res || res.ref.inode !== undefined) return state;
      state.resources.set(p.resource, { ...res, ref: { ...res.ref, inode: p.inode } });
      indexInode(state, p.inode, p.resource);
      state.unidentified.delete(p.resource);
      return state;
    }
    case 'LibvirtVouched':
      // Only for an owner holding something: a vouch is about its locks, and must not outlive them.
      if (state.byOwner.has(f.payload.owner.uuid)) state.vouchedBy.set(f.payload.owner.uuid, f.payload.libvirt);
      return state;
    case 'FactsDropped':
      // Coalesced lock facts (decision 0026): each owner's vouch as the daemon had it, so the fold
      // does not depend on the superseded facts' order.
      for (const [uuid, libvirt] of Object.entries(f.payload.vouchedBy ?? {})) {
        if (libvirt !== null && state.byOwner.has(uuid)) state.vouchedBy.set(uuid, libvirt);
        else state.vouchedBy.delete(uuid);
      }
      return state;
    case 'LockRefused':
    case 'HandOverWaiting':
    case 'HandOverEnded':
    case 'InputRejected':
    case 'CommandFailed':
    case 'ConfigChanged':
    case 'OwnerGone':
    case 'ConflictAction':
    case 'ConfigRejected':
    case 'ClockStepped':
    case 'DaemonStarted':
    case 'DaemonStopped':
      return state;
    default: {
      const _exhaustive: never = f;
      return _exhaustive;
    }
  }
}

/** A fact's TakeSeen fields, else those of `prev` (an adoption continuing a take). */
function seen(p: TakeSeen, prev: TakeSeen | undefined): TakeSeen {
  const lockIno = p.lockIno ?? prev?.lockIno;
  const headGeneration = p.headGeneration ?? prev?.headGeneration;
  const headStamp = p.headStamp ?? prev?.headStamp;
  return { ...(lockIno !== undefined ? { lockIno } : {}), ...(headGeneration !== undefined ? { headGeneration } : {}), ...(headStamp !== undefined ? { headStamp } : {}) };
}

/** The resource's entry, created (and indexed by inode) on its first holder. */
function resourceOf(state: State, p: ResourceFields, mode: Mode): ResourceState {
  let res = state.resources.get(p.resource);
  if (!res) {
    res = { ref: refOf(p), mode, holders: new Map() };
    state.resources.set(p.resource, res);
    if (p.inode !== undefined) indexInode(state, p.inode, p.resource);
    else if (learnable(res.ref)) state.unidentified.add(p.resource);
  }
  return res;
}

/**
 * A held resource without an identity whose disk path can gain one: not a lock file named by the
 * requester whose disk is unknown (the virtlockd protocol's file lockspace names: their "disk" is the
 * lock file itself), not an LVM or SCSI name (a block device is named by its identity already).
 */
export function learnable(ref: ResourceRef): boolean {
  if (ref.inode !== undefined) return false;
  if (ref.kind === 'lvm' || ref.kind === 'scsi') return false;
  return !(ref.kind === 'file' && ref.canonical === ref.id);
}

function indexInode(state: State, inode: string, resource: string): void {
  let set = state.byInode.get(inode);
  if (!set) state.byInode.set(inode, (set = new Set()));
  set.add(resource);
}

function indexOwner(state: State, ownerUuid: string, resource: string): void {
  let set = state.byOwner.get(ownerUuid);
  if (!set) state.byOwner.set(ownerUuid, (set = new Set()));
  set.add(resource);
}

function dropHolder(state: State, resource: string, ownerUuid: string): void {
  const res = state.resources.get(resource);
  if (!res) return;
  res.holders.delete(ownerUuid);
  const owned = state.byOwner.get(ownerUuid);
  owned?.delete(resource);
  if (owned?.size === 0) {
    state.byOwner.delete(ownerUuid);
    state.vouchedBy.delete(ownerUuid);
  }
  if (res.holders.size === 0) {
    state.resources.delete(resource);
    state.unidentified.delete(resource);
    if (res.ref.inode !== undefined) {
      const ids = state.byInode.get(res.ref.inode);
      ids?.delete(resource);
      if (ids?.size === 0) state.byInode.delete(res.ref.inode);
    }
  }
}

/** Resources an owner holds, in a stable order. */
export function heldBy(state: State, ownerUuid: string): ResourceState[] {
  const out: ResourceState[] = [];
  for (const id of state.byOwner.get(ownerUuid) ?? []) {
    const res = state.resources.get(id);
    if (res) out.push(res);
  }
  return out;
}

// Snapshots: the state as JSON, so start-up reads a snapshot and only the facts after it.
interface StateJson {
  v: 1;
  seq: number;
  owners: Owner[];
  resources: Array<{ ref: ResourceRef; mode: Mode; holders: Holder[] }>;
  /** Owner uuid -> its vouching libvirt; absent in snapshots written before decision 0025. */
  vouchedBy?: Array<[string, LibvirtRef]>;
}

export function toSnapshot(state: State): StateJson {
  return {
    v: 1,
    seq: state.seq,
    owners: [...state.owners.values()],
    resources: [...state.resources.values()].map((r) => ({ ref: r.ref, mode: r.mode, holders: [...r.holders.values()] })),
    ...(state.vouchedBy.size > 0 ? { vouchedBy: [...state.vouchedBy] } : {}),
  };
}

export function fromSnapshot(json: unknown): State {
  const s = json as StateJson;
  if (!s || s.v !== 1 || !Array.isArray(s.resources) || !Array.isArray(s.owners)) {
    throw new Error('snapshot has an unknown shape (expected v: 1 with owners and resources)');
  }
  const state = initialState();
  state.seq = s.seq;
  for (const o of s.owners) state.owners.set(o.uuid, o);
  for (const r of s.resources) {
    state.resources.set(r.ref.id, { ref: r.ref, mode: r.mode, holders: new Map(r.holders.map((h) => [h.owner.uuid, h])) });
    for (const h of r.holders) indexOwner(state, h.owner.uuid, r.ref.id);
    if (r.ref.inode !== undefined) indexInode(state, r.ref.inode, r.ref.id);
    else if (learnable(r.ref)) state.unidentified.add(r.ref.id);
  }
  for (const [uuid, libvirt] of s.vouchedBy ?? []) if (state.byOwner.has(uuid)) state.vouchedBy.set(uuid, libvirt);
  return state;
}
