// Resource naming: a disk path as a requester wrote it becomes the resource (lock file) that stands for it.
// This is the only I/O before `decide`: realpath and stat of the disk image, never of a lock file.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkDiskCount } from './command-bounds.js';
import { identityOfStats, sameIdentity } from './disk-identity.js';
import { BadInputError, VmlockdError } from './errors.js';
import { native } from './native.js';
import { heldBy, type State } from './state.js';
import { isWellFormed, toWellFormed } from './unicode.js';
import type { Command, DiskRequest, ResolvedCommand, ResolvedDisk, ResourceRef } from './types.js';

export interface NamingRules {
  /** File lockspace directory; null means direct mode (lock byte 0 of the image itself). */
  readonly fileLockspaceDir: string | null;
  /** lvm_lockspace_dir: `/dev` disks named by their LV UUID in this directory (virtlockd's rule). */
  readonly lvmLockspaceDir?: string | null;
  /** scsi_lockspace_dir: `/dev` disks named by their SCSI id in this directory. */
  readonly scsiLockspaceDir?: string | null;
}

/** A `/dev` disk's name in the LVM or SCSI lockspace, looked up before resolution (it runs lvs / scsi_id). */
export interface BlockdevNameRef {
  readonly kind: 'lvm' | 'scsi';
  readonly lockspace: string;
  readonly name: string;
}

/** Disk path as given -> its block-device name, or the error that refuses it. */
export type BlockdevNames = ReadonlyMap<string, BlockdevNameRef | Error>;

/**
 * Does this path take its name from its block-device identity under these rules? A `/dev` path does
 * (libvirt's prefix test), and so does any path whose canonical form is a block device (a symlink to
 * an LV, a device node made outside /dev): otherwise one LV would get a second lock file by its path.
 */
export function needsBlockdevName(p: string, rules: NamingRules): boolean {
  if (!rules.lvmLockspaceDir && !rules.scsiLockspaceDir) return false;
  if (p.startsWith('/dev')) return true;
  try {
    return path.isAbsolute(p) && fs.statSync(p).isBlockDevice();
  } catch {
    return false;
  }
}

/**
 * The path to ask lvs / scsi_id about for a block device: the path itself under /dev, or the first
 * /dev path its symlinks lead to (those tools name devices under /dev). A device node outside /dev
 * is asked about as it is (and is refused if its identity does not read).
 */
export function blockdevLookupPath(p: string): string {
  let cur = path.resolve(p);
  for (let hops = 0; hops < 40 && !cur.startsWith('/dev/'); hops++) {
    try {
      cur = path.join(fs.realpathSync.native(path.dirname(cur)), path.basename(cur));
      if (cur.startsWith('/dev/') || !fs.lstatSync(cur).isSymbolicLink()) break;
      cur = path.resolve(path.dirname(cur), fs.readlinkSync(cur));
    } catch {
      break;
    }
  }
  return cur;
}

/** The disk paths of a command that need a block-device name looked up first. */
export function blockdevPaths(cmd: Command, rules: NamingRules): string[] {
  if (!rules.lvmLockspaceDir && !rules.scsiLockspaceDir) return [];
  const paths =
    cmd.kind === 'acquire' || cmd.kind === 'check' || cmd.kind === 'hand-over'
      ? cmd.disks.filter((d) => !d.named).map((d) => d.path)
      : cmd.kind === 'release'
        ? [...(cmd.paths ?? [])]
        : [];
  // A loop device over a block device (an LV, a LUN) is named as that device (resolveDisk): look its
  // backing device up too.
  const out: string[] = [];
  for (const p of paths) {
    if (typeof p !== 'string' || !needsBlockdevName(p, rules)) continue;
    out.push(p);
    const backing = loopBackingDevice(p);
    if (backing !== undefined && needsBlockdevName(backing, rules) && !out.includes(backing)) out.push(backing);
  }
  return out;
}

