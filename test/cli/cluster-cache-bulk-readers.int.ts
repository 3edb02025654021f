// Questions from other processes while a catch-up bulk loads a chain (issue 15, session 28): a bulk load
// drops the chain's indexes for the load and builds them at the end. Before, a reader in between (a
// second `audit --cluster`, a `--follow` on the same cache) found the chain with facts and without its
// indexes and failed ("no such index: facts_disk_at"). Now a new chain is built in a file of its own and
// linked in whole, and a bulk load into a chain the cache holds is one write transaction: a reader sees
// the chain as it was (or not at all) until the load is complete, never half built.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { MAIN, tmpdir } from '../helpers/daemon.js';

const J = '0123456789abcdef';
const DISK = '/var/lib/libvirt/images/d7.qcow2';

/** ~60,000 facts in 4 MiB segments (~27 MiB: over the bulk load's 16 MiB), lock facts with identities. */
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

/**
 * Runs `audit --cluster` on `cache` in another process and asks the cache's chains for DISK's facts
 * (through the disk index, as every question does) until it exits: the errors seen and each answer's
 * fact count.
 */
async function readDuringLoad(root: string, lockspace: string, cacheRoot: string): Promise<{ errors: string[]; counts: Set<number>; reads: number }> {
  const home = path.join(root, 'home');
  fs.mkdirSync(home, { recursive: true });
  const env = { ...process.env, HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const p = spawn(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', lockspace, '--cache', cacheRoot, '--disk', DISK, '--json', '--limit', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  const errors: string[] = [];
  const counts = new Set<number>();
  let reads = 0;
  const cache = ClusterCache.open(cacheRoot, lockspace);
  while (!done) {
    for (const c of cache.chains()) {
      try {
        const j = cache.openChain(c);
        try {
          counts.add(j.query({ disk: DISK }).length);
          reads++;
        } finally {
          j.close();
        }
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.is(await exited, 0, stderr);
  return { errors, counts, reads };
}

test('a first load: other processes see no part of the chain until it is complete, then all of it', async () => {
  const root = tmpdir('cc-bulk-readers-');
  try {
    const ls = path.join(root, 'ls');
    publish(ls, 60_000);
    const cacheRoot = path.join(root, 'cache');
    const r = await readDuringLoad(root, ls, cacheRoot);
    assert.equal(r.errors.slice(0, 3), [], `${r.errors.length} errors in ${r.reads} reads`);
    // DISK (d7) is in 20 of the 60,000 facts.
    assert.equal([...r.counts].filter((n) => n !== 20), [], `answers: ${[...r.counts].join(', ')}`);
    assert.equal(fs.readdirSync(cacheRoot, { recursive: true }).map(String).filter((f) => f.includes('.build-')), []);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a bulk load into a chain the cache holds: other processes see the chain as it was until it commits whole', async () => {
  const root = tmpdir('cc-bulk-readers-');
  try {
    const files = publish(path.join(root, 'full'), 60_000);
    // The cache first holds the first segment (4 MiB: no bulk load), then the rest is published at once.
    const ls = path.join(root, 'ls');
    const dir = path.join(ls, '.journal', 'hv-1');
    fs.mkdirSync(dir, { recursive: true });
    fs.linkSync(files[0]!, path.join(dir, path.basename(files[0]!)));
    const cacheRoot = path.join(root, 'cache');
    const first = ClusterCache.open(cacheRoot, ls).catchUp();
    assert.equal(first.problems, []);
    const before = first.newFacts;
    assert.ok(before > 0 && before < 15_000, `${before} facts in the first segment`);
    for (const f of files.slice(1)) fs.linkSync(f, path.join(dir, path.basename(f)));
    const r = await readDuringLoad(root, ls, cacheRoot);
    assert.equal(r.errors.slice(0, 3), [], `${r.errors.length} errors in ${r.reads} reads`);
    assert.ok(r.reads > 0);
    // d7's facts among the first segment's, or all 20: never a count in between.
    const early = Math.floor((before - 7) / 3000) + 1;
    assert.equal([...r.counts].filter((n) => n !== early && n !== 20), [], `answers: ${[...r.counts].join(', ')} (before ${early})`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test.run();
