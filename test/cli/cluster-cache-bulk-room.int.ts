// scratch
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const J = '0123456789abcdef';
function publish(lockspace: string, n: number): string[] {
  const w = segmentWriter(lockspace, 'hv-1', J, { segmentBytes: 4 * 1024 * 1024 });
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const d = seq % 3000;
    const disk = `/var/lib/libvirt/images/d${d}.qcow2`;
    const owner = { uuid: `11111111-1111-4111-8111-${String(seq % 300).padStart(12, '0')}`, name: `vm-${seq % 300}` };
    const kind = seq % 101 === 0 ? 'LockRefused' : seq % 2 === 0 ? 'LockReleased' : 'LockAcquired';
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(), host: 'hv-1', kind, resource: `/ls/${d}`, disk, owner: owner.uuid, owner_name: owner.name,
      payload: JSON.stringify({ owner, resource: `/ls/${d}`, disk, path: disk, inode: `2049:${d}:1700000000`, mode: 'exclusive', source: 'virsh', n: seq }) };
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
  return w.files;
}
const N = Number(process.env.N ?? 90000), K = Number(process.env.K ?? 2);
const dir = tmpdir('cc-room');
const mnt = path.join(dir, 'cache');
fs.mkdirSync(mnt);
execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${process.env.SZ ?? '100m'}`, 'tmpfs', mnt]);
try {
  const full = path.join(dir, 'full');
  const files = publish(full, N);
  const sz = files.map((f) => fs.statSync(f).size);
  console.log('segments', files.length, sz.reduce((a, b) => a + b, 0));
  const part = path.join(dir, 'part');
  const partDir = path.join(part, '.journal', 'hv-1');
  fs.mkdirSync(partDir, { recursive: true });
  files.slice(0, K).forEach((f) => fs.linkSync(f, path.join(partDir, path.basename(f))));
  const cache = ClusterCache.open(mnt, part);
  const show = (w: string) => { console.log(w, execFileSync('sh', ['-c', `df -k ${mnt} | tail -1; find ${mnt} -type f -printf '%s %p\\n'`]).toString()); };
  let r = cache.catchUp(); console.log(JSON.stringify(r.problems), r.newFacts); show('after small');
  files.slice(K).forEach((f) => fs.linkSync(f, path.join(partDir, path.basename(f))));
  let peak = 0; const iv = setInterval(() => {}, 1000);
  r = cache.catchUp(); console.log(JSON.stringify(r.problems.map((p) => p.reason.slice(-150))), r.newFacts); show('after bulk');
  clearInterval(iv);
} finally {
  execFileSync('umount', [mnt]);
  fs.rmSync(dir, { recursive: true, force: true });
}