/** The backing block device of a loop device at `p`, if it is one over a block device (no error). */
function loopBackingDevice(p: string): string | undefined {
  try {
    if (!path.isAbsolute(p)) return undefined;
    const d = diskAt(canonicalPath(p));
    return d.node !== undefined && d.inode?.startsWith('blk:') ? d.canonical : undefined;
  } catch {
    return undefined;
  }
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function checkDiskPath(p: unknown, field = 'path'): string {
  if (typeof p !== 'string' || p.length === 0) throw new BadInputError(`${field} must be a non-empty string, got ${JSON.stringify(p)}`);
  if (!path.isAbsolute(p)) throw new BadInputError(`${field} must be an absolute path, got ${JSON.stringify(p)}`);
  if (p.includes('\0')) throw new BadInputError(`${field} must not contain a NUL byte, got ${JSON.stringify(p)}`);
  if (p.length > 4096) throw new BadInputError(`${field} is longer than PATH_MAX (4096 bytes)`);
  refuseProc(p, field);
  // U+FFFD is what a decoder puts for invalid UTF-8 (a domain XML in another encoding): the path it
  // leaves names no file, and locking it would protect nothing.
  if (p.includes('\uFFFD')) throw new BadInputError(`${field} contains U+FFFD (invalid UTF-8 in the source?), got ${JSON.stringify(p)}`);
  // A lone UTF-16 surrogate (a JSON "\ud800" escape, an XML &#xD800;) has no UTF-8 form: the file
  // system would be handed U+FFFD in its place, and SQLite other bytes than the journal's hash.
  if (!isWellFormed(p)) throw new BadInputError(`${field} contains a lone UTF-16 surrogate (not valid Unicode text), got ${JSON.stringify(p)}`);
  return p;
}

/**
 * The owner as journaled: a name holding a lone UTF-16 surrogate (a JSON "\ud800" escape) has no
 * UTF-8 form, so SQLite would store other bytes than the ones the fact's hash covers and the
 * journal's chain would no longer verify. The name is a label (the uuid is the identity), and a
 * refusal would leave a VM unable to release its disks: each such surrogate becomes U+FFFD.
 */
export function wellFormedOwner<O extends { readonly uuid: string; readonly name?: string }>(o: O): O {
  if (isWellFormed(o.uuid) && (o.name === undefined || isWellFormed(o.name))) return o;
  return { ...o, uuid: toWellFormed(o.uuid), ...(o.name !== undefined ? { name: toWellFormed(o.name) } : {}) };
}

/**
 * /proc/self/fd/N, /proc/PID/root/...: resolved in the daemon they name its own descriptors or
 * another process's view, not the disk the VM opens; a lock on that protects nothing.
 */
function refuseProc(p: string, field: string): void {
  // An absolute path without "proc" in it cannot resolve to /proc (resolving only drops components):
  // no path.resolve, whose string every command's disks made (issue 13).
  if (!p.includes('proc') && path.isAbsolute(p)) return;
  const lexical = path.resolve(p);
  if (lexical === '/proc' || lexical.startsWith('/proc/')) {
    throw new BadInputError(`${field} ${p} is under /proc, which resolves inside vmlockd, not in the VM: name the disk by its own path`);
  }
}

/**
 * The canonical form of a disk path: symlinks, `//`, `.` and `..` resolved.
 * A disk that does not exist yet keeps its lexical form below the deepest existing directory,
 * whose symlinks are still resolved.
 */
export function canonicalPath(p: string): string {
  refuseProc(p, 'disk path');
  // A device path keeps its own name: realpath would turn /dev/vg/lv or /dev/disk/by-id/... into
  // /dev/dm-N or /dev/sdX, numbers local to each host, and two hosts would name one disk apart.
  if (p.startsWith('/dev/')) return path.resolve(p);
  try {
    return fs.realpathSync.native(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'ELOOP' || code === 'ENAMETOOLONG' || code === 'EPERM') {
      throw new BadInputError(`cannot resolve disk path ${p}: ${code}`);
    }
    if (code !== 'ENOENT' && code !== 'ENOTDIR') {
      throw new VmlockdError('VMLOCKD_ERR_IO', `cannot resolve disk path ${p}: ${(e as Error).message}`, { cause: e });
    }
  }
  const lexical = path.resolve(p);
  const parent = path.dirname(lexical);
  if (parent === lexical) return lexical;
  return path.join(canonicalPath(parent), path.basename(lexical));
}

/**
 * The identity `resolveDisk` unifies aliases by, if the disk exists: "dev:ino:btime" (btime the
 * birth time in ns, statx; "dev:ino" where the filesystem records none), or "blk:rdev" for a block
 * device; a loop device (or a partition of one) has its backing file's identity (diskAt). Undefined
 * when the disk does not exist or a loop device's backing file cannot be told (never throws).
 */
export function diskIdentity(p: string): string | undefined {
  try {
    return diskAt(p).inode;
  } catch {
    return undefined;
  }
}

/** The identity of the node at `p` itself (a loop device's own "blk:rdev"). */
function inodeOf(p: string): string | undefined {
  try {
    return identityOfStats(fs.statSync(p, { bigint: true }));
  } catch {
    return undefined;
  }
}

/** A disk as resolution names it: its canonical path and identity (undefined: it does not exist). */
export interface DiskAt {
  readonly canonical: string;
  readonly inode?: string;
  /** Set when `canonical` is a loop device's backing file: the loop device node's own path and identity. */
  readonly node?: { readonly canonical: string; readonly inode: string };
}

/** Loop devices over loop devices followed at most this deep. */
const LOOP_DEPTH = 8;

/**
 * The disk at a canonical path (review27 F1). A loop device, or a partition of one, is another name
 * of the file it reads: the disk is that backing file (its canonical path and identity), so the loop
 * device and the image are one resource and, in direct mode, one locked inode. Anything else is
 * itself. Throws BadInputError for a loop device whose backing file no path here names (deleted,
 * or a path from another mount namespace that names another file): which disk it is cannot be told.
 */
export function diskAt(canonical: string, depth = 0): DiskAt {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(canonical, { bigint: true });
  } catch {
    return { canonical };
  }
  const own = identityOfStats(st);
  if (!st.isBlockDevice()) return { canonical, inode: own };
  const backing = loopBackingFile(canonical, st.rdev);
  if (backing === undefined) return { canonical, inode: own };
  if (depth >= LOOP_DEPTH) throw new BadInputError(`loop device ${canonical}: loop devices stacked more than ${LOOP_DEPTH} deep`);
  const inner = diskAt(canonicalPath(backing), depth + 1);
  if (inner.inode === undefined) throw new BadInputError(`loop device ${canonical} reads ${backing}, which is gone: cannot tell which disk it is`);
  return { canonical: inner.canonical, inode: inner.inode, node: { canonical, inode: own } };
}

