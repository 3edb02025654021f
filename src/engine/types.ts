// The engine's vocabulary: events in, commands, intents, facts out.
// Everything here is plain data so it can cross the journal, the socket and the tests unchanged.

export type Mode = 'exclusive' | 'shared';

/** A VM as the outside world names it. The uuid is the identity; the name is for humans. */
export interface Owner {
  readonly uuid: string;
  readonly name?: string;
}

/** One disk as a source reports it, before any naming rule is applied. */
export interface DiskSpec {
  readonly path: string;
  readonly readonly: boolean;
  readonly shareable: boolean;
  /**
   * Set by the front doors that check a disk exists (control API, CLI, JSON lines): false means the
   * disk must exist and be no directory; true means the caller says it will be created. Undefined
   * (libvirt sources) means no such check.
   */
  readonly create?: boolean;
}

export const VM_EVENT_TYPES = [
  'started',
  'stopped',
  'suspended',
  'resumed',
  'crashed',
  'migrated_out',
  'migrated_in',
  'disk_attached',
  'disk_detached',
  'defined',
  'undefined',
] as const;
export type VmEventType = (typeof VM_EVENT_TYPES)[number];

/** A VM lifecycle event, the common currency of every source (JSON lines, virsh events, hook, RPC). */
export interface VmEvent {
  readonly type: VmEventType;
  readonly vm: Owner;
  readonly disks: readonly DiskSpec[];
  /** ISO time at which the source saw the event. */
  readonly at: string;
  /**
   * The time the client said the event happened, when it said one (`at` in a JSON line or an API
   * body). Kept beside the daemon's time, never used for order: a client's clock or a late report
   * must not reorder the journal (issue 12.6).
   */
  readonly clientAt?: string;
  /** Which source produced it: "jsonl", "api", "virsh", "hook", "virtlockd". */
  readonly source: string;
}

/** A disk path with the lock mode wanted for it. */
export interface DiskRequest {
  readonly path: string;
  readonly mode: Mode;
  /** As DiskSpec.create: false = must exist (and be no directory), true = will be created, undefined = not checked. */
  readonly create?: boolean;
  /**
   * A resource the requester has already named (the virtlockd protocol sends a lockspace and a
   * resource name, not a disk path). `lockspace` "" is virtlockd's default lockspace: `name` is the
   * file itself. `create: false` means the file must already exist (no AUTOCREATE).
   */
  readonly named?: { readonly lockspace: string; readonly name: string; readonly create: boolean };
}

export type Command =
  | {
      readonly kind: 'acquire';
      readonly owner: Owner;
      readonly disks: readonly DiskRequest[];
      readonly at: string;
      readonly clientAt?: string;
      readonly source: string;
      /**
       * A repeated attempt whose refusal is already known and journaled once (a migration
       * destination waiting for the hand-over, HandOverWaiting): a refusal journals nothing.
       */
      readonly quiet?: boolean;
    }
  | {
      readonly kind: 'release';
      readonly owner: Owner;
      /** undefined: everything the owner holds. */
      readonly paths?: readonly string[];
      /** Resources named by the requester (virtlockd protocol), released like `paths`. */
      readonly named?: readonly DiskRequest[];
      readonly at: string;
      readonly clientAt?: string;
      readonly source: string;
    }
  | {
      /** Check that the disks could be taken, without taking them (hook: migrate/restore begin). */
      readonly kind: 'check';
      readonly owner: Owner;
      readonly disks: readonly DiskRequest[];
      readonly at: string;
      readonly clientAt?: string;
      readonly source: string;
      /** As for acquire: a migration's check, refused only by its own source, journals nothing. */
      readonly quiet?: boolean;
    }
  | {
      /**
       * A migration destination waits for the source (this same VM on another host) to let go of
       * the disks ('wait': ask the source's release to reserve them for this host and VM, journal
       * HandOverWaiting) or stops waiting ('end': withdraw the ask, journal HandOverEnded with why).
       */
      readonly kind: 'hand-over';
      readonly step: 'wait' | 'end';
      readonly owner: Owner;
      readonly disks: readonly DiskRequest[];
      /** wait: the hosts that hold the disks (the source). */
      readonly from?: string;
      /** end: how the wait ended, and the details for the journal. */
      readonly outcome?: HandOverOutcome;
      readonly detail?: string;
      readonly at: string;
      readonly clientAt?: string;
      readonly source: string;
    }
  | {
      /** A lifecycle event that changes no lock but is worth recording (defined, suspended). */
      readonly kind: 'observe';
      readonly owner: Owner;
      readonly event: VmEventType;
      readonly at: string;
      readonly clientAt?: string;
      readonly source: string;
    };

