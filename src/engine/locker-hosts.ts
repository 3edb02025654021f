// The locker's host files: `<lockspace>/.hosts/<host-id>`, write-locked by the daemon for its whole
// life. The lock says "alive"; the record says who, where and with which lock-relevant settings.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VmlockdError } from './errors.js';
import { native as defaultNative, type NativeBinding } from './native.js';

const HOST_RECORD_SIZE = 1024;
export const HOSTS_DIR = '.hosts';

export interface HostRecord {
  readonly v: 1;
  readonly host: string;
  /** The machine's hostname, so a duplicate host id can say where the first one runs. */
  readonly machine: string;
  readonly pid: number;
  readonly started: string;
  readonly version: string;
  /** sha256 of the lock-relevant settings (see watchers/config.ts fingerprint). */
  readonly fingerprint: string;
  readonly heartbeat: string;
  /** The lockspace path as this host mounts it. */
  readonly lockspace: string;
  readonly stopped?: string;
}

export interface HostEntry {
  readonly host: string;
  /** Its host file is write-locked: a daemon holds it now. */
  readonly alive: boolean;
  readonly record?: HostRecord;
}

function encode(r: HostRecord): Buffer {
  const buf = Buffer.alloc(HOST_RECORD_SIZE, 0x20);
  const body = Buffer.from(JSON.stringify(r), 'utf8');
  body.copy(buf, 0, 0, Math.min(body.length, HOST_RECORD_SIZE - 1));
  buf[HOST_RECORD_SIZE - 1] = 0x0a;
  return buf;
}

function decode(buf: Buffer): HostRecord | undefined {
  try {
    const r = JSON.parse(buf.toString('utf8').trim()) as HostRecord;
    return r && r.v === 1 && typeof r.host === 'string' ? r : undefined;
  } catch {
    return undefined;
  }
}

export function checkHostId(id: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._@:-]{0,254}$/.test(id)) {
    throw new VmlockdError('VMLOCKD_ERR_CONFIG', `host id must be letters, digits and ._@:- (at most 255), got ${JSON.stringify(id)}`);
  }
  return id;
}

export class HostLock {
  private constructor(
    private fd: number,
    readonly file: string,
    private record: HostRecord,
    private readonly nat: NativeBinding,
    /** The lockspace as it was at the start: the host file is re-established only there. */
    private readonly pin: LockspacePin | undefined,
  ) {}

  /** Why the host file's lock is not known to be held right now (undefined: it is). */
  problem: string | undefined;