/** glibc's major() and minor() of a dev_t. */
function devMajor(d: bigint): number {
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
}
function devMinor(d: bigint): number {
  return Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
}

/**
 * The path /sys/dev/block/MAJ:MIN/loop/backing_file names for the block device `rdev`: a loop
 * device's, or for a partition of a loop device (loopNpM) its whole device's. Undefined for a block
 * device that is no bound loop device or partition of one, or where sysfs is not mounted. `sysRoot`
 * for tests.
 */
export function loopBackingPath(rdev: bigint, sysRoot = '/sys'): string | undefined {
  let dir: string;
  try {
    dir = fs.realpathSync.native(path.join(sysRoot, 'dev', 'block', `${devMajor(rdev)}:${devMinor(rdev)}`));
  } catch {
    return undefined;
  }
  // A partition's directory sits in its whole device's.
  if (fs.existsSync(path.join(dir, 'partition'))) dir = path.dirname(dir);
  let raw: string;
  try {
    raw = fs.readFileSync(path.join(dir, 'loop', 'backing_file'), 'utf8');
  } catch (e) {
    // No loop/ directory: not a loop device, or one bound to no file.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BadInputError(`cannot read the backing file of block device ${devMajor(rdev)}:${devMinor(rdev)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (raw.endsWith('\n')) raw = raw.slice(0, -1);
  return raw === '' ? undefined : raw;
}

/**
 * The file a loop device (or a partition of one) at `node` reads (loopBackingPath), checked against
 * the device's own answer (LOOP_GET_STATUS64: the backing file's dev and inode). Undefined for a
 * block device that is no bound loop device.
 */
function loopBackingFile(node: string, rdev: bigint): string | undefined {
  const raw = loopBackingPath(rdev);
  if (raw === undefined) return undefined;
  let status: { major: number; minor: number; ino: string } | null | undefined;
  try {
    status = native.loopStatus?.(node);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // An unprivileged reader (a CLI query) cannot open the node: the sysfs path alone must do.
    if (code !== 'EACCES' && code !== 'EPERM') throw new BadInputError(`cannot ask loop device ${node} which file it reads: ${code ?? (e as Error).message}`);
  }
  if (status === null) throw new BadInputError(`loop device ${node} was detached while it was looked at: ask again`);
  let bst: fs.BigIntStats | undefined;
  try {
    bst = path.isAbsolute(raw) ? fs.statSync(raw, { bigint: true }) : undefined;
  } catch {
    bst = undefined;
  }
  const same = bst !== undefined && (status === undefined || (devMajor(bst.dev) === status.major && devMinor(bst.dev) === status.minor && bst.ino === BigInt(status.ino)));
  if (same) return raw;
  if (raw.endsWith(' (deleted)')) {
    throw new BadInputError(`loop device ${node} reads a deleted file (${raw}): no path names its disk, so no lock can stand for it`);
  }
  throw new BadInputError(`loop device ${node} reads ${raw}, but that path names no such file here (another mount namespace?): cannot tell which disk it is`);
}

/** "dev:ino" of a "dev:ino:btime" identity: how a journal written before birth times recorded it. */
function withoutBirth(inode: string): string | undefined {
  const parts = inode.split(':');
  return parts.length === 3 && parts[0] !== 'blk' ? `${parts[0]}:${parts[1]}` : undefined;
}

/** A resource named by the requester (virtlockd protocol): a lockspace directory and a name in it. */
function resolveNamed(req: DiskRequest & { named: NonNullable<DiskRequest['named']> }, state: State, inCommand?: Map<string, ResourceRef>, release = false): ResolvedDisk {
  const { lockspace, name, create } = req.named;
  if (lockspace === '') {
    // virtlockd's default lockspace: the name is the file to lock (a direct lease on the image).
    const file = checkDiskPath(name, 'resource name in the default lockspace');
    // A loop device's lease is a lease on its backing file (diskAt).
    const disk = diskAt(canonicalPath(file));
    const { canonical, inode } = disk;
    // An image this host holds under another name (a file-lockspace lock taken through the API, a
    // hard link, a loop device over it) is that resource: a direct lease beside it would let two
    // owners hold one disk.
    const held = heldAlias(disk, state, inCommand);
    if (held !== undefined) return { path: req.path, mode: req.mode, resource: held };
    if (!release) refuseRenamedAway(file, canonical, inode, state);
    const resource: ResourceRef = { id: canonical, name, lockspace: '', kind: 'direct', canonical, ...(inode !== undefined ? { inode } : {}), create };
    if (inode !== undefined) inCommand?.set(inode, resource);
    return { path: req.path, mode: req.mode, resource };
  }
  checkDiskPath(lockspace, 'lockspace');
  // virtlockd accepts "../x" here and opens whatever it names; a resource name is one file name.
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new BadInputError(`resource name must be a single file name inside the lockspace, got ${JSON.stringify(name)}`);
  }
  const id = inLockspace(lockspace, name);
  // The disk path behind a SHA-256 name is known when this host holds it; otherwise the name must do.
  const known = state.resources.get(id)?.ref.canonical;
  return { path: req.path, mode: req.mode, resource: { id, name, lockspace, kind: 'file', canonical: known ?? id, create } };
}

