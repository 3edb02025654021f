// Facts: what happened, as journaled. The state of the daemon is the fold of these.
import type { HandOverOutcome, HolderInfo, LockspaceKind, Mode, Owner } from './types.js';

/** The resource fields every lock fact carries, so audit queries need no join. */
export interface ResourceFields {
  /** Resource id: the absolute path of the lock file. */
  readonly resource: string;
  readonly name: string;
  readonly lockspace: string;
  readonly kind: LockspaceKind;
  /** The canonical disk path. */
  readonly disk: string;
  /** The disk path as the requester wrote it. */
  readonly path: string;
  readonly inode?: string;
}

/**
 * What a take saw of the lock file, for the next start's gap check (decision 0020): `lockIno`, the
 * lock file's inode number (decimal); `headGeneration`, a shared take's: the generation the
 * exclusive record carried (0 for none), which no exclusive grant can move while the lock is held.
 */
export interface TakeSeen {
  readonly lockIno?: string;
  readonly headGeneration?: number;
  /**
   * A shared take's: which write of the exclusive record it saw ("host@since", "" for none; absent
   * when the take closed a dead exclusive record itself). Nothing but another shared take's closing
   * write may change it while the lock is held, so a record rewritten at the same generation (a
   * lock file reset or re-created, then granted exclusive again) shows (review24a F3).
   */
  readonly headStamp?: string;
}

/** How a LeaseLost reason of a gap intrusion ends (decision 0020): the disk was taken again for the VM. */
export const TAKEN_AGAIN = 'taken again for it';

/**
 * Which libvirt answered for a VM (src/events/libvirt-identity.ts): `uri`, what `virsh uri` printed
 * (aliases and the default resolved); `host`, what `virsh hostname` printed (the libvirt host's name);
 * `hostUuid`, libvirt's host UUID from `virsh capabilities` when it has one (shown, never compared:
 * without SMBIOS or host_uuid in libvirtd.conf libvirt makes up a new one at each start).
 */
export interface LibvirtRef {
  readonly uri: string;
  readonly host: string;
  readonly hostUuid?: string;
}

