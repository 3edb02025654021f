// At start, before the re-take: grants the journal forgot, found again in the lockspace's holder
// records (src/engine/locker-found.ts). They are folded into the state as if journaled, so the
// adoption of systemd's descriptors and the re-take treat them like every other held lock; the facts
// those produce for them (Reacquired, LeaseLost) carry `found: true`, and the daemon says so loudly.
// Issue 11.4: no acknowledged lock is silently lost, even when the state directory's filesystem fails.
import { findForgotten, type ScanDir } from '../engine/locker-found.js';
import type { NewFact } from '../engine/facts.js';
import { evolve, type State } from '../engine/state.js';
import type { Journal } from '../journal/journal.js';
import { REGISTRY_FILE, ServerRegistry } from '../events/virtlockd/registry.js';
export { REGISTRY_FILE };
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface FoundLocks {
  /** Lock files (resource ids) found. */
  readonly resources: ReadonlySet<string>;
  /** The facts to journal with `found: true` on those that concern a found resource. */
  mark(facts: readonly NewFact[]): NewFact[];
  readonly count: number;
}

/** The lockspaces whose lock files carry holder records (direct mode locks the images: none). */
export function scanDirs(c: { fileLockspaceDir: string | null; lvmLockspaceDir: string | null; scsiLockspaceDir: string | null }, shared: (dir: string) => boolean): ScanDir[] {
  const out: ScanDir[] = [];
  if (c.fileLockspaceDir) out.push({ dir: c.fileLockspaceDir, kind: 'file', direct: shared(c.fileLockspaceDir) });
  if (c.lvmLockspaceDir) out.push({ dir: c.lvmLockspaceDir, kind: 'lvm', direct: shared(c.lvmLockspaceDir) });
  if (c.scsiLockspaceDir) out.push({ dir: c.scsiLockspaceDir, kind: 'scsi', direct: shared(c.scsiLockspaceDir) });
  return out;
}

/**
 * The lockspaces libvirt created over the virtlockd protocol (CREATE_LOCKSPACE; explicit <lease>s
 * live there, named by lease name) that the configured ones do not cover: known from the protocol
 * server's registry (`registryFile`) and from the grants the journal names. A lockspace only a lost
 * journal and registry knew cannot be known: `recoverForgotten` says so.
 */
export function protocolScanDirs(journal: Journal, registryFile: string | undefined, configured: readonly ScanDir[], shared: (dir: string) => boolean): ScanDir[] {
  const real = (d: string): string => {
    try {
      return fs.realpathSync(d);
    } catch {
      return path.resolve(d);
    }
  };
  const seen = new Set(configured.map((d) => real(d.dir)));
  const out: ScanDir[] = [];
  const names = [...(registryFile !== undefined ? ServerRegistry.lockspacesIn(registryFile) : []), ...journal.grantLockspaces()];
  for (const dir of names) {
    if (!path.isAbsolute(dir)) continue;
    const r = real(dir);
    if (seen.has(r)) continue;
    seen.add(r);
    out.push({ dir, kind: 'file', leases: true, direct: shared(dir) });
  }
  return out;
}

const FAR_FUTURE = '9999-12-31T23:59:59.999Z';

/**
 * When this boot began (ISO, whole seconds): `btime` of /proc/stat (VMLOCKD_PROC_STAT_FILE names
 * another file, for tests). Undefined when it cannot be read.
 */
export function bootTime(env: NodeJS.ProcessEnv = process.env): string | undefined {
  try {
    const m = /^btime\s+(\d+)\s*$/m.exec(fs.readFileSync(env.VMLOCKD_PROC_STAT_FILE || '/proc/stat', 'utf8'));
    return m ? new Date(Number(m[1]) * 1000).toISOString() : undefined;
  } catch {
    return undefined;
  }
}

const NONE: FoundLocks = { resources: new Set(), mark: (f) => [...f], count: 0 };

/**
 * Scan only when the journal may have lost grants of this boot: its last fact is not a clean stop
 * (a crash, a SIGKILL, a failed state filesystem), and the last start it records was in this boot
 * (after a reboot the VMs those grants protected are gone: after_reboot). A journal that cannot
 * say which boot it last ran in (lost whole, a new state directory) is scanned too, but only records
 * written since this boot began are taken.
 */
/** A block device's LVM or SCSI lock file name, as an acquire would name it (null: none; an Error: unreadable). */
export type BlockdevNameOf = (disk: string) => Promise<{ readonly lockspace: string; readonly name: string } | Error | null>;

