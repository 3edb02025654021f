// Which libvirt a URI reaches, and whose "gone" may release a VM's locks (decision 0025).
//
// A libvirt that does not run this host's VMs (qemu:///session instead of qemu:///system, a typo'd
// remote host) says "no such domain" about every one of them. That is no evidence that they stopped,
// so a reconcile releases a VM's locks on "gone" only if the libvirt saying it is the one that
// vouched for the VM: it reported the VM running (journaled as LibvirtVouched, so this holds across
// restarts), or, for locks the qemu hook took, it is the libvirt the hook serves (this host's
// qemu:///system). The judgement is pure; learning the identity runs virsh.
import type { LibvirtRef } from '../engine/facts.js';

/** The first label of a host name, lower case: `virsh hostname` may print the FQDN or the short name. */
export function shortHost(host: string): string {
  return host.trim().toLowerCase().split('.')[0] ?? '';
}

/**
 * What identifies a libvirt, for log lines and for telling a new vouch from the recorded one: the
 * driver (the URI scheme without its transport: qemu+ssh -> qemu), the path (/system, /session, a test
 * driver's file) and query, and the libvirt host's short name. Whether two are one libvirt is
 * sameLibvirt's (the host names compared whole when both are fully qualified).
 */
export function identityKey(ref: LibvirtRef): string {
  const u = parseUri(ref.uri);
  return `${u.driver}://${u.path}${u.query}@${shortHost(ref.host)}`;
}

/**
 * One libvirt: the same driver, path and query, and the same host as `virsh hostname` names it. The
 * transport and the URI's authority are left out: qemu:///system and qemu+ssh://root@thishost/system
 * reach the same libvirt, and `virsh hostname` names the host that answers, whatever name the URI
 * used for it. The host UUID is not compared: libvirt makes one up at every start when the machine has
 * no SMBIOS UUID and libvirtd.conf no host_uuid. Host names (review26d F1): two fully qualified names
 * must be equal (node1.dc1.example.org is not node1.dc2.example.org); a short name matches a fully
 * qualified one by its first label; a name that names no machine (localhost, localhost.localdomain:
 * a distribution's default) matches only when both connections are local (no remote authority).
 */
export function sameLibvirt(a: LibvirtRef, b: LibvirtRef): boolean {
  const ua = parseUri(a.uri);
  const ub = parseUri(b.uri);
  if (ua.driver !== ub.driver || ua.path !== ub.path || ua.query !== ub.query) return false;
  return sameHost(a.host, ua.local, b.host, ub.local);
}

/** Host names as `virsh hostname` prints them (see sameLibvirt); `local*`: reached without a remote authority. */
function sameHost(a: string, localA: boolean, b: string, localB: boolean): boolean {
  const ha = a.trim().toLowerCase();
  const hb = b.trim().toLowerCase();
  if (ha === '' || hb === '') return false;
  if (namesNoMachine(ha) || namesNoMachine(hb)) return ha === hb && localA && localB;
  if (ha.includes('.') && hb.includes('.')) return ha === hb;
  return shortHost(ha) === shortHost(hb);
}

/** localhost, localhost.localdomain, localhost6...: a name every unnamed machine answers with. */
function namesNoMachine(host: string): boolean {
  return /^localhost[46]?(\.|$)/.test(host);
}

interface ParsedUri {
  readonly driver: string;
  readonly path: string;
  readonly query: string;
  /** No remote authority: this machine's libvirt (qemu:///system, or a host part naming localhost). */
  readonly local: boolean;
}

function parseUri(uri: string): ParsedUri {
  const m = /^([A-Za-z][A-Za-z0-9.-]*?)(?:\+[A-Za-z0-9.-]+)?:(?:\/\/([^/?#]*))?([^?#]*)(\?[^#]*)?/.exec(uri.trim());
  if (!m) return { driver: uri.trim(), path: '', query: '', local: false };
  // qemu:///system and qemu:///system/ are one libvirt.
  const path = m[3]!.length > 1 ? m[3]!.replace(/\/+$/, '') : m[3]!;
  return { driver: m[1]!.toLowerCase(), path: path === '' ? '/' : path, query: m[4] ?? '', local: isLocalAuthority(m[2] ?? '') };
}

/** A URI's authority ([user@]host[:port]) that reaches this machine: none, localhost or a loopback address. */
function isLocalAuthority(authority: string): boolean {
  const host = authority.replace(/^[^@]*@/, '').replace(/:\d*$/, '').replace(/^\[|\]$/g, '').toLowerCase();
  return host === '' || namesNoMachine(host) || host === '::1' || /^127\./.test(host);
}

/**
 * The libvirt the qemu hook serves: libvirtd runs /etc/libvirt/hooks/qemu for the system qemu
 * driver of this host (the hook reaches the daemon's root-only socket), i.e. qemu:///system here.
 */
export function isHookLibvirt(ref: LibvirtRef, localHost: string): boolean {
  const u = parseUri(ref.uri);
  return u.driver === 'qemu' && u.path === '/system' && sameHost(ref.host, u.local, localHost, true);
}

/** For log lines and status: the URI, the host, and the host UUID when libvirt has one. */
export function describeLibvirt(ref: LibvirtRef): string {
  return `${ref.uri} on host ${ref.host}${ref.hostUuid ? ` (host uuid ${ref.hostUuid})` : ''}`;
}

/** What the libvirt of one reconcile says a held VM is not doing, and what we know of the VM. */
export interface GoneCase {
  /** This stream's libvirt itself reported the VM running, in this process. */
  readonly seenRunning: boolean;
  /** The libvirt that vouched for the VM's locks (journaled), if any. */
  readonly recorded: LibvirtRef | undefined;
  /** The libvirt answering now; undefined when virsh could not say which it is. */
  readonly current: LibvirtRef | undefined;
  /** Some of the VM's locks were taken by the qemu hook. */
  readonly hookLocks: boolean;
  /** This machine's host name. */
  readonly localHost: string;
}

export type GoneVerdict =
  | { readonly release: true }
  | { readonly release: false; readonly reason: 'unknown-libvirt' | 'other-libvirt' | 'not-hook-libvirt' | 'unvouched' };

/**
 * May the current libvirt's "shut off" / "no such domain" release the VM's locks? Only if it is the
 * libvirt that answers for them: it reported the VM running (now or, journaled, before a restart),
 * or it is the libvirt the qemu hook serves and the hook took some of them. Locks no libvirt vouched
 * for (taken by the event stream before LibvirtVouched existed, or a crash between a take and its
 * vouch) are kept: a wrong libvirt_uri cannot be told from a right one for them.
 */
export function judgeGone(c: GoneCase): GoneVerdict {
  if (c.seenRunning) return { release: true };
  if (c.current === undefined) return { release: false, reason: 'unknown-libvirt' };
  if (c.recorded !== undefined && sameLibvirt(c.recorded, c.current)) return { release: true };
  if (c.hookLocks && isHookLibvirt(c.current, c.localHost)) return { release: true };
  if (c.recorded !== undefined) return { release: false, reason: 'other-libvirt' };
  return { release: false, reason: c.hookLocks ? 'not-hook-libvirt' : 'unvouched' };
}

/** The capabilities XML's host UUID (`<host><uuid>`), if it has one. */
export function hostUuidOf(capabilities: string): string | undefined {
  const m = /<host>\s*<uuid>\s*([0-9a-fA-F-]{32,36})\s*<\/uuid>/.exec(capabilities);
  return m ? m[1]!.toLowerCase() : undefined;
}
