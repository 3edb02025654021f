// At start, before the re-take: grants the journal forgot, found again in the lockspace's holder
// records (src/engine/locker-found.ts). They are folded into the state as if journaled, so the
// adoption of systemd's descriptors and the re-take treat them like every other held lock; the facts
// those produce for them (Reacquired, LeaseLost) carry `found: true`, and the daemon says so loudly.
// Issue 11.4: no acknowledged lock is silently lost, even when the state directory's filesystem fails.
import { findForgotten, type ScanDir } from '../engine/locker-found.js';
import type { NewFact } from '../engine/facts.js';
import { evolve, type State } from '../engine/state.js';
import type { Journal } from '../journal/journal.js';

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

const NONE: FoundLocks = { resources: new Set(), mark: (f) => [...f], count: 0 };

/**
 * Scan only when the journal may have lost grants of this boot: its last fact is not a clean stop
 * (a crash, a SIGKILL, a failed state filesystem), and the last start it records was in this boot
 * (after a reboot the VMs those grants protected are gone: after_reboot). A journal without facts
 * (lost whole, or a new state directory) is scanned too.
 */
export function recoverForgotten(
  journal: Journal,
  state: State,
  opts: { host: string; dirs: readonly ScanDir[]; bootId: string | undefined; at: string },
  log: (level: 'info' | 'warning' | 'error', msg: string) => void,
): FoundLocks {
  if (opts.dirs.length === 0) return NONE;
  const last = journal.query({ limit: 1, newest: true })[0];
  if (last?.kind === 'DaemonStopped') return NONE;
  const prevBoot = (journal.query({ kinds: ['DaemonStarted'], limit: 1, newest: true })[0]?.payload as { bootId?: string } | undefined)?.bootId;
  if (prevBoot !== undefined && opts.bootId !== undefined && prevBoot !== opts.bootId) return NONE;
  const t0 = Date.now();
  const scan = findForgotten(opts.dirs, opts.host, (id) => state.resources.get(id)?.holders.size ? true : false, (disk) => journal.maxGeneration(disk), opts.at);
  for (const u of scan.unusable) log('warning', `lockspace scan for locks the journal forgot: ${u}`);
  const ms = Date.now() - t0;
  if (scan.facts.length === 0) {
    log('info', `lockspace scan after an unclean stop: ${scan.scanned} lock file(s) read in ${ms} ms, no lock the journal forgot`);
    return NONE;
  }
  for (const f of scan.facts) evolve(state, f);
  const resources = new Set(scan.facts.map((f) => (f.payload as { resource: string }).resource));
  const disks = scan.facts.map((f) => (f.payload as { disk: string }).disk);
  log(
    'error',
    `FOUND ${resources.size} lock(s) this host held that its journal had lost (the state directory's filesystem failed, or journal_sync = "write"); ` +
      `taking them again, journaled with found: true: ${disks.join(', ')}`,
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
