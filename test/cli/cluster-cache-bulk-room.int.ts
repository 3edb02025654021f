// review28c F4: since 902627b a bulk load into a chain the cache holds is one write transaction: every
// page it writes stays in the WAL until it commits (no checkpoint meanwhile), then the checkpoint grows
// the chain file. 23 MiB of new segments into a held chain took ~65 MiB of WAL on top of the ~39 MiB
// chain: on a 100 MiB filesystem (the chain ending at ~39 MiB, under 40% of it; the loaded with many
// commits before 902627b: 65% used, no WAL left) the catch-up "succeeded" and left the filesystem
// 100% full with a 65 MiB WAL its failed checkpoint could not fold in, under the cache's free-space
// floor (10%: "the daemon's journal may live there"), and no later catch-up runs to checkpoint it (the
// floor stops them). A read-only question must not fill the filesystem it was told to keep room on.
// Needs root (a tmpfs of a known size); skipped otherwise.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { freeSpace } from '../../src/cli/cluster-cache-bounds.js';
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
    const row: ChainRow = {
      seq,
      at: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
      host: 'hv-1',
      kind: seq % 2 === 0 ? 'LockReleased' : 'LockAcquired',
      resource: `/ls/${d}`,
      disk,
      owner: owner.uuid,
      owner_name: owner.name,
      payload: JSON.stringify({ owner, resource: `/ls/${d}`, disk, path: disk, inode: `2049:${d}:1700000000`, mode: 'exclusive', source: 'virsh', n: seq }),
    };
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
  return w.files;
}

const root = process.getuid?.() === 0;

test('a bulk load into a held chain leaves the cache filesystem above its floor, no WAL behind', () => {
  if (!root) return;
  const top = tmpdir('cc-bulk-room-');
  const mnt = path.join(top, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=100m', 'tmpfs', mnt]);
  try {
    const files = publish(path.join(top, 'full'), 60_000);
    const ls = path.join(top, 'ls');
    const dir = path.join(ls, '.journal', 'hv-1');
    fs.mkdirSync(dir, { recursive: true });
    fs.linkSync(files[0]!, path.join(dir, path.basename(files[0]!)));
    const first = ClusterCache.open(mnt, ls).catchUp();
    assert.equal(first.problems, []);
    for (const f of files.slice(1)) fs.linkSync(f, path.join(dir, path.basename(f)));
    const cache = ClusterCache.open(mnt, ls);
    const r = cache.catchUp();
    const room = freeSpace(mnt)!;
    const wal = fs.readdirSync(mnt, { recursive: true }).map(String).filter((f) => f.endsWith('-wal')).map((f) => fs.statSync(path.join(mnt, f)).size);
    assert.ok(room.free >= room.floor, `the catch-up (problems: ${JSON.stringify(r.problems.map((p) => p.reason))}) left ${room.free} bytes free, under the floor ${room.floor}; WAL left: ${wal.join(', ')}`);
    assert.equal(r.problems, []);
    assert.is(cache.chains()[0]!.facts, 60_000);
    assert.equal(wal.filter((n) => n > 0), [], 'WAL left behind');
  } finally {
    execFileSync('umount', [mnt]);
    fs.rmSync(top, { recursive: true, force: true });
  }
});

test.run();