export async function recoverForgotten(
  journal: Journal,
  state: State,
  opts: { host: string; dirs: readonly ScanDir[]; bootId: string | undefined; at: string; registryFile?: string; shared?: (dir: string) => boolean; bootTime?: string; blockdevName?: BlockdevNameOf },
  log: (level: 'info' | 'warning' | 'error', msg: string) => void,
): Promise<FoundLocks> {
  // Staged facts included: SQLite may not have taken them yet (another process's write lock, a full disk).
  const last = journal.newest();
  if (last?.kind === 'DaemonStopped') return NONE;
  const prevBoot = (journal.newest('DaemonStarted')?.payload as { bootId?: string } | undefined)?.bootId;
  if (prevBoot !== undefined && opts.bootId !== undefined && prevBoot !== opts.bootId) return NONE;
  // Only a journal that recorded this boot's id proves the unclean stop was in this boot. Without
  // that proof (a journal lost or new, one from before boot ids, no boot id to read), a record is
  // taken only if written after this boot began: one from before a reboot guards a VM that died
  // with the host, and holding it would keep HA from restarting that VM elsewhere.
  const sameBoot = prevBoot !== undefined && opts.bootId !== undefined;
  const bootAt = sameBoot ? undefined : (opts.bootTime ?? bootTime());
  const notBefore = sameBoot ? undefined : (bootAt ?? FAR_FUTURE);
  const protocol = protocolScanDirs(journal, opts.registryFile, opts.dirs, opts.shared ?? (() => false));
  const dirs = [...opts.dirs, ...protocol];
  // What cannot be scanned: a lockspace libvirt created over the protocol that only the lost
  // journal and registry knew (libvirtd creates it again only when it restarts).
  const blind =
    last === undefined
      ? `; the journal is empty (lost, or a new state directory): lockspaces libvirt created over the virtlockd protocol are known only from it and from ${opts.registryFile ?? 'the protocol registry'}, so leases in any lockspace not listed here cannot be found`
      : '';
  const listed = `${dirs.length} lockspace(s) (${dirs.map((d) => d.dir).join(', ') || 'none'})`;
  if (dirs.length === 0) {
    if (blind !== '') log('warning', `lockspace scan at a start with an empty journal (a first start, or a lost state directory): nothing to scan${blind}`);
    return NONE;
  }
  const t0 = Date.now();
  const scan = findForgotten(dirs, opts.host, (id) => state.resources.get(id)?.holders.size ? true : false, (disk) => journal.maxGeneration(disk), opts.at, notBefore);
  for (const u of scan.unusable) log('warning', `lockspace scan for locks the journal forgot: ${u}`);
  if (scan.older.length > 0) {
    log(
      'warning',
      `lockspace scan: the journal does not prove this start follows a crash in this boot, and ${scan.older.length} record(s) naming this host were written ` +
        `${bootAt !== undefined ? `before this boot (${bootAt})` : 'at an unknown time (the boot time cannot be read)'}: not taken (their VMs died with the host): ${scan.older.join('; ')}`,
    );
  }
  // An LVM or SCSI lock file is named by the device's identity, not by a hash of the path its record
  // names: a record whose disk is named otherwise now was copied or forged into that file (anyone who
  // can write the lockspace can), or the device changed. Not taken; logged.
  const facts: NewFact[] = [];
  for (const f of scan.facts) {
    const p = f.payload as { kind: string; lockspace: string; name: string; disk: string; resource: string };
    if ((p.kind === 'lvm' || p.kind === 'scsi') && opts.blockdevName) {
      let n: Awaited<ReturnType<BlockdevNameOf>>;
      try {
        n = await opts.blockdevName(p.disk);
      } catch (e) {
        n = e as Error;
      }
      if (n === null || n instanceof Error || n.lockspace !== p.lockspace || n.name !== p.name) {
        const now = n === null ? 'has no LVM or SCSI identity' : n instanceof Error ? `cannot be named (${n.message})` : `is named ${n.name} in ${n.lockspace}`;
        log('warning', `lockspace scan for locks the journal forgot: ${p.resource}: its record names this host and disk ${p.disk}, but that disk ${now}, not ${p.name}: not taken (a copied or forged record, or another device now)`);
        continue;
      }
    }
    facts.push(f);
  }
  const ms = Date.now() - t0;
  if (facts.length === 0) {
    // An empty journal is also every first start: say so, and keep the warning for what it cannot see.
    const when = blind !== '' ? 'at a start with an empty journal (a first start, or a lost state directory)' : 'after an unclean stop';
    log(blind !== '' ? 'warning' : 'info', `lockspace scan ${when}: ${scan.scanned} lock file(s) of ${listed} read in ${ms} ms, no lock the journal forgot${blind}`);
    return NONE;
  }
  for (const f of facts) evolve(state, f);
  const resources = new Set(facts.map((f) => (f.payload as { resource: string }).resource));
  const disks = facts.map((f) => (f.payload as { disk: string }).disk);
  log(
    'error',
    `FOUND ${resources.size} lock(s) this host held that its journal had lost (the state directory's filesystem failed, journal_sync = "write", ` +
      `or takes still in flight when the daemon was killed: taken, but killed before their facts were journaled and answered); ` +
      `taking them again, journaled with found: true: ${disks.join(', ')} (scanned ${listed})${blind}`,
  );
  return {
    resources,
    count: resources.size,
    mark: (facts) =>
      facts.map((f) =>
        (f.kind === 'Reacquired' || f.kind === 'LeaseLost') && resources.has(f.payload.resource) ? ({ ...f, payload: { ...f.payload, found: true } } as NewFact) : f,
      ),
  };
}
