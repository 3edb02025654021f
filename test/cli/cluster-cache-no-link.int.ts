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
import { J, publish } from '../helpers/sample-chain.js';
import { tmpdir } from '../helpers/daemon.js';

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