/** Normalized lockspace directories with a trailing '/', by the path a command names (a few per host). */
const lockspacePrefix = new Map<string, string>();

/**
 * path.join(lockspace, name) for `name` one plain file name (not '', '.', '..', no '/'): the
 * lockspace's normalized prefix made once, then one concatenation (issue 13: every named disk).
 */
export function inLockspace(lockspace: string, name: string): string {
  let prefix = lockspacePrefix.get(lockspace);
  if (prefix === undefined) {
    if (lockspacePrefix.size >= 1024) lockspacePrefix.clear();
    prefix = path.join(lockspace, '/');
    lockspacePrefix.set(lockspace, prefix);
  }
  return prefix + name;
}

/**
 * The resource that already stands for this inode, if any: one held on this host, or one named
 * earlier in the same command (`inCommand`, inode -> resource). It is that resource itself, whatever
 * naming produced it (a direct lease of the virtlockd protocol, a file-lockspace lock, an LV's UUID):
 * naming the same disk anew under the current rules would give it a second lock file.
 *
 * Same dev, inode and birth time is the same disk even when the held path no longer names it (a
 * disk renamed under its lock: QEMU still writes it through its descriptor). Without a birth time
 * (a filesystem that records none, a lock journalled before birth times were) a held disk's inode
 * counts only while its held path still names it: a disk deleted under its lock can hand its inode
 * number to a new file at once (ext4 does), and that new file is another disk.
 */
