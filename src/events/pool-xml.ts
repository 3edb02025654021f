// A storage volume's path from its pool's XML file, for the qemu hook, which must not ask libvirtd
// (`virsh vol-path`) while libvirtd waits for it. libvirt names a volume of a dir, fs, netfs or
// logical pool `<pool target path>/<volume name>` (storage_backend_fs.c, storage_backend_logical.c);
// other pool types (iscsi, rbd, disk, ...) name volumes by device or URL and stay unresolved.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { XMLParser } from './xml-parser.js';
import { xmlUnescape } from './xml-text.js';

/** Running pools first (transient ones exist only there), then the persistent definitions. */
export const POOL_XML_DIRS = ['/run/libvirt/storage', '/etc/libvirt/storage'] as const;

const PATH_POOLS: ReadonlySet<string> = new Set(['dir', 'fs', 'netfs', 'logical']);

// Exact values (src/events/xml-text.ts): libvirt keeps a pool's target path as written, so a
// trailing space there is part of the directory's name, as it is in a disk's source path.
const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', parseTagValue: false, trimValues: false, processEntities: false });

/** The volume path a pool XML document implies, or null when the pool type does not name volumes by path. */
export function volumePathFromPoolXml(xml: string, volume: string): string | null {
  // '.' and '..' would name the pool directory or its parent, not a volume in it (found by fuzzing).
  if (volume === '' || volume === '.' || volume === '..' || volume.includes('/')) return null;
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml) as Record<string, unknown>;
  } catch {
    return null;
  }
  const pool = doc['pool'] as Record<string, unknown> | undefined;
  if (typeof pool !== 'object' || pool === null) return null;
  const type = pool['@_type'];
  if (typeof type !== 'string' || !PATH_POOLS.has(type)) return null;
  const target = pool['target'] as Record<string, unknown> | undefined;
  const raw = typeof target === 'object' && target !== null ? target['path'] : undefined;
  if (typeof raw !== 'string') return null;
  let dir: string;
  try {
    dir = xmlUnescape(raw, 'pool <target><path>');
  } catch {
    return null;
  }
  if (!dir.startsWith('/')) return null;
  return path.join(dir, volume);
}

/** Resolve `pool`/`volume` through the pool XML files libvirtd keeps; null if none names a path. */
export async function volumePathFromPoolFiles(pool: string, volume: string, dirs: readonly string[] = POOL_XML_DIRS): Promise<string | null> {
  if (pool === '' || pool.includes('/') || pool.startsWith('.')) return null;
  for (const dir of dirs) {
    let xml: string;
    try {
      xml = await fs.promises.readFile(path.join(dir, `${pool}.xml`), 'utf8');
    } catch {
      continue;
    }
    // A running pool's status file wraps the definition: <poolstate><pool>...</pool></poolstate>.
    const inner = /<pool[\s>][\s\S]*<\/pool>/.exec(xml);
    const found = volumePathFromPoolXml(inner ? inner[0] : xml, volume);
    if (found !== null) return found;
  }
  return null;
}