export interface FactPayloads {
  DaemonStarted: {
    readonly pid: number;
    readonly version: string;
    readonly lockspace: string | null;
    /** Each lockspace directory (file, LVM, SCSI) and the id its id file held: what the next start expects there. */
    readonly lockspaces?: Readonly<Record<string, string>>;
    readonly held: number;
    /** How the locks came back: fresh (re-taken), store (systemd's descriptor store), takeover. */
    readonly start?: 'fresh' | 'store' | 'takeover';
    /** Locks held through handed-back descriptors, and handed-back descriptors closed with why. */
    readonly adopted?: number;
    readonly dropped?: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
    /** /proc/sys/kernel/random/boot_id */
    readonly bootId?: string;
    /** Grants the journal had lost, found again in the lockspace (held again or LeaseLost, each with found: true). */
    readonly found?: number;
    /** Direct locks re-taken (not adopted) at this start: no record can prove nobody held them in the gap (review26a F2). */
    readonly directUnproven?: number;
  };
  DaemonStopped: { readonly pid: number; readonly reason: string; readonly held: number };
  OwnerSeen: { readonly owner: Owner; readonly event?: string; readonly source: string };
  LockAcquired: ResourceFields & { readonly owner: Owner; readonly mode: Mode; readonly source: string; readonly generation?: number } & TakeSeen;
  LockRefused: ResourceFields & { readonly owner: Owner; readonly mode: Mode; readonly source: string; readonly holder: HolderInfo; readonly message: string };
  /** handedTo: a migration destination waited for this disk; the release reserved it for that host and VM (decision 0009). */
  LockReleased: ResourceFields & { readonly owner: Owner; readonly source: string; readonly reason: string; readonly handedTo?: { readonly host: string; readonly owner: Owner; readonly until: string } };
  /**
   * A migration destination waits for the source (this VM on another host) to let go of the disks;
   * journaled once, however often it tries. `requested`: the disks whose hand-over request it
   * holds (the source's release reserves those for it); the others it takes when they are free.
   */
  HandOverWaiting: {
    readonly owner: Owner;
    readonly from: string;
    readonly disks: ReadonlyArray<{ readonly resource: string; readonly disk: string; readonly path: string; readonly requested: boolean; readonly why?: string }>;
    readonly source: string;
  };
  /** The wait ended: how, and the disks whose requests were withdrawn. */
  HandOverEnded: { readonly owner: Owner; readonly outcome: HandOverOutcome; readonly detail?: string; readonly withdrawn: number; readonly source: string };
  /**
   * how: 'adopted' (a descriptor systemd's store handed back), 'taken-over' (from the previous daemon); absent: taken again.
   * source: the holding's own source (virtlockd, api, libvirt...), kept through a re-take after a loss.
   */
  Reacquired: ResourceFields & { readonly owner: Owner; readonly mode: Mode; readonly generation?: number; readonly how?: 'adopted' | 'taken-over'; readonly source?: string; readonly found?: boolean } & TakeSeen;
  /** found: a grant the journal had lost, found again in the lockspace's holder records (src/engine/locker-found.ts); so for Reacquired. */
  LeaseLost: ResourceFields & { readonly owner: Owner; readonly mode: Mode; readonly holder: HolderInfo; readonly reason: string; readonly found?: boolean };
  InputRejected: { readonly source: string; readonly code: string; readonly message: string; readonly raw?: string };
  /** A virtlockd-protocol owner's process connection closed; its locks were released. `alive`: the pid still ran. */
  OwnerGone: { readonly owner: Owner; readonly pid: number; readonly alive: boolean; readonly released: number; readonly source: string };
  /** on_conflict applied to a VM found running without its lock (today: `suspend` through libvirt). */
  ConflictAction: { readonly owner: Owner; readonly action: 'suspend'; readonly result: 'done' | 'failed'; readonly error?: string; readonly message: string; readonly source: string };
  ConfigChanged: { readonly changes: ReadonlyArray<{ readonly key: string; readonly from: unknown; readonly to: unknown }>; readonly fingerprint: string; readonly trigger: string };
  ConfigRejected: { readonly file?: string; readonly error?: string; readonly refused?: ReadonlyArray<{ readonly key: string; readonly reason: string }>; readonly trigger: string };
  CommandFailed: { readonly source: string; readonly code: string; readonly message: string; readonly owner?: Owner; readonly command: string };
  /**
   * A disk held before its image existed (acquired with --create, a virtlockd direct lease named
   * ahead of its image) now exists: its identity (`inode`, always set here) is learnt, so a hard link
   * or bind mount of it is the held disk from now on (src/engine/identity-learn.ts). `owner` is the
   * first of its holders, `others` the rest. `conflict`: holders of another held resource that turned
   * out to be this same file, in a mode that conflicts: two VMs were granted one disk under two names
   * (said as DISK CONFLICT in the log). `inode` legacy readers see as an ordinary resource field.
   */
  /**
   * Facts no client waits for (the verifier's, a config reload's, a source's notes) that the journal
   * refused while it was full, past what may wait in memory (src/daemon/waiting-facts.ts): they were
   * folded into the running state but are not in the journal. Journaled, once there is room, right
   * after the facts that did wait, so the audit says where the gap is: how many of each kind, the
   * first and last one's time, and why.
   *
   * None of the dropped ones changed who holds which lock: the verifier's LeaseLost and Reacquired
   * past the bound are kept, coalesced (the last LeaseLost and the last Reacquired of each holding,
   * journaled just before this fact; `superseded` counts the earlier ones of the same holding, also
   * in `count` and `kinds`). An earlier one of a holding could have emptied its owner's holdings and
   * so ended its libvirt's vouch (LibvirtVouched); `vouchedBy` then says, for each owner whose
   * holdings those facts changed, which libvirt vouches for it now (null: none), and evolve sets
   * it, so the fold of the journal is the state the daemon had (decision 0026). Absent before.
   */
  FactsDropped: {
    readonly count: number;
    readonly kinds: Readonly<Record<string, number>>;
    readonly from: string;
    readonly to: string;
    readonly reason: string;
    readonly superseded?: number;
    readonly vouchedBy?: Readonly<Record<string, LibvirtRef | null>>;
    /**
     * The holdings whose loss / re-take facts were superseded (coalesced: `count` of them, from the
     * first one's time `from` to the kept fact's that stands for them, `to`): in that range the journal
     * does not say whether the lock was held, and audit says so (aud31, review30 M2). Absent before.
     */
    readonly coalesced?: ReadonlyArray<{ readonly resource: string; readonly disk: string; readonly owner: string; readonly ownerName?: string; readonly count: number; readonly from: string; readonly to: string }>;
  };
  IdentityLearned: ResourceFields & {
    readonly inode: string;
    readonly owner: Owner;
    readonly mode: Mode;
    readonly others?: readonly Owner[];
    readonly source: string;
    readonly conflict?: ReadonlyArray<{ readonly resource: string; readonly disk: string; readonly path: string; readonly owner: Owner; readonly mode: Mode }>;
  };
  /**
   * The libvirt `libvirt` reported VM `owner` running while the VM held locks taken by libvirt's
   * sources: from now on that libvirt's "shut off" or "no such domain" may release them, at a
   * restart too; another libvirt's may not (a wrong libvirt_uri, decision 0025). Journaled when
   * the vouching libvirt changes, not at every listing.
   */
  LibvirtVouched: { readonly owner: Owner; readonly libvirt: LibvirtRef; readonly source: string };
  /**
   * The wall clock stepped back (an NTP step, `date -s`, a clock set back while the daemon was stopped;
   * src/engine/fact-clock.ts, decision 0029). It had reached `from` (an upper bound; this fact's `at`)
   * and read `to` after the step (a lower bound): this host's clock passed the times in [to, from)
   * twice, so `audit --at` such a time has two answers. Facts after it keep `from` as their time until
   * the clock passes it again, each with the clock's own reading as payload `wallAt`. `seenBy`: at a
   * start against the journal's last fact, or while running against the monotonic clock. `merged`:
   * this fact stands for that many steps seen while the journal refused writes (past the waiting facts'
   * bound, src/daemon/waiting-facts.ts), its window the union of theirs; `span`: the steps merged into
   * it came among the next `span` facts after it on the journal's order (journaled in the same write),
   * so the wall times of its pass may go back anywhere up to there, and rise again after (aud31).
   */
  ClockStepped: { readonly from: string; readonly to: string; readonly backMs: number; readonly seenBy: 'start' | 'monotonic'; readonly merged?: number; readonly span?: number };
}

export type FactKind = keyof FactPayloads;
export const FACT_KINDS: readonly FactKind[] = [
  'DaemonStarted',
  'DaemonStopped',
  'OwnerSeen',
  'LockAcquired',
  'LockRefused',
  'LockReleased',
  'HandOverWaiting',
  'HandOverEnded',
  'Reacquired',
  'LeaseLost',
  'InputRejected',
  'CommandFailed',
  'OwnerGone',
  'ConflictAction',
  'ConfigChanged',
  'ConfigRejected',
  'FactsDropped',
  'IdentityLearned',
  'LibvirtVouched',
  'ClockStepped',
];

/** A fact before the journal has numbered it. */
export type NewFact = {
  [K in FactKind]: { readonly kind: K; readonly at: string; readonly payload: FactPayloads[K] };
}[FactKind];

/** A fact as stored: numbered and stamped with the host that wrote it. */
export type Fact = NewFact & { readonly seq: number; readonly host: string };

export function fact<K extends FactKind>(kind: K, at: string, payload: FactPayloads[K]): NewFact {
  return { kind, at, payload } as NewFact;
}