function aliasOf(inode: string, canonical: string, state: State, inCommand: Map<string, ResourceRef> | undefined): ResourceRef | undefined {
  const earlier = inCommand?.get(inode);
  if (earlier !== undefined) return earlier;
  const legacy = withoutBirth(inode);
  let found: ResourceRef | undefined;
  for (const key of legacy !== undefined ? [inode, legacy] : [inode]) {
    const ids = state.byInode.get(key);
    if (ids === undefined) continue;
    const born = withoutBirth(key) !== undefined;
    for (const id of [...ids].sort()) {
      const held = state.resources.get(id);
      if (!held) continue;
      if (held.ref.canonical === canonical) return held.ref;
      // Prefer the lexically first held path, so the answer does not depend on the order of facts.
      if ((found === undefined || held.ref.canonical < found.canonical) && (born || inodeOf(held.ref.canonical) === inode)) found = held.ref;
    }
    if (found !== undefined) return found;
  }
  return found;
}

/**
 * The held resource that stands for this disk by identity, if any; for a loop device also one held
 * by the node's own identity (a lock journaled before loop devices were named by their backing file).
 */
function heldAlias(disk: DiskAt, state: State, inCommand: Map<string, ResourceRef> | undefined): ResourceRef | undefined {
  const held = disk.inode !== undefined ? aliasOf(disk.inode, disk.canonical, state, inCommand) : undefined;
  if (held !== undefined || disk.node === undefined) return held;
  return aliasOf(disk.node.inode, disk.node.canonical, state, inCommand);
}

/**
 * A disk locked in place is held under its path (the resource id) but is not its path: renamed or
 * replaced under its lock, that path may name another file now. A request to lock that other file
 * would be answered for the held disk ("already" to its holder, though nothing locks the new file;
 * "held" to anyone else), and it cannot get a resource of its own while the held disk keeps the
 * name: refused, saying so. A release by that name still names the held disk (its holder knows it by it).
 */