  /** Take this host's file; a second daemon with the same host id anywhere in the cluster is refused. */
  static acquire(lockspace: string, rec: Omit<HostRecord, 'v' | 'machine' | 'pid' | 'heartbeat'>, nat: NativeBinding = defaultNative): HostLock {
    const dir = path.join(lockspace, HOSTS_DIR);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, checkHostId(rec.host));
    const fd = lockHostFile(file, rec.host, lockspace, nat);
    const record: HostRecord = { v: 1, ...rec, machine: os.hostname(), pid: process.pid, heartbeat: rec.started };
    const lock = new HostLock(fd, file, record, nat, pinOf(lockspace));
    lock.write();
    return lock;
  }

  private write(): void {
    fs.writeSync(this.fd, encode(this.record), 0, HOST_RECORD_SIZE, 0);
  }

  /**
   * Write the heartbeat and make sure the host file is still ours: its lock held by this
   * description, on the file the path names. After a cluster-filesystem client died and the
   * lockspace was mounted again (ENOTCONN, EBADFD), or the file was removed, the file and its lock
   * are taken again on a fresh description. Returns a notice when that happened; throws, loudly,
   * when it cannot (the filesystem is still away, or another daemon now runs with this host id).
   */
  heartbeat(at: string, fingerprint: string): string | undefined {
    this.record = { ...this.record, heartbeat: at, fingerprint };
    let why: string | undefined;
    try {
      this.write();
    } catch (e) {
      why = `writing it failed: ${errnoOf(e)}`;
    }
    why ??= this.whyNotHeld();
    if (why === undefined) {
      this.problem = undefined;
      return undefined;
    }
    try {
      this.reestablish(why);
    } catch (e) {
      this.problem = (e as Error).message;
      throw e;
    }
    this.problem = undefined;
    return `host file ${this.file} re-established (${why}): this host id is protected again`;
  }

  /** undefined while this description holds the lock on the file the path names. */
  private whyNotHeld(): string | undefined {
    let ino: number;
    try {
      ino = fs.statSync(this.file).ino;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'it was removed';
      throw new VmlockdError('VMLOCKD_ERR_IO', `host file ${this.file} cannot be checked (will retry): ${errnoOf(e)}`, { cause: e });
    }
    let fd2: number;
    try {
      fd2 = fs.openSync(this.file, fs.constants.O_RDONLY);
    } catch (e) {
      throw new VmlockdError('VMLOCKD_ERR_IO', `host file ${this.file} cannot be checked (will retry): ${errnoOf(e)}`, { cause: e });
    }
    try {
      // From a second description our own lock shows as a conflict; nothing there means it is gone.
      if (this.nat.ofdGetLk(fd2, 'write', 0, 1) === null) return 'its lock was gone';
    } catch (e) {
      throw new VmlockdError('VMLOCKD_ERR_IO', `host file ${this.file} cannot be checked (will retry): ${errnoOf(e)}`, { cause: e });
    } finally {
      fs.closeSync(fd2);
    }
    try {
      if (fs.fstatSync(this.fd).ino !== ino) return 'it was replaced';
      // A no-op while this description holds it; fails if another does; re-takes it if it was dropped.
      if (!this.nat.ofdSetLk(this.fd, 'write', 0, 1)) return 'another process holds its lock';
    } catch (e) {
      return `its descriptor failed: ${errnoOf(e)}`;
    }
    return undefined;
  }

  /** A fresh description, locked before the old one is closed. */
  private reestablish(why: string): void {
    // Never in a directory that is not the lockspace any more (a mount point left bare while the
    // cluster filesystem is mounted again): a host file there protects the host id from nobody.
    const away = this.pin && lockspaceProblem(this.record.lockspace, this.pin);
    if (away !== undefined) throw new VmlockdError('VMLOCKD_ERR_IO', `host file ${this.file} lost (${why}) and cannot be re-established yet (will retry): lockspace ${this.record.lockspace}: ${away}`);
    // On the lockspace's own filesystem a removed lockspace is made again (lock files follow it).
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    let fd: number;
    try {
      fd = lockHostFile(this.file, this.record.host, this.record.lockspace, this.nat);
    } catch (e) {
      if (e instanceof VmlockdError && e.code === 'VMLOCKD_ERR_ALREADY_RUNNING' && this.stillHolds()) {
        throw new VmlockdError('VMLOCKD_ERR_IO', `host file ${this.file}: ${why}, but its lock still holds (will retry)`);
      }
      if (e instanceof VmlockdError && e.code === 'VMLOCKD_ERR_ALREADY_RUNNING') {
        throw new VmlockdError(
          'VMLOCKD_ERR_ALREADY_RUNNING',
          `HOST ID NOT PROTECTED: this daemon lost its host file (${why}) and cannot take it back: ${e.message}. ` +
            'Two daemons now run with one host id; stop one of them.',
        );
      }
      throw new VmlockdError('VMLOCKD_ERR_IO', `host file ${this.file} lost (${why}) and cannot be re-established yet (will retry): ${(e as Error).message}`, { cause: e });
    }
    const old = this.fd;
    this.fd = fd;
    this.write();
    try {
      fs.closeSync(old);
    } catch {
      // a dead cluster-filesystem descriptor
    }
  }

  private stillHolds(): boolean {
    try {
      return fs.fstatSync(this.fd).ino === fs.statSync(this.file).ino && this.nat.ofdSetLk(this.fd, 'write', 0, 1);
    } catch {
      return false;
    }
  }

  release(at: string): void {
    try {
      this.record = { ...this.record, heartbeat: at, stopped: at };
      this.write();
    } catch {
      // exiting anyway
    }
    try {
      fs.closeSync(this.fd);
    } catch {
      // the kernel drops the lock with the process
    }
  }
}

