// The locker: the only code that opens lock files (invariant 4).
//
// One open file description per held resource, locked with a non-blocking OFD lock on byte 0,
// length 1 (virtlockd's byte; QEMU's own image locks sit at bytes 100+ and 200+). OFD locks belong
// to the description, not the process, so nothing else this process opens or closes can drop them,
// and two descriptions conflict even inside one process. See docs/decisions/0001-ofd-locks-native-binding.md.
import * as fs from 'node:fs';
import { VmlockdError } from './errors.js';
import { fact, type NewFact } from './facts.js';
import type { ResourceFields } from './facts.js';
import { refusalMessage } from './messages.js';
import { native as defaultNative, type NativeBinding } from './native.js';
import type { State } from './state.js';
import type { HolderInfo, Intent, Mode, ResolvedDisk, ResourceRef } from './types.js';

const LOCK_START = 0;
const LOCK_LEN = 1;

export interface DiskResult {
  readonly path: string;
  readonly disk: string;
  readonly resource: string;
  readonly name: string;
  readonly mode: Mode;
}

export interface Refusal extends DiskResult {
  readonly holder: HolderInfo;
  readonly message: string;
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
}

interface Held {
  readonly fd: number;
  readonly mode: Mode;
  readonly ref: ResourceRef;
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
  refuse: (disk: ResolvedDisk, owner: Intent['owner'], holder: HolderInfo) => void;
}

type TakeResult = { readonly ok: true; readonly fd: number } | { readonly ok: false; readonly holder: HolderInfo };

export function resourceFields(ref: ResourceRef, path: string): ResourceFields {
  return {
    resource: ref.id,
    name: ref.name,
    lockspace: ref.lockspace,
    kind: ref.kind,
    disk: ref.canonical,
    path,
    ...(ref.inode !== undefined ? { inode: ref.inode } : {}),
  };
}

function result(d: ResolvedDisk): DiskResult {
  return { path: d.path, disk: d.resource.canonical, resource: d.resource.id, name: d.resource.name, mode: d.mode };
}

export class Locker {
  private readonly held = new Map<string, Held>();
  private readonly native: NativeBinding;