function refuseRenamedAway(given: string, canonical: string, inode: string | undefined, state: State): void {
  if (inode === undefined) return;
  const res = state.resources.get(canonical);
  if (res === undefined || res.ref.kind !== 'direct' || res.ref.inode === undefined || sameIdentity(res.ref.inode, inode)) return;
  const vms = [...res.holders.values()].map((h) => `VM ${h.owner.name ?? h.owner.uuid}`).join(', ');
  throw new BadInputError(
    `disk ${given} is another file than the disk ${vms} holds locked in place under that name (it was renamed or replaced under its lock); a lock on this file can be taken once that disk is released (by its old name or its new one)`,
  );
}

/**
 * Resolve one disk. `inCommand` carries the inodes already resolved by the same command, so two
 * hard links named together become one resource (and are merged by `decide`). `release`: for a
 * release, which names a held disk by the path its holder knows (refuseRenamedAway() does not apply).
 */
export function resolveDisk(req: DiskRequest, rules: NamingRules, state: State, inCommand?: Map<string, ResourceRef>, blockdev?: BlockdevNames, release = false): ResolvedDisk {
  // The request itself, not a copy: the spread was only for its type (issue 13: every protocol call).
  if (req.named) return resolveNamed(req as DiskRequest & { named: NonNullable<DiskRequest['named']> }, state, inCommand, release);
  const given = checkDiskPath(req.path, 'disk path');
  if (req.create !== undefined) checkExists(given, req.create);
  // A loop device (or a partition of one) is the disk of its backing file: named, identified and in
  // direct mode locked as that file (diskAt).
  const disk = diskAt(canonicalPath(given));
  const { canonical, inode } = disk;
  // A bind mount, hard link, symlink, device node or loop device reaches the same inode under a path
  // realpath cannot unify: while one alias is held on this host (or named earlier in this command),
  // every other alias is that same resource.
  const held = heldAlias(disk, state, inCommand);
  if (held !== undefined) return { path: given, mode: req.mode, resource: held };
  let resource: ResourceRef;
  const named = disk.node === undefined ? given : canonical;
  if (needsBlockdevName(named, rules)) {
    resource = resolveBlockdev(named, canonical, inode, blockdev, state);
  } else if (rules.fileLockspaceDir !== null) {
    const name = sha256Hex(canonical);
    resource = {
      id: path.join(rules.fileLockspaceDir, name),
      name,
      lockspace: rules.fileLockspaceDir,
      kind: 'file',
      canonical,
      ...(inode !== undefined ? { inode } : {}),
    };
  } else {
    // A release names a held disk by the path its holder knows, even when that path names another
    // file or none now (the disk was renamed under its lock).
    const named = release ? state.resources.get(canonical) : undefined;
    if (named !== undefined && named.ref.kind === 'direct') return { path: given, mode: req.mode, resource: named.ref };
    if (inode === undefined) {
      throw new BadInputError(`disk ${given} does not exist; in direct mode (no file lockspace) the image itself is locked`);
    }
    if (!release) refuseRenamedAway(given, canonical, inode, state);
    resource = { id: canonical, name: canonical, lockspace: '', kind: 'direct', canonical, inode };
  }
  if (inode !== undefined) inCommand?.set(inode, resource);
  return { path: given, mode: req.mode, resource };
}

/**
 * The front doors' rule (control API, CLI, JSON lines): a disk must exist unless the caller says it
 * will be created, and is never a directory. The libvirt sources and the virtlockd protocol may name
 * disks that do not exist yet (autocreate leases) and do not ask for this.
 */
function checkExists(given: string, create: boolean): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(given);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'ELOOP' || code === 'ENAMETOOLONG' || code === 'EPERM') throw new BadInputError(`cannot stat disk ${given}: ${code}`);
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new VmlockdError('VMLOCKD_ERR_IO', `cannot stat disk ${given}: ${(e as Error).message}`, { cause: e });
    if (create) return;
    throw new BadInputError(`disk ${given} does not exist; a lock on a mistyped path protects nothing (say the disk will be created: --create, or "create": true)`);
  }
  if (st.isDirectory()) throw new BadInputError(`disk ${given} is a directory, not a disk image`);
}