/** Open and write-lock a host file; refused, naming the holder, when another daemon holds it. */
function lockHostFile(file: string, host: string, lockspace: string, nat: NativeBinding): number {
  // O_NOFOLLOW: a symlink planted at this host's name is refused (ELOOP), never written through.
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  let granted: boolean;
  try {
    granted = nat.ofdSetLk(fd, 'write', 0, 1);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  if (!granted) {
    const buf = Buffer.alloc(HOST_RECORD_SIZE);
    let n = 0;
    try {
      n = fs.readSync(fd, buf, 0, HOST_RECORD_SIZE, 0);
    } finally {
      fs.closeSync(fd);
    }
    const other = decode(buf.subarray(0, n));
    const where = other ? `on machine ${other.machine} (pid ${other.pid}, started ${other.started})` : 'on another machine (no record)';
    throw new VmlockdError('VMLOCKD_ERR_ALREADY_RUNNING', `host id ${host} is already in use by a vmlockd running ${where} with lockspace ${lockspace}; give each host its own --host-id`);
  }
  return fd;
}

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** Every host that ever registered in this lockspace, alive or gone. */
export function listHosts(lockspace: string, nat: NativeBinding = defaultNative): HostEntry[] {
  const dir = path.join(lockspace, HOSTS_DIR);
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  // Host files are regular files: anything else placed in .hosts (a directory, a FIFO that would
  // block the open) is no host and must not sink or hang the whole view.
  const regular = names.filter((host) => {
    try {
      return fs.lstatSync(path.join(dir, host)).isFile();
    } catch {
      return false;
    }
  });
  return regular.map((host) => {
    const fd = fs.openSync(path.join(dir, host), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const alive = nat.ofdGetLk(fd, 'write', 0, 1) !== null;
      const buf = Buffer.alloc(HOST_RECORD_SIZE);
      const n = fs.readSync(fd, buf, 0, HOST_RECORD_SIZE, 0);
      const record = decode(buf.subarray(0, n));
      return { host, alive, ...(record ? { record } : {}) };
    } finally {
      fs.closeSync(fd);
    }
  });
}

export const ID_FILE = '.vmlockd-lockspace-id';
const ID_RE = /^[0-9a-f-]{36}$/;

/**
 * The id in a lockspace's id file, or undefined when there is none (the file or the directory is
 * missing). Read only: creates nothing. Throws for an unreadable or malformed id file.
 */
export function readLockspaceId(lockspace: string): string | undefined {
  const file = path.join(lockspace, ID_FILE);
  let id: string;
  try {
    id = fs.readFileSync(file, 'utf8').trim();
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw new VmlockdError('VMLOCKD_ERR_IO', `${file} cannot be read: ${errnoOf(e)}`, { cause: e });
  }
  if (!ID_RE.test(id)) throw new VmlockdError('VMLOCKD_ERR_IO', `${file} does not hold a lockspace id (got ${JSON.stringify(id.slice(0, 40))}); remove it to create a new one`);
  return id;
}

/** What identifies the lockspace a daemon started with: the id in its id file and its filesystem (st_dev). */
export interface LockspacePin {
  readonly id: string;
  readonly dev: number;
}

/** The lockspace's pin as it is now (undefined when its id file cannot be read). */
export function pinOf(lockspace: string): LockspacePin | undefined {
  try {
    return { id: fs.readFileSync(path.join(lockspace, ID_FILE), 'utf8').trim(), dev: fs.statSync(lockspace).dev };
  } catch {
    return undefined;
  }
}

/**
 * Why `lockspace` is not the lockspace this daemon started with (`pin`), or undefined when it is.
 * Read only, never creates anything. Its id file must hold the pinned id; a lockspace removed (or
 * replaced by an empty directory) on the filesystem it lived on may be re-created, but not on
 * another filesystem: a cluster filesystem whose client died and that is being mounted again leaves
 * its mount point a bare local directory (between `umount` and `mount`, or for as long as nothing
 * remounts it), and a lock file created there protects nothing, since no other host sees it.
 */
export function lockspaceProblem(lockspace: string, pin: LockspacePin): string | undefined {
  let id: string;
  try {
    id = fs.readFileSync(path.join(lockspace, ID_FILE), 'utf8').trim();
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') return `its id file ${ID_FILE} cannot be read (${errnoOf(e)})`;
    // The nearest directory that exists: on the lockspace's own filesystem, the lockspace was removed there.
    let dir = lockspace;
    for (;;) {
      try {
        if (fs.statSync(dir).dev === pin.dev) return undefined;
        return `its id file ${ID_FILE} is missing and ${dir} is on another filesystem than the lockspace was at start: its filesystem is not mounted there?`;
      } catch (e2) {
        const up = path.dirname(dir);
        if (errnoOf(e2) !== 'ENOENT' || up === dir) return `its id file ${ID_FILE} cannot be read (ENOENT) and ${dir} cannot be checked (${errnoOf(e2)})`;
        dir = up;
      }
    }
  }
  if (id !== pin.id) return `its id file holds ${JSON.stringify(id.slice(0, 40))}, not ${pin.id}: another lockspace is mounted there?`;
  return undefined;
}

/**
 * The lockspace's own id, created by the first daemon that uses it. The id is written whole into a
 * file of this daemon's own, which is then hard-linked to the shared name: link(2) never replaces
 * an existing name (one winner), and a reader never sees the name before its content (a plain
 * O_EXCL create left an empty file visible between the create and the write, and a second daemon
 * starting at that moment refused to start).
 */
export function lockspaceId(lockspace: string): string {
  const file = path.join(lockspace, ID_FILE);
  fs.mkdirSync(lockspace, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(file)) {
    const mine = `${file}.${process.pid}.${randomUUID()}`;
    fs.writeFileSync(mine, randomUUID() + '\n', { flag: 'wx', mode: 0o644 });
    try {
      fs.linkSync(mine, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      fs.rmSync(mine, { force: true });
    }
  }
  const id = fs.readFileSync(file, 'utf8').trim();
  if (!ID_RE.test(id)) throw new VmlockdError('VMLOCKD_ERR_IO', `${file} does not hold a lockspace id (got ${JSON.stringify(id.slice(0, 40))}); remove it to create a new one`);
  return id;
}
