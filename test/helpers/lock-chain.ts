// A host's published history of lock facts (disks shared between hosts at times), written as real
// segments: the parallel catch-up's tests (cluster-cache-threads.int.ts, review31b-threads-*.int.ts).
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from './segments.js';

export const T0 = Date.UTC(2026, 0, 1);

/** One host's published history: `facts` lock facts over disks shared between hosts at times, in segments of `segmentBytes`. */
export function publishLockChain(lockspace: string, host: string, journal: string, h: number, facts: number, segmentBytes: number): void {
  const w = segmentWriter(lockspace, host, journal, { segmentBytes });
  let prev = GENESIS_HASH;
  const held = new Map<string, string>();
  for (let seq = 1; seq <= facts; seq++) {
    const vm = (seq * 7 + h) % 300;
    const uuid = `5a1e0000-0000-4000-8000-${String(h * 1000 + vm).padStart(12, '0')}`;
    const name = `vm-${h}-${vm}`;
    const disk = seq % 10 === 0 ? `/srv/shared/d${seq % 40}.img` : `/var/lib/libvirt/images/${name}.qcow2`;
    const releasing = held.get(disk) === uuid;
    const kind = seq % 97 === 0 ? 'LockRefused' : releasing ? 'LockReleased' : 'LockAcquired';
    if (kind === 'LockAcquired') held.set(disk, uuid);
    if (kind === 'LockReleased') held.delete(disk);
    const row: ChainRow = {
      seq,
      at: new Date(T0 + seq * 1000 + h * 333).toISOString(),
      host,
      kind,
      resource: `/ls/${disk.replace(/\W/g, '')}`,
      disk,
      owner: uuid,
      owner_name: name,
      payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', source: 'virsh', n: seq }),
    };
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
}