/** A block device under an LVM or SCSI lockspace: named by its LV UUID or SCSI id, as virtlockd names it. */
function resolveBlockdev(given: string, canonical: string, inode: string | undefined, blockdev: BlockdevNames | undefined, state: State): ResourceRef {
  const found = blockdev?.get(given);
  if (found === undefined || found instanceof Error) {
    // A disk held under its identity stays nameable (a release must not fail because lvs does now).
    for (const res of state.resources.values()) {
      if ((res.ref.kind === 'lvm' || res.ref.kind === 'scsi') && (res.ref.canonical === canonical || (inode !== undefined && res.ref.inode === inode))) {
        return res.ref;
      }
    }
    if (found === undefined) throw new VmlockdError('VMLOCKD_ERR_INTERNAL', `block device ${given} was not looked up before resolution`);
    throw found;
  }
  return {
    id: path.join(found.lockspace, found.name),
    name: found.name,
    lockspace: found.lockspace,
    kind: found.kind,
    canonical,
    ...(inode !== undefined ? { inode } : {}),
  };
}

/**
 * A path a release names: the resource it resolves to, or, when the owner holds none such, the one
 * the owner holds under exactly this path as written (a loop device detached and bound to another
 * file since, or one whose backing file can no longer be told: the journaled resource stays the
 * disk it was, and its release must not fail or miss it).
 */
function resolveReleased(p: string, owner: string, rules: NamingRules, state: State, inCommand: Map<string, ResourceRef> | undefined, blockdev: BlockdevNames | undefined): ResolvedDisk {
  const byPath = (): ResolvedDisk | undefined => {
    const res = heldBy(state, owner).find((r) => r.holders.get(owner)?.path === p);
    return res === undefined ? undefined : { path: p, mode: 'exclusive', resource: res.ref };
  };
  let r: ResolvedDisk;
  try {
    r = resolveDisk({ path: p, mode: 'exclusive' }, rules, state, inCommand, blockdev, true);
  } catch (e) {
    const found = byPath();
    if (found !== undefined) return found;
    throw e;
  }
  if (state.resources.get(r.resource.id)?.holders.has(owner)) return r;
  return byPath() ?? r;
}

export function resolveCommand(command: Command, rules: NamingRules, state: State, blockdev?: BlockdevNames): ResolvedCommand {
  const owner = wellFormedOwner(command.owner);
  const cmd = owner === command.owner ? command : { ...command, owner };
  switch (cmd.kind) {
    case 'acquire':
    case 'check':
    case 'hand-over': {
      checkDiskCount(cmd.kind, cmd.disks.length);
      // One disk cannot alias an earlier one of its command: no map for it (issue 13: every protocol call).
      const inCommand = cmd.disks.length > 1 ? new Map<string, ResourceRef>() : undefined;
      const resolved: ResolvedDisk[] = [];
      for (const d of cmd.disks) resolved.push(resolveDisk(d, rules, state, inCommand, blockdev));
      return { ...cmd, resolved };
    }
    case 'release': {
      if (cmd.paths === undefined && cmd.named === undefined) return cmd;
      const inCommand = (cmd.paths?.length ?? 0) + (cmd.named?.length ?? 0) > 1 ? new Map<string, ResourceRef>() : undefined;
      // Paths first, then named disks, in one array.
      const resolved: ResolvedDisk[] = [];
      if (cmd.paths !== undefined) for (const p of cmd.paths) resolved.push(resolveReleased(p, cmd.owner.uuid, rules, state, inCommand, blockdev));
      if (cmd.named !== undefined) for (const d of cmd.named) resolved.push(resolveDisk(d, rules, state, inCommand, blockdev, true));
      return { ...cmd, resolved };
    }
    case 'observe':
      return cmd;
    default: {
      const _exhaustive: never = cmd;
      return _exhaustive;
    }
  }
}
