// What the virtlockd protocol server must remember across a vmlockd restart and the engine does not
// hold: the lockspaces clients created (virtlockd forgets them, and then refuses every ACQUIRE with
// "does not exist" until libvirtd restarts), and each owner's pid (the journal keys owners by uuid),
// so a VM that dies while vmlockd is down, or after, still has its locks released.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface OwnerRecord {
  readonly uuid: string;
  readonly name: string;
  readonly pid: number;
  /** The pid's start time when it registered (null if no such process), to detect pid reuse. */
  readonly start: string | null;
}

interface FileShape {
  readonly v: 1;
  readonly lockspaces: string[];
  readonly owners: OwnerRecord[];
}

export class ServerRegistry {
  readonly lockspaces = new Set<string>();
  readonly owners = new Map<string, OwnerRecord>();

  private constructor(readonly file: string) {}

  /** Reads the file; a missing file is an empty registry, a damaged one is set aside with a warning. */
  static load(file: string, warn: (msg: string) => void): ServerRegistry {
    const reg = new ServerRegistry(file);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`cannot read ${file}: ${(e as Error).message}; starting with no known lockspaces`);
      return reg;
    }
    try {
      const data = JSON.parse(text) as FileShape;
      if (data.v !== 1 || !Array.isArray(data.lockspaces) || !Array.isArray(data.owners)) throw new Error('expected {v: 1, lockspaces: [], owners: []}');
      for (const l of data.lockspaces) if (typeof l === 'string') reg.lockspaces.add(l);
      for (const o of data.owners) {
        if (typeof o?.uuid === 'string' && typeof o.pid === 'number') reg.owners.set(o.uuid, { uuid: o.uuid, name: String(o.name ?? ''), pid: o.pid, start: o.start ?? null });
      }
    } catch (e) {
      const aside = `${file}.damaged-${Date.now()}`;
      warn(`${file} is not a valid registry (${(e as Error).message}); moved it to ${aside} and starting with no known lockspaces`);
      try {
        fs.renameSync(file, aside);
      } catch {
        // left in place; the next save overwrites it
      }
    }
    return reg;
  }

  addLockspace(dir: string): void {
    if (this.lockspaces.has(dir)) return;
    this.lockspaces.add(dir);
    this.save();
  }

  /** Records the owner; writes only when its pid changed, so repeated REGISTERs cost no I/O. */
  setOwner(o: OwnerRecord): void {
    const prev = this.owners.get(o.uuid);
    if (prev && prev.pid === o.pid && prev.start === o.start && prev.name === o.name) return;
    this.owners.set(o.uuid, o);
    this.save();
  }

  dropOwner(uuid: string): void {
    if (this.owners.delete(uuid)) this.save();
  }

  /** Atomic replace: a crash mid-write leaves the old file, never half of the new one. */
  save(): void {
    const data: FileShape = { v: 1, lockspaces: [...this.lockspaces], owners: [...this.owners.values()] };
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(data) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }
}