/**
 * How a destination's wait for a migration hand-over ended: it took the disks; its VM's release
 * came (a failed incoming migration); libvirt says the VM is not here; the bound ran out; another
 * owner holds the disks; the daemon stopped.
 */
export type HandOverOutcome = 'taken' | 'cancelled' | 'gone' | 'timeout' | 'conflict' | 'stopped';

/** How a resource is named in the lockspace (see docs/architecture.md, "Resource identity"). */
export type LockspaceKind = 'file' | 'direct' | 'lvm' | 'scsi';

/**
 * A disk resolved to the lock file that stands for it.
 * `id` is the absolute path of the file the locker opens; it is the resource's identity.
 */
export interface ResourceRef {
  readonly id: string;
  /** The name inside the lockspace (the SHA-256 for file lockspaces, the image path in direct mode). */
  readonly name: string;
  readonly lockspace: string;
  readonly kind: LockspaceKind;
  /** The canonical disk path (symlinks, `//` and `..` resolved). */
  readonly canonical: string;
  /** "dev:ino" of the disk image when it exists, used to catch aliases that realpath cannot see. */
  readonly inode?: string;
  /** false: open the lock file without O_CREAT (it must exist). Default true for file lockspaces. */
  readonly create?: boolean;
}

export interface ResolvedDisk {
  /** The path as the requester wrote it. */
  readonly path: string;
  readonly mode: Mode;
  readonly resource: ResourceRef;
}

/** A command whose disk paths have been resolved to resources (the only I/O before `decide`). */
export type ResolvedCommand =
  | (Extract<Command, { kind: 'acquire' }> & { readonly resolved: readonly ResolvedDisk[] })
  | (Extract<Command, { kind: 'check' }> & { readonly resolved: readonly ResolvedDisk[] })
  | (Extract<Command, { kind: 'release' }> & { readonly resolved?: readonly ResolvedDisk[] })
  | (Extract<Command, { kind: 'hand-over' }> & { readonly resolved: readonly ResolvedDisk[] })
  | Extract<Command, { kind: 'observe' }>;

/** Who holds a resource, as far as this host can tell. */
export interface HolderInfo {
  readonly host?: string;
  readonly owner?: Owner;
  readonly mode?: Mode;
  readonly since?: string;
  readonly generation?: number;
  readonly pid?: number;
  /**
   * The disk is free but reserved for a migration's destination (host, owner above are the
   * destination's); nobody else may take it until it does, stops waiting, or this lapses.
   */
  readonly reservation?: { readonly from: string; readonly since: string; readonly until: string };
}

/** What `decide` asks the locker to do. Intents of one command are applied all or nothing. */
export type Intent =
  | {
      readonly kind: 'lock';
      readonly disk: ResolvedDisk;
      readonly owner: Owner;
      /** "take": open and lock in the kernel; "join": this host already holds a shared lock, add a holder. */
      readonly how: 'take' | 'join';
    }
  | {
      readonly kind: 'unlock';
      readonly resource: ResourceRef;
      readonly path: string;
      readonly owner: Owner;
      /** "drop": close the kernel lock; "leave": other local shared holders remain. */
      readonly how: 'drop' | 'leave';
    }
  | { readonly kind: 'probe'; readonly disk: ResolvedDisk; readonly owner: Owner }
  | { readonly kind: 'refuse'; readonly disk: ResolvedDisk; readonly owner: Owner; readonly holder: HolderInfo }
  | { readonly kind: 'already'; readonly disk: ResolvedDisk; readonly owner: Owner }
  | { readonly kind: 'see'; readonly owner: Owner }
  /** Ask the holders of these disks to reserve them for this host and owner when they let go. */
  | { readonly kind: 'await'; readonly disks: readonly ResolvedDisk[]; readonly owner: Owner; readonly from: string }
  /** Withdraw that ask, recording how the wait ended. */
  | { readonly kind: 'withdraw'; readonly disks: readonly ResolvedDisk[]; readonly owner: Owner; readonly outcome: HandOverOutcome; readonly detail?: string };
