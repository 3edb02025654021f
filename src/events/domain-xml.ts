// libvirt domain XML (virsh dumpxml, the qemu hook's stdin) -> the disks and leases that need locks.
//
// What is locked follows libvirt's lock manager (src/locking/domain_lock.c, lock_driver_lockd.c):
// only disks whose actual type is file, block or dir and that have a source path; read-only disks
// are skipped; shareable disks get a shared lock. Volume disks count when their pool resolves them
// to a local path (libvirt locks the translated path too). Network disks and backing chains are
// not locked by virtlockd either; they are reported as unprotected so an operator can see the gap.
import { XMLParser, XMLValidator } from './xml-parser.js';
import { xmlUnescape } from './xml-text.js';
import { BadInputError } from '../engine/errors.js';
import type { DiskSpec } from '../engine/types.js';

/** libvirt's `<disk type=...>`; anything newer than this list is kept as a string and reported unprotected. */
export type DiskSourceType = 'file' | 'block' | 'dir' | 'volume' | 'network' | 'nvme' | 'vhostuser' | 'vhostvdpa' | (string & {});
export type DiskDevice = 'disk' | 'cdrom' | 'floppy' | 'lun';

export interface DomainDisk {
  /** `<target dev=...>`, e.g. "vda": the name operators know the disk by. */
  readonly target: string;
  readonly type: DiskSourceType;
  readonly device: DiskDevice;
  /** `<source file|dev|dir=...>` for file/block/dir disks; null when the drive is empty or the type has no path. */
  readonly path: string | null;
  readonly pool?: string;
  readonly volume?: string;
  /** `<source protocol=...>` of a network disk (nbd, rbd, iscsi, gluster, ...). */
  readonly protocol?: string;
  /** `<source name=...>` of a network disk. */
  readonly sourceName?: string;
  readonly readonly: boolean;
  readonly shareable: boolean;
  /** `<alias name=...>`: what device-added / device-removed events name. */
  readonly alias?: string;
}

export interface DomainLease {
  readonly lockspace: string;
  readonly key: string;
  /** `<target path=...>`: the lockspace's parent directory for the lockd plugin. */
  readonly target: string;
  readonly offset?: number;
}

export interface DomainInfo {
  readonly uuid: string;
  readonly name: string;
  /** Present only while the domain runs. */
  readonly id?: number;
  readonly disks: readonly DomainDisk[];
  readonly leases: readonly DomainLease[];
}

/**
 * A lease as the lockd plugin names it: lockspace `<target path>/<lockspace>`, resource `<key>`,
 * so the lock file is `<target path>/<lockspace>/<key>` (lock_driver_lockd.c formats the
 * lockspace with "%s/%s" and the name is the key; virtlockd's lockspace dir + "/" + name is the file).
 */
export interface LeaseLock {
  readonly lockspace: string;
  readonly name: string;
  readonly path: string;
  readonly lease: DomainLease;
}

export interface Unprotected {
  /** The disk's target dev, or `lease:<lockspace>/<key>` for a lease. */
  readonly target: string;
  readonly reason: string;
}

export interface LockPlan {
  readonly lock: DiskSpec[];
  readonly unprotected: Unprotected[];
  readonly leases: LeaseLock[];
}

export interface LockPlanOptions {
  /** Resolve a storage volume to its path (the caller runs `virsh vol-path --pool P VOL`); null if unknown. */
  readonly volPath?: (pool: string, volume: string) => string | null;
}

type XmlNode = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Names and uuids are strings even when they look like numbers ("123" is a valid domain name).
  parseTagValue: false,
  parseAttributeValue: false,
  // Values byte-exact as libvirt holds them: trimValues would also trim attribute values, and
  // `<source file='/x/a.img '/>` would be locked as '/x/a.img', another file (src/events/xml-text.ts).
  trimValues: false,
  // References are decoded by xmlUnescape, which refuses what libxml2 refuses.
  processEntities: false,
  // <metadata> holds any XML an application stores in the domain (megabytes of it, possibly):
  // read as one raw string, never walked element by element (review25a F3).
  stopNodes: ['*.metadata'],
});

