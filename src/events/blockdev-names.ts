// Names for block-device disks in the LVM and SCSI lockspaces, the way virtlockd forms them
// (lock_driver_lockd.c, virLockManagerLockDaemonAddResource), so a mixed cluster of vmlockd and
// virtlockd hosts names one LV or LUN identically:
//   1. path starts with "/dev" (libvirt checks the prefix "/dev", not "/dev/") and an LVM lockspace
//      dir is set: the LV UUID from `lvs --noheadings --unbuffered --nosuffix --options uuid PATH`;
//   2. path starts with "/dev" and a SCSI lockspace dir is set: the id from
//      `/lib/udev/scsi_id --replace-whitespace --whitelisted --device PATH`;
//   3. otherwise null: the caller falls back to file (SHA-256) or direct naming.
// A step whose command exits non-zero or prints nothing falls through to the next, as in libvirt.
import { execFile } from 'node:child_process';
import { BadInputError, VmlockdError } from '../engine/errors.js';
import { blockdevLookupPath, needsBlockdevName } from '../engine/resolve.js';

export type RunCommand = (cmd: string, args: string[]) => Promise<{ stdout: string; code: number }>;

export interface BlockdevDirs {
  readonly lvmDir?: string | null;
  readonly scsiDir?: string | null;
}

export interface BlockdevName {
  readonly kind: 'lvm' | 'scsi';
  readonly lockspace: string;
  readonly name: string;
}

export const LVS_COMMAND = 'lvs';
export const SCSI_ID_COMMAND = '/lib/udev/scsi_id';

export function lvsArgs(path: string): string[] {
  return ['--noheadings', '--unbuffered', '--nosuffix', '--options', 'uuid', path];
}

export function scsiIdArgs(path: string): string[] {
  return ['--replace-whitespace', '--whitelisted', '--device', path];
}

// The name becomes a file name inside the lockspace directory.
function checkName(name: string, what: string, stdout: string): string {
  if (name.includes('/') || name.includes('\0')) {
    throw new BadInputError(`${what} output cannot name a lock file: ${JSON.stringify(stdout.slice(0, 80))}`);
  }
  return name;
}

/**
 * The LV UUID from lvs output. libvirt skips leading whitespace and cuts at the first newline;
 * the dashes of the UUID are kept (e.g. "06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky").
 */
export function parseLvsUuid(stdout: string): string {
  const name = stdout.replace(/^\s+/, '').split('\n', 1)[0]!;
  if (name === '') throw new BadInputError(`lvs printed no LV UUID, got ${JSON.stringify(stdout.slice(0, 80))}`);
  return checkName(name, 'lvs', stdout);
}

/** The SCSI id from scsi_id output. libvirt only cuts at the first newline (no whitespace trimming). */
export function parseScsiId(stdout: string): string {
  const name = stdout.split('\n', 1)[0]!;
  if (name === '') throw new BadInputError(`scsi_id printed no SCSI id, got ${JSON.stringify(stdout.slice(0, 80))}`);
  return checkName(name, 'scsi_id', stdout);
}

/**
 * The LVM or SCSI lockspace name of a block-device path, or null to use file/direct naming.
 * A runner that rejects (e.g. lvs not installed) propagates: silently falling back to file naming
 * would give this host a different name for the LV than its peers use, and two hosts could then
 * both "hold" one LV.
 */
export async function blockdevResourceName(path: string, dirs: BlockdevDirs, run: RunCommand): Promise<BlockdevName | null> {
  if (!path.startsWith('/dev')) return null;
  if (dirs.lvmDir) {
    const r = await run(LVS_COMMAND, lvsArgs(path));
    if (r.code === 0 && r.stdout.trim() !== '') return { kind: 'lvm', lockspace: dirs.lvmDir, name: parseLvsUuid(r.stdout) };
  }
  if (dirs.scsiDir) {
    const r = await run(SCSI_ID_COMMAND, scsiIdArgs(path));
    if (r.code === 0 && r.stdout.split('\n', 1)[0] !== '') return { kind: 'scsi', lockspace: dirs.scsiDir, name: parseScsiId(r.stdout) };
  }
  return null;
}

/**
 * The block-device names of every path that needs one, or the error that refuses it.
 *
 * Fail closed: with an LVM or SCSI lockspace configured, a `/dev` disk whose LV UUID and SCSI id
 * cannot be read is refused, not named by its path. virtlockd would fall back to file naming for a
 * disk that is neither an LV nor a SCSI LUN; but a disk whose identity failed to read only this
 * once (lvs locking trouble, a udev race) would then get another lock file than its peers give it,
 * and two hosts could both hold one LV. A command that cannot run (lvs not installed) is an I/O error.
 */
export async function lookupBlockdevNames(paths: readonly string[], dirs: BlockdevDirs, run: RunCommand): Promise<Map<string, BlockdevName | Error>> {
  const out = new Map<string, BlockdevName | Error>();
  for (const p of new Set(paths)) {
    if (!needsBlockdevName(p, { fileLockspaceDir: null, lvmLockspaceDir: dirs.lvmDir ?? null, scsiLockspaceDir: dirs.scsiDir ?? null })) continue;
    try {
      // A symlink outside /dev is asked about by the /dev path it leads to (lvs names devices there).
      const name = await blockdevResourceName(blockdevLookupPath(p), dirs, run);
      const tried = [dirs.lvmDir ? 'no LV UUID from lvs' : '', dirs.scsiDir ? 'no SCSI id from scsi_id' : ''].filter(Boolean).join(' and ');
      const set = [dirs.lvmDir ? 'lvm_lockspace_dir' : '', dirs.scsiDir ? 'scsi_lockspace_dir' : ''].filter(Boolean).join(' / ');
      out.set(
        p,
        name ??
          new BadInputError(
            `block device ${p} has no identity vmlockd can read (${tried}); with ${set} set, a /dev disk is named only by that identity, as its peers name it, so it is refused rather than locked under another name`,
          ),
      );
    } catch (e) {
      out.set(p, e instanceof VmlockdError ? e : new VmlockdError('VMLOCKD_ERR_IO', `cannot read the identity of block device ${p}: ${(e as Error).message}`, { cause: e }));
    }
  }
  return out;
}

/** Timeout for one lvs / scsi_id run. */
const RUN_TIMEOUT_MS = 30_000;

/** Run a command without a shell; rejects only when it cannot run at all (not installed, timeout). */
export const runCommand: RunCommand = (cmd, args) =>
  new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: RUN_TIMEOUT_MS, maxBuffer: 1024 * 1024 }, (err, stdout) => {
      if (err && (typeof (err as NodeJS.ErrnoException).code === 'string' || err.killed)) {
        reject(new Error(`${cmd} could not run: ${err.killed ? `timed out after ${RUN_TIMEOUT_MS} ms` : err.message}`));
        return;
      }
      resolve({ stdout: String(stdout), code: err ? (typeof err.code === 'number' ? err.code : 1) : 0 });
    });
  });
