// What the virtlockd protocol server must remember across a vmlockd restart and the engine does not
// hold: the lockspaces clients created (virtlockd forgets them, and then refuses every ACQUIRE with
// "does not exist" until libvirtd restarts), each owner pid that may hold locks (the journal keys
// owners by uuid), and which owner pid took each lease (virtlockd's close rule is keyed by that pid),
// so a VM that dies while vmlockd is down, or after, still has exactly its own locks released.
//
// The file is a snapshot line followed by one line per change, appended with one small write: a
// burst of 4,000 REGISTERs costs 4,000 appends, not 4,000 rewrites of a growing file, and a SIGKILL
// right after an ACQUIRE still finds its pid. When the change lines outgrow the snapshot the file is
// compacted (a new snapshot, written to a temporary file and renamed over the old one).
import * as fs from 'node:fs';
import * as path from 'node:path';

/** File in the state directory that keeps the protocol's lockspaces and owner pids across restarts. */
export const REGISTRY_FILE = 'virtlockd-server.json';

export interface OwnerRecord {
  readonly uuid: string;
  readonly name: string;
  readonly pid: number;
  /** The pid's start time when it registered (null if no such process), to detect pid reuse. */
  readonly start: string | null;
}

/** One protocol holding: the owner pids that took it (a pid twice for a stacked shared acquire). */
export interface HoldRecord {
  readonly resource: string;
  readonly uuid: string;
  readonly pids: number[];
}

interface Snapshot {
  readonly v: 1 | 2;
  readonly lockspaces: string[];
  readonly owners: OwnerRecord[];
  readonly holds?: HoldRecord[];
}

type Change =
  | { readonly op: 'lockspace'; readonly dir: string }
  | { readonly op: 'owner'; readonly owner: OwnerRecord }
  | { readonly op: 'drop-owner'; readonly pid: number }
  | { readonly op: 'pids'; readonly resource: string; readonly uuid: string; readonly pids: number[] };

/** Change lines tolerated before a compaction, at least; more when the snapshot itself is large. */
const MIN_CHANGES_BEFORE_COMPACT = 1000;

export class ServerRegistry {
  readonly lockspaces = new Set<string>();
  /** Keyed by owner pid: two QEMUs of one VM (uuid) are two owners, as in virtlockd. */
  readonly owners = new Map<number, OwnerRecord>();
  /** resource id -> owner uuid -> the owner pids that took it. */
  readonly holds = new Map<string, Map<string, readonly number[]>>();
  private fd: number | null = null;
  private changes = 0;

  private constructor(
    readonly file: string,
    private readonly warn: (msg: string) => void,
  ) {}