  constructor(
    readonly host: string,
    options: { native?: NativeBinding; fileLockspaceDir?: string | null } = {},
  ) {
    this.native = options.native ?? defaultNative;
    if (options.fileLockspaceDir) fs.mkdirSync(options.fileLockspaceDir, { recursive: true, mode: 0o700 });
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

    const refuse = (disk: ResolvedDisk, owner: Intent['owner'], holder: HolderInfo) => {
      const message = refusalMessage(disk.path, holder);
      refusals.push({ ...result(disk), holder, message });
      facts.push(
        fact('LockRefused', ctx.at, { ...resourceFields(disk.resource, disk.path), owner, mode: disk.mode, source: ctx.source, holder, message }),
      );
    };

    try {
      this.applyAll(intents, ctx, { facts, acquired, released, already, free, refusals, taken, toClose, refuse });
    } catch (e) {
      // An I/O failure half-way must not leave this command's earlier locks behind.
      for (const id of taken) this.drop(id);
      throw e;
    }

    if (refusals.length > 0) {
      // All or nothing: give back what this command took, and record only the refusal.
      for (const id of taken) this.drop(id);
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
        for (const id of toClose) this.drop(id);
      },
      abort: () => {
        for (const id of taken) this.drop(id);
      },
    };
  }

  private applyAll(intents: readonly Intent[], ctx: Context, acc: Accumulator): void {
    const { facts, acquired, released, already, free, refusals, taken, toClose, refuse } = acc;
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
          if (intent.how === 'take') {
            const r = this.take(disk.resource, disk.mode);
            if (!r.ok) {
              refuse(disk, owner, r.holder);
              break;
            }
            this.held.set(disk.resource.id, { fd: r.fd, mode: disk.mode, ref: disk.resource });
            taken.push(disk.resource.id);
          }
          acquired.push(result(disk));
          facts.push(fact('LockAcquired', ctx.at, { ...resourceFields(disk.resource, disk.path), owner, mode: disk.mode, source: ctx.source }));
          break;
        }
        case 'probe': {
          const holder = this.probe(intent.disk.resource, intent.disk.mode);
          if (holder) refuse(intent.disk, intent.owner, holder);
          else free.push(result(intent.disk));
          break;
        }
        case 'unlock': {
          const { resource, path, owner } = intent;
          const mode = this.held.get(resource.id)?.mode ?? 'exclusive';
          released.push({ path, disk: resource.canonical, resource: resource.id, name: resource.name, mode });
          facts.push(fact('LockReleased', ctx.at, { ...resourceFields(resource, path), owner, source: ctx.source, reason: ctx.source }));
          if (intent.how === 'drop') toClose.push(resource.id);
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
   * After a restart: take again every lock the journal says this host held.
   * A lock another owner took in the gap is never stolen back: it becomes LeaseLost.
   */
  reacquire(state: State, at: string): { facts: NewFact[]; lost: NewFact[] } {
    const facts: NewFact[] = [];
    const lost: NewFact[] = [];
    for (const res of state.resources.values()) {
      if (this.held.has(res.ref.id)) continue;
      let r: TakeResult;
      try {
        r = this.take(res.ref, res.mode);
      } catch (e) {
        r = { ok: false, holder: {} };
        void e;
      }
      for (const h of res.holders.values()) {
        const fields = resourceFields(res.ref, h.path);
        if (r.ok) {
          facts.push(fact('Reacquired', at, { ...fields, owner: h.owner, mode: h.mode }));
        } else {
          const f = fact('LeaseLost', at, { ...fields, owner: h.owner, mode: h.mode, holder: r.holder, reason: 'taken by another owner while vmlockd was down' });
          facts.push(f);
          lost.push(f);
        }
      }
      if (r.ok) this.held.set(res.ref.id, { fd: r.fd, mode: res.mode, ref: res.ref });
    }
    return { facts, lost };
  }

  /** Close every description (the kernel drops the locks). Used at exit and by tests. */
  closeAll(): void {
    for (const id of [...this.held.keys()]) this.drop(id);
  }

  private drop(id: string): void {
    const h = this.held.get(id);
    if (!h) return;
    this.held.delete(id);
    try {
      fs.closeSync(h.fd);
    } catch {
      // EBADF/EIO on close of a lost cluster-filesystem fd: the lock is gone either way.
    }
  }

  private openFlags(ref: ResourceRef, mode: Mode): number {
    const { O_RDWR, O_RDONLY, O_CREAT } = fs.constants;
    if (ref.kind === 'direct') return mode === 'exclusive' ? O_RDWR : O_RDONLY;
    return ref.create === false ? O_RDWR : O_RDWR | O_CREAT;
  }

  private take(ref: ResourceRef, mode: Mode): TakeResult {
    const type = mode === 'exclusive' ? 'write' : 'read';
    // virtlockd unlinks an indirect lease file when it releases it; if that happens between our
    // open and our lock, we would hold a lock on an orphaned inode. Re-check and retry.
    for (let attempt = 0; attempt < 5; attempt++) {
      let fd: number;
      try {
        fd = fs.openSync(ref.id, this.openFlags(ref, mode), 0o600);
      } catch (e) {
        throw new VmlockdError('VMLOCKD_ERR_IO', `cannot open lock file ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
      }
      let granted: boolean;
      try {
        granted = this.native.ofdSetLk(fd, type, LOCK_START, LOCK_LEN);
      } catch (e) {
        fs.closeSync(fd);
        throw new VmlockdError('VMLOCKD_ERR_IO', `cannot lock ${ref.id} for disk ${ref.canonical}: ${(e as Error).message}`, { cause: e });
      }
      if (!granted) {
        const holder = this.conflictOn(fd, type);
        fs.closeSync(fd);
        return { ok: false, holder };
      }
      if (ref.kind === 'direct' || this.sameInode(fd, ref.id)) return { ok: true, fd };
      fs.closeSync(fd);
    }
    throw new VmlockdError('VMLOCKD_ERR_IO', `lock file ${ref.id} kept being replaced while locking it`);
  }

  /** Would `mode` be granted now? Looks from a fresh description that takes no lock. */
  private probe(ref: ResourceRef, mode: Mode): HolderInfo | null {
    if (this.held.has(ref.id)) {
      const h = this.held.get(ref.id)!;
      if (h.mode === 'exclusive' || mode === 'exclusive') return { host: this.host, mode: h.mode };
      return null;
    }
    let fd: number;
    try {
      fd = fs.openSync(ref.id, fs.constants.O_RDONLY);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new VmlockdError('VMLOCKD_ERR_IO', `cannot open lock file ${ref.id}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const c = this.native.ofdGetLk(fd, mode === 'exclusive' ? 'write' : 'read', LOCK_START, LOCK_LEN);
      return c ? { mode: c.type === 'write' ? 'exclusive' : 'shared' } : null;
    } finally {
      fs.closeSync(fd);
    }
  }

  private conflictOn(fd: number, type: 'read' | 'write'): HolderInfo {
    try {
      const c = this.native.ofdGetLk(fd, type, LOCK_START, LOCK_LEN);
      return c ? { mode: c.type === 'write' ? 'exclusive' : 'shared' } : {};
    } catch {
      return {};
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
