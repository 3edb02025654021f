// A sample published chain for the read cache's tests: host hv-1, journal J, n facts over 50 disks and
// 30 VMs, 4 MiB segments, chained from the genesis hash.
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from './segments.js';

export const J = '0123456789abcdef';

export function publish(lockspace: string, n: number): void {
  const w = segmentWriter(lockspace, 'hv-1', J, { segmentBytes: 4 * 1024 * 1024 });
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const disk = `/var/lib/libvirt/images/d${seq % 50}.qcow2`;
    const owner = { uuid: `11111111-1111-4111-8111-${String(seq % 30).padStart(12, '0')}`, name: `vm-${seq % 30}` };
    const row: ChainRow = {
      seq,
      at: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
      host: 'hv-1',
      kind: seq % 2 === 0 ? 'LockReleased' : 'LockAcquired',
      resource: `/ls/${seq % 50}`,
      disk,
      owner: owner.uuid,
      owner_name: owner.name,
      payload: JSON.stringify({ owner, disk, mode: 'exclusive', source: 'virsh', n: seq }),
    };
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
}
