// review28c F1: a cache directory on a filesystem without hard links (vfat, CIFS without unix
// extensions, some FUSE filesystems: link(2) fails with EPERM or EOPNOTSUPP). Since 902627b a new chain
// is built in a file of its own and link(2)ed in; before, it was loaded in place. Without link(2) every
// chain's first catch-up failed ("cannot read journal ...: EPERM ... link") on every question, so
// `audit --cluster` never answered any host's facts from such a cache. The chain must be loaded anyway.
import { createRequire, syncBuiltinESMExports } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const J = '0123456789abcdef';

function publish(lockspace: string, n: number): void {
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

const cjsFs = createRequire(import.meta.url)('node:fs') as typeof fs;

/** Runs fn with link(2) failing as on a filesystem without hard links. */
function withoutLink<T>(code: string, fn: () => T): T {
  const real = cjsFs.linkSync;
  cjsFs.linkSync = ((a: fs.PathLike, b: fs.PathLike) => {
    const e = new Error(`${code}: operation not permitted, link '${String(a)}' -> '${String(b)}'`) as NodeJS.ErrnoException;
    e.code = code;
    e.syscall = 'link';
    throw e;
  }) as typeof fs.linkSync;
  syncBuiltinESMExports();
  try {
    return fn();
  } finally {
    cjsFs.linkSync = real;
    syncBuiltinESMExports();
  }
}

for (const code of ['EPERM', 'EOPNOTSUPP', 'ENOSYS']) {
  test(`a first catch-up on a cache whose filesystem has no link(2) (${code}) loads the chain`, () => {
    const root = tmpdir('cc-no-link-');
    try {
      const ls = path.join(root, 'ls');
      publish(ls, 2_000);
      const cacheRoot = path.join(root, 'cache');
      const r = withoutLink(code, () => ClusterCache.open(cacheRoot, ls).catchUp());
      assert.equal(r.problems.map((p) => p.reason), []);
      assert.is(r.newFacts, 2_000);
      const cache = ClusterCache.open(cacheRoot, ls);
      const chains = cache.chains();
      assert.is(chains.length, 1);
      assert.is(chains[0]!.facts, 2_000);
      const j = cache.openChain(chains[0]!);
      try {
        assert.is(j.query({ disk: '/var/lib/libvirt/images/d7.qcow2' }).length, 40);
      } finally {
        j.close();
      }
      // The next question finds the chain held (nothing new) and no build left behind.
      const again = withoutLink(code, () => cache.catchUp());
      assert.equal(again.problems, []);
      assert.is(again.newFacts, 0);
      assert.equal(fs.readdirSync(cacheRoot, { recursive: true }).map(String).filter((f) => f.includes('.build-')), []);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
}

test.run();