function isNode(v: unknown): v is XmlNode {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asArray(v: unknown): unknown[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** The text of a child element, whether the parser gave a string or a node with #text; exact, references decoded. */
function text(v: unknown, where: string): string | undefined {
  if (typeof v === 'string') return xmlUnescape(v, where);
  if (isNode(v) && typeof v['#text'] === 'string') return xmlUnescape(v['#text'], where);
  if (isNode(v) && Object.keys(v).every((k) => k.startsWith('@_'))) return '';
  return undefined;
}

/** An attribute's value exactly as libvirt holds it (no trimming, no whitespace folding), references decoded. */
function attr(node: unknown, name: string): string | undefined {
  if (!isNode(node)) return undefined;
  const v = node[`@_${name}`];
  return typeof v === 'string' ? xmlUnescape(v, `attribute ${name}="${v.slice(0, 80)}"`) : undefined;
}

function single(parent: XmlNode, name: string, where: string): unknown {
  const v = parent[name];
  if (Array.isArray(v)) throw new BadInputError(`domain XML: ${where} has ${v.length} <${name}> elements, expected one`);
  return v;
}

const DEVICES: readonly DiskDevice[] = ['disk', 'cdrom', 'floppy', 'lun'];

function parseDisk(node: unknown, i: number): DomainDisk {
  const where = `<disk> #${i + 1}`;
  if (!isNode(node)) throw new BadInputError(`domain XML: ${where} is empty`);
  const type = attr(node, 'type') ?? 'file';
  const deviceAttr = attr(node, 'device') ?? 'disk';
  if (!(DEVICES as readonly string[]).includes(deviceAttr)) {
    throw new BadInputError(`domain XML: ${where} has device="${deviceAttr}", expected one of ${DEVICES.join(', ')}`);
  }
  const device = deviceAttr as DiskDevice;
  const target = attr(single(node, 'target', where), 'dev');
  if (target === undefined || target === '') throw new BadInputError(`domain XML: ${where} has no <target dev=...>`);
  const source = single(node, 'source', `disk ${target}`);

  let path: string | null = null;
  let pool: string | undefined;
  let volume: string | undefined;
  let protocol: string | undefined;
  let sourceName: string | undefined;
  switch (type) {
    case 'file':
      path = attr(source, 'file') || null;
      break;
    case 'block':
      path = attr(source, 'dev') || null;
      break;
    case 'dir':
      path = attr(source, 'dir') || null;
      break;
    case 'volume':
      pool = attr(source, 'pool');
      volume = attr(source, 'volume');
      break;
    case 'network':
      protocol = attr(source, 'protocol');
      sourceName = attr(source, 'name');
      break;
    default:
      // nvme, vhostuser (whose source path is a socket, not an image), vhostvdpa, and future types.
      break;
  }
  const alias = attr(node['alias'], 'name');
  return {
    target,
    type,
    device,
    path,
    ...(pool !== undefined ? { pool } : {}),
    ...(volume !== undefined ? { volume } : {}),
    ...(protocol !== undefined ? { protocol } : {}),
    ...(sourceName !== undefined ? { sourceName } : {}),
    readonly: 'readonly' in node,
    shareable: 'shareable' in node,
    ...(alias !== undefined ? { alias } : {}),
  };
}

/** A lease's lockspace or key: a relative path inside its target path (no empty, "." or ".." component). */
function confined(value: string, what: string): void {
  if (value.startsWith('/') || value.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new BadInputError(`domain XML: ${what} is "${value}", expected a name inside the lease's target path (no leading "/", no empty, "." or ".." component)`);
  }
}

function parseLease(node: unknown, i: number): DomainLease {
  const where = `<lease> #${i + 1}`;
  if (!isNode(node)) throw new BadInputError(`domain XML: ${where} is empty`);
  const key = text(single(node, 'key', where), `${where} <key>`);
  if (!key) throw new BadInputError(`domain XML: ${where} has no <key>`);
  // libvirt 9.0 refuses to define a lease without <lockspace> (measured), and the lockd plugin
  // needs it to form the lockspace path.
  const lockspace = text(single(node, 'lockspace', where), `${where} <lockspace>`);
  if (!lockspace) throw new BadInputError(`domain XML: ${where} (key "${key}") has no <lockspace>`);
  const targetNode = single(node, 'target', where);
  const target = attr(targetNode, 'path');
  if (!target) throw new BadInputError(`domain XML: ${where} (key "${key}") has no <target path=...>`);
  // The lease file is <target path>/<lockspace>/<key>, created by the root daemon: a lockspace or key
  // that climbs out of the target path would have it create a file in any directory (review25a F14).
  confined(lockspace, `${where} (key "${key}") <lockspace>`);
  confined(key, `${where} <key>`);
  if (!target.startsWith('/') || target.split('/').some((c) => c === '..' || c === '.')) {
    throw new BadInputError(`domain XML: ${where} (key "${key}") has <target path="${target}">, expected an absolute path without "." or ".." components`);
  }
  const offsetText = attr(targetNode, 'offset');
  let offset: number | undefined;
  if (offsetText !== undefined) {
    if (!/^\d+$/.test(offsetText) || !Number.isSafeInteger(Number(offsetText))) {
      throw new BadInputError(`domain XML: ${where} (key "${key}") has offset="${offsetText}", expected a non-negative integer`);
    }
    offset = Number(offsetText);
  }
  return { lockspace, key, target, ...(offset !== undefined ? { offset } : {}) };
}

/** Parse a domain XML document (`<domain>`, or the `<domstatus>` wrapper of libvirt's status files). */
export function parseDomainXml(xml: string): DomainInfo {
  if (typeof xml !== 'string' || xml.trim() === '') throw new BadInputError('domain XML is empty');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new BadInputError(`domain XML is not well-formed: ${valid.err.msg} (line ${valid.err.line}, column ${valid.err.col})`);
  }
  // libvirt never writes a DOCTYPE: entities (XXE, billion laughs) are refused as bad input.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new BadInputError('domain XML must not contain a DOCTYPE or ENTITY declaration (libvirt writes none)');
  let doc: XmlNode;
  try {
    // The parser turns \r and \r\n into \n (XML line-end handling); libvirt writes a carriage
    // return in a value literally and means it, so it is handed over as a reference, decoded back.
    doc = parser.parse(xml.includes('\r') ? xml.replace(/\r/g, '&#13;') : xml) as XmlNode;
  } catch (e) {
    // The parser's own refusals (entities, nesting) are bad input too, never an internal error.
    throw new BadInputError(`domain XML refused by the parser: ${(e as Error).message}`);
  }
  let domain = doc['domain'];
  if (domain === undefined && isNode(doc['domstatus'])) domain = doc['domstatus']['domain'];
  if (!isNode(domain)) {
    const roots = Object.keys(doc).filter((k) => !k.startsWith('?'));
    throw new BadInputError(`domain XML: root element must be <domain>, got <${roots[0] ?? 'nothing'}>`);
  }
  const name = text(single(domain, 'name', '<domain>'), '<name>');
  if (!name) throw new BadInputError('domain XML: <domain> has no <name>');
  // libvirt reads a uuid skipping surrounding whitespace (virUUIDParse) and writes it bare.
  const uuid = text(single(domain, 'uuid', '<domain>'), '<uuid>')?.trim();
  if (!uuid) throw new BadInputError(`domain XML: domain "${name}" has no <uuid>`);
  if (!/^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(uuid)) {
    throw new BadInputError(`domain XML: domain "${name}" has <uuid>${uuid}</uuid>, expected a UUID`);
  }
  const idText = attr(domain, 'id');
  let id: number | undefined;
  if (idText !== undefined) {
    if (!/^-?\d+$/.test(idText)) throw new BadInputError(`domain XML: domain "${name}" has id="${idText}", expected an integer`);
    id = Number(idText);
  }
  const devices = single(domain, 'devices', `domain "${name}"`);
  const devNode: XmlNode = isNode(devices) ? devices : {};
  return {
    uuid: uuid.toLowerCase(),
    name,
    ...(id !== undefined && id >= 0 ? { id } : {}),
    disks: asArray(devNode['disk']).map(parseDisk),
    leases: asArray(devNode['lease']).map(parseLease),
  };
}

/** Which disks to lock and how, which cannot be protected and why, and the explicit leases. */
export function lockPlan(domain: DomainInfo, opts: LockPlanOptions = {}): LockPlan {
  const lock: DiskSpec[] = [];
  const unprotected: Unprotected[] = [];
  const seen = new Set<string>();
  const add = (path: string, shareable: boolean): void => {
    // The same image listed twice must not make the VM conflict with itself (locks are not re-entrant).
    const key = `${shareable ? 's' : 'x'}:${path}`;
    if (seen.has(key)) return;
    seen.add(key);
    lock.push({ path, readonly: false, shareable });
  };

  for (const d of domain.disks) {
    if (d.readonly) continue;
    switch (d.type) {
      case 'file':
      case 'block':
      case 'dir':
        if (d.path === null) {
          unprotected.push({ target: d.target, reason: `empty ${d.device} drive: media inserted later is not locked` });
        } else {
          add(d.path, d.shareable);
        }
        break;
      case 'volume': {
        const where = `volume ${d.pool ?? '?'}/${d.volume ?? '?'}`;
        if (d.pool === undefined || d.volume === undefined) {
          unprotected.push({ target: d.target, reason: `${where}: <source> needs both pool and volume` });
          break;
        }
        const p = opts.volPath ? opts.volPath(d.pool, d.volume) : null;
        if (p === null) {
          unprotected.push({ target: d.target, reason: `${where} could not be resolved to a path` });
        } else if (!p.startsWith('/')) {
          unprotected.push({ target: d.target, reason: `${where} resolves to "${p}", not a local path (network pool)` });
        } else {
          add(p, d.shareable);
        }
        break;
      }
      case 'network':
        unprotected.push({
          target: d.target,
          reason: `network disk (${d.protocol ?? 'unknown protocol'}${d.sourceName ? ` ${d.sourceName}` : ''}): no lock file to take; virtlockd does not lock these either`,
        });
        break;
      default:
        unprotected.push({ target: d.target, reason: `disk type "${d.type}" has no lockable image path` });
        break;
    }
  }

  const leases: LeaseLock[] = [];
  for (const l of domain.leases) {
    if (l.offset !== undefined && l.offset !== 0) {
      // lock_driver_lockd.c refuses non-zero offsets ("Offset must be zero for this lock manager"):
      // such a lease was written for sanlock and would name the wrong thing here.
      unprotected.push({ target: `lease:${l.lockspace}/${l.key}`, reason: `lease offset ${l.offset} is not 0 (a sanlock lease?)` });
      continue;
    }
    const lockspace = `${l.target}/${l.lockspace}`;
    leases.push({ lockspace, name: l.key, path: `${lockspace}/${l.key}`, lease: l });
  }
  return { lock, unprotected, leases };
}