  /** Reads the file; a missing file is an empty registry, a damaged one is set aside with a warning. */
  static load(file: string, warn: (msg: string) => void): ServerRegistry {
    const reg = new ServerRegistry(file, warn);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`cannot read ${file}: ${(e as Error).message}; starting with no known lockspaces`);
      return reg;
    }
    const lines = text.split('\n');
    try {
      const data = JSON.parse(lines[0] ?? '') as Snapshot;
      if ((data.v !== 1 && data.v !== 2) || !Array.isArray(data.lockspaces) || !Array.isArray(data.owners)) throw new Error('expected {v: 2, lockspaces: [], owners: [], holds: []}');
      for (const l of data.lockspaces) if (typeof l === 'string') reg.lockspaces.add(l);
      for (const o of data.owners) reg.applyOwner(o);
      for (const h of data.holds ?? []) reg.applyPids(h);
    } catch (e) {
      const aside = `${file}.damaged-${Date.now()}`;
      warn(`${file} is not a valid registry (${(e as Error).message}); moved it to ${aside} and starting with no known lockspaces`);
      try {
        fs.renameSync(file, aside);
      } catch {
        // left in place; the next compaction overwrites it
      }
      return reg;
    }
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      try {
        reg.apply(JSON.parse(line) as Change);
      } catch {
        // A line torn by a crash mid-append: the changes before it stand.
        warn(`${file}: line ${i + 1} is damaged (a crash while it was written?); ignored`);
      }
    }
    return reg;
  }

  /**
   * The lockspaces a registry file names, read without side effects (a damaged file or line is
   * skipped, never moved aside): for the start's scan of lock files the journal forgot.
   */
  static lockspacesIn(file: string): string[] {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return [];
    }
    const out = new Set<string>();
    text.split('\n').forEach((line, i) => {
      try {
        const v = JSON.parse(line) as Partial<Snapshot> & Partial<{ op: string; dir: unknown }>;
        if (i === 0 && Array.isArray(v.lockspaces)) for (const l of v.lockspaces) if (typeof l === 'string') out.add(l);
        if (i > 0 && v.op === 'lockspace' && typeof v.dir === 'string') out.add(v.dir);
      } catch {
        // damaged: what the rest names stands
      }
    });
    return [...out];
  }

  private apply(c: Change): void {
    switch (c.op) {
      case 'lockspace':
        if (typeof c.dir === 'string') this.lockspaces.add(c.dir);
        return;
      case 'owner':
        this.applyOwner(c.owner);
        return;
      case 'drop-owner':
        this.owners.delete(c.pid);
        return;
      case 'pids':
        this.applyPids(c);
        return;
      default:
        return;
    }
  }

  private applyOwner(o: OwnerRecord | undefined): void {
    if (typeof o?.uuid === 'string' && typeof o.pid === 'number') this.owners.set(o.pid, { uuid: o.uuid, name: String(o.name ?? ''), pid: o.pid, start: o.start ?? null });
  }

  private applyPids(h: HoldRecord | undefined): void {
    if (typeof h?.resource !== 'string' || typeof h.uuid !== 'string' || !Array.isArray(h.pids)) return;
    const pids = h.pids.filter((p) => typeof p === 'number');
    let m = this.holds.get(h.resource);
    if (pids.length === 0) {
      m?.delete(h.uuid);
      if (m?.size === 0) this.holds.delete(h.resource);
      return;
    }
    if (!m) this.holds.set(h.resource, (m = new Map()));
    m.set(h.uuid, pids);
  }

  addLockspace(dir: string): void {
    if (this.lockspaces.has(dir)) return;
    this.lockspaces.add(dir);
    this.append({ op: 'lockspace', dir });
  }

  /** Records the owner pid (written only when something about it changed). */
  setOwner(o: OwnerRecord): void {
    const prev = this.owners.get(o.pid);
    if (prev && prev.uuid === o.uuid && prev.start === o.start && prev.name === o.name) return;
    this.owners.set(o.pid, o);
    this.append({ op: 'owner', owner: o });
  }

  dropOwner(pid: number): void {
    if (this.owners.delete(pid)) this.append({ op: 'drop-owner', pid });
  }

  pidsOf(resource: string, uuid: string): readonly number[] {
    return this.holds.get(resource)?.get(uuid) ?? [];
  }

  /** The owner pids that took one holding; an empty list forgets the holding. */
  setPids(resource: string, uuid: string, pids: readonly number[]): void {
    const prev = this.pidsOf(resource, uuid);
    if (samePids(prev, pids)) return;
    // One copy, kept in the table and written (issue 13: an ACQUIRE and a RELEASE each change one).
    const copy = pids.slice();
    let m = this.holds.get(resource);
    if (copy.length === 0) {
      m?.delete(uuid);
      if (m?.size === 0) this.holds.delete(resource);
    } else {
      if (!m) this.holds.set(resource, (m = new Map()));
      m.set(uuid, copy);
    }
    this.append({ op: 'pids', resource, uuid, pids: copy });
  }

  private append(c: Change): void {
    try {
      if (this.fd === null || this.changes >= Math.max(MIN_CHANGES_BEFORE_COMPACT, 2 * (this.owners.size + this.holds.size))) {
        this.compact();
        return;
      }
      fs.writeSync(this.fd, JSON.stringify(c) + '\n');
      this.changes++;
    } catch (e) {
      this.warn(`cannot save ${this.file}: ${(e as Error).message}; a restart would forget this change`);
      this.close();
    }
  }

  /** A new snapshot of everything, replacing the file atomically; later changes append to it. */
  compact(): void {
    this.close();
    const holds: HoldRecord[] = [];
    for (const [resource, m] of this.holds) for (const [uuid, pids] of m) holds.push({ resource, uuid, pids: [...pids] });
    const data: Snapshot = { v: 2, lockspaces: [...this.lockspaces], owners: [...this.owners.values()], holds };
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(data) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, this.file);
    this.fd = fs.openSync(this.file, 'a');
    this.changes = 0;
  }

  close(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // nothing to do
    }
    this.fd = null;
  }
}

function samePids(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
