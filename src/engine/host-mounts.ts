// The shared filesystems each host mounts, published in `<lockspace>/.mounts/<host-id>.json`, so that
// `vmlockd cluster` can warn when one filesystem is mounted at different paths: in lockspace mode a
// disk's lock file is named by its path, and one image named by two paths gets two lock files (see
// docs/operations.md, "Every host must name a disk by the same path"). Not a lock file: nothing here
// takes or tests a lock.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const MOUNTS_DIR = '.mounts';

/** Filesystem types that several hosts can mount at once (network and cluster filesystems). */
const SHARED_TYPES = /^(nfs4?|cifs|smb3|ceph|fuse\.ceph(fs)?|fuse\.glusterfs|glusterfs|ocfs2|gfs2|lustre|9p|virtiofs|beegfs|gpfs|fuse\.sshfs)$/;

export interface SharedMount {
  /** What is mounted (`server:/export`, `host:/volume`), as the kernel reports it. */
  readonly source: string;
  /** The directory of that filesystem the mount shows (a bind mount of a subdirectory has its own). */
  readonly root: string;
  readonly fstype: string;
  readonly mountpoint: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The shared-filesystem mounts in a /proc/PID/mountinfo text (proc(5)). */
export function sharedMounts(mountinfo: string): SharedMount[] {
  const out: SharedMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const pre = line.slice(0, dash).split(' ');
    const post = line.slice(dash + 3).split(' ');
    const fstype = post[0];
    if (pre.length < 5 || fstype === undefined || post[1] === undefined || !SHARED_TYPES.test(fstype)) continue;
    out.push({ source: unescape(post[1]), root: unescape(pre[3]!), fstype, mountpoint: unescape(pre[4]!) });
  }
  return out;
}

function under(p: string, mountpoint: string): boolean {
  return p === mountpoint || p.startsWith(mountpoint === '/' ? '/' : `${mountpoint}/`);
}

/** The mount (of `mounts`) a path lies in: the longest mount point that contains it. */
function mountOf(p: string, mounts: readonly SharedMount[]): SharedMount | undefined {
  let best: SharedMount | undefined;
  for (const m of mounts) if (under(p, m.mountpoint) && (best === undefined || m.mountpoint.length > best.mountpoint.length)) best = m;
  return best;
}

const keyOf = (m: SharedMount) => `${m.source}\0${m.root}`;

/**
 * Warnings for filesystems (source and root) that the hosts mount at more than one path: on one host
 * twice, or on two hosts at different places. `byHost`: host id -> its shared mounts. `paths`: host
 * id -> the paths that matter on that host (the lockspace as it mounts it, the disks it holds): only
 * a filesystem holding one of them is reported, so a share that stores no disk of this lockspace
 * (mounted twice for another purpose) says nothing.
 */
export function mountWarnings(byHost: ReadonlyMap<string, readonly SharedMount[]>, paths: ReadonlyMap<string, readonly string[]>): string[] {
  const relevant = new Set<string>();
  for (const [host, ps] of paths) {
    const mounts = byHost.get(host) ?? [];
    for (const p of ps) {
      const m = mountOf(p, mounts);
      if (m) relevant.add(keyOf(m));
    }
  }
  const groups = new Map<string, { fs: SharedMount; at: Map<string, Set<string>> }>();
  for (const [host, mounts] of byHost) {
    for (const m of mounts) {
      const key = keyOf(m);
      if (!relevant.has(key)) continue;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { fs: m, at: new Map() }));
      let hosts = g.at.get(m.mountpoint);
      if (!hosts) g.at.set(m.mountpoint, (hosts = new Set()));
      hosts.add(host);
    }
  }
  const out: string[] = [];
  for (const { fs: f, at } of groups.values()) {
    if (at.size < 2) continue;
    const where = [...at.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([mp, hosts]) => `${mp} on ${[...hosts].sort().join(', ')}`)
      .join('; ');
    out.push(
      `${f.fstype} ${f.source}${f.root === '/' ? '' : ` (${f.root})`} is mounted at different paths: ${where}. ` +
        'In lockspace mode a disk named by two paths gets two lock files and two hosts can both be granted it: ' +
        'mount it at one path everywhere, or use direct mode (docs/operations.md)',
    );
  }
  return out;
}

/** Publish this host's shared mounts (written whole, then renamed into place). Best effort: returns the error text. */
export function publishMounts(lockspace: string, host: string, mountinfo?: string): string | undefined {
  try {
    const text = mountinfo ?? fs.readFileSync('/proc/self/mountinfo', 'utf8');
    const dir = path.join(lockspace, MOUNTS_DIR);
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const file = path.join(dir, `${host}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    // Never through a link planted at the temporary name (the daemon runs as root): remove whatever
    // is there, then create the file exclusively (O_EXCL fails on a symlink, dangling or not).
    fs.rmSync(tmp, { force: true });
    fs.writeFileSync(tmp, JSON.stringify({ v: 1, host, mounts: sharedMounts(text) }) + '\n', { mode: 0o644, flag: 'wx' });
    fs.renameSync(tmp, file);
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  }
}

/** Every host's published mounts (hosts that never published, or whose file is unreadable, are left out). */
export function readMounts(lockspace: string, hosts: readonly string[]): Map<string, SharedMount[]> {
  const out = new Map<string, SharedMount[]>();
  const str = (x: unknown): x is string => typeof x === 'string' && x !== '';
  for (const host of hosts) {
    const file = path.join(lockspace, MOUNTS_DIR, `${host}.json`);
    try {
      // Only a regular file of bounded size: a FIFO there would block the read for ever.
      const st = fs.lstatSync(file);
      if (!st.isFile() || st.size > 1 << 20) continue;
      const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { mounts?: unknown };
      if (!Array.isArray(j?.mounts)) continue;
      out.set(
        host,
        (j.mounts as Array<Partial<Record<keyof SharedMount, unknown>> | null>).filter(
          (m): m is SharedMount => m !== null && typeof m === 'object' && str(m.source) && str(m.root) && str(m.fstype) && str(m.mountpoint),
        ),
      );
    } catch {
      // Not published (an older daemon, a host that never started here): nothing to compare.
    }
  }
  return out;
}
