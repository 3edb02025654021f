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
    private readonly fd: number,
    readonly file: string,
    private record: HostRecord,
  ) {}

  /** Take this host's file; a second daemon with the same host id anywhere in the cluster is refused. */
  static acquire(lockspace: string, rec: Omit<HostRecord, 'v' | 'machine' | 'pid' | 'heartbeat'>, nat: NativeBinding = defaultNative): HostLock {
    const dir = path.join(lockspace, HOSTS_DIR);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, checkHostId(rec.host));
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    if (!nat.ofdSetLk(fd, 'write', 0, 1)) {
      const buf = Buffer.alloc(HOST_RECORD_SIZE);
      const n = fs.readSync(fd, buf, 0, HOST_RECORD_SIZE, 0);
      fs.closeSync(fd);
      const other = decode(buf.subarray(0, n));
      const where = other ? `on machine ${other.machine} (pid ${other.pid}, started ${other.started})` : 'on another machine (no record)';
      throw new VmlockdError('VMLOCKD_ERR_ALREADY_RUNNING', `host id ${rec.host} is already in use by a vmlockd running ${where} with lockspace ${lockspace}; give each host its own --host-id`);
    }
    const record: HostRecord = { v: 1, ...rec, machine: os.hostname(), pid: process.pid, heartbeat: rec.started };
    const lock = new HostLock(fd, file, record);
    lock.write();
    return lock;
  }

  private write(): void {
    fs.writeSync(this.fd, encode(this.record), 0, HOST_RECORD_SIZE, 0);
  }

  heartbeat(at: string, fingerprint: string): void {
    this.record = { ...this.record, heartbeat: at, fingerprint };
    this.write();
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
  return names.map((host) => {
    const fd = fs.openSync(path.join(dir, host), fs.constants.O_RDONLY);
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

const ID_FILE = '.vmlockd-lockspace-id';

/** The lockspace's own id, created by the first daemon that uses it (O_EXCL: one winner). */
export function lockspaceId(lockspace: string): string {
  const file = path.join(lockspace, ID_FILE);
  fs.mkdirSync(lockspace, { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(file, randomUUID() + '\n', { flag: 'wx', mode: 0o644 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const id = fs.readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f-]{36}$/.test(id)) throw new VmlockdError('VMLOCKD_ERR_IO', `${file} does not hold a lockspace id (got ${JSON.stringify(id.slice(0, 40))}); remove it to create a new one`);
  return id;
}
