// A large catch-up into a chain the cache already holds (a cache days behind, a host that published a
// lot at once) drops the chain's indexes and disk_names triggers and builds them once at the end, as a
// first load does (decision 0014, BULK_SHARE): the indexes are built again (new root pages) instead of
// maintained row by row, and the chain file then holds exactly what a fresh cache holds. A small
// catch-up keeps them in place.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact } from '../../src/journal/segment.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const J = '0123456789abcdef';

/** ~60,000 facts in 4 MiB segments (~27 MiB), lock facts with identities. */
function publish(lockspace: string, n: number): string[] {
  const w = segmentWriter(lockspace, 'hv-1', J, { segmentBytes: 4 * 1024 * 1024 });
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const d = seq % 3000;
    const disk = `/var/lib/libvirt/images/d${d}.qcow2`;
    const owner = { uuid: `11111111-1111-4111-8111-${String(seq % 300).padStart(12, '0')}`, name: `vm-${seq % 300}` };
    const kind = seq % 101 === 0 ? 'LockRefused' : seq % 2 === 0 ? 'LockReleased' : 'LockAcquired';
    const row: ChainRow = {
      seq,
      at: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
      host: 'hv-1',
      kind,
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

function chainFile(cacheRoot: string): string {
  const [dir] = fs.readdirSync(cacheRoot);
  return path.join(cacheRoot, dir!, 'hv-1', `${J}.db`);
}

function roots(file: string): Record<string, number> {
  const db = new Database(file, { readonly: true });
  try {
    return Object.fromEntries((db.prepare(`SELECT name, rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'facts' ORDER BY name`).raw().all() as Array<[string, number]>));
  } finally {
    db.close();
  }
}

/** Everything a question reads from the chain file: facts, carried, disk_names, owners, the index and trigger definitions. */
function contents(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    const q = (sql: string) => JSON.stringify(db.prepare(sql).raw().all());
    return [
      q('SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload, hex(hash) FROM facts ORDER BY seq'),
      q('SELECT * FROM carried ORDER BY seq'),
      q('SELECT key, disk FROM disk_names ORDER BY key, disk'),
      q('SELECT name, uuid FROM owners ORDER BY name, uuid'),
      q(`SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') ORDER BY name`),
      q(`SELECT value FROM meta WHERE key = 'disk_names_pending'`),
    ].join('\n');
  } finally {
    db.close();
  }
}

test('a catch-up of more than a quarter of what a chain holds builds its indexes again; the file holds what a fresh cache holds', () => {
  const dir = tmpdir('cc-bulk-again');
  try {
    const full = path.join(dir, 'full');
    const files = publish(full, 60_000);
    assert.ok(files.length >= 6, `${files.length} segments`);
    // The cache first sees the first two segments (8 MiB: under the bulk threshold), then all of them.
    const part = path.join(dir, 'part');
    const partDir = path.join(part, '.journal', 'hv-1');
    fs.mkdirSync(partDir, { recursive: true });
    files.slice(0, 2).forEach((f) => fs.linkSync(f, path.join(partDir, path.basename(f))));
    const cacheRoot = path.join(dir, 'cache');
    const cache = ClusterCache.open(cacheRoot, part);
    assert.equal(cache.catchUp().problems, []);
    const file = chainFile(cacheRoot);
    const before = roots(file);
    assert.equal(Object.keys(before).length, 5);
    files.slice(2).forEach((f) => fs.linkSync(f, path.join(partDir, path.basename(f))));
    const r = cache.catchUp();
    assert.equal(r.problems, []);
    assert.ok(r.newFacts > 40_000, `${r.newFacts} new facts`);
    const after = roots(file);
    assert.equal(Object.keys(after), Object.keys(before));
    for (const name of Object.keys(before)) assert.is.not(after[name], before[name], `${name} built again`);

    const freshRoot = path.join(dir, 'fresh');
    assert.equal(ClusterCache.open(freshRoot, part).catchUp().problems, []);
    assert.equal(contents(file), contents(chainFile(freshRoot)));

    // A few facts more: the indexes stay (maintained in place).
    const tail = fs.readFileSync(files[files.length - 1]!, 'utf8').trimEnd().split('\n').pop()!;
    const last = JSON.parse(tail) as { seq: number; at: string; hash: string };
    const row: ChainRow = { seq: last.seq + 1, at: new Date(Date.parse(last.at) + 1000).toISOString(), host: 'hv-1', kind: 'OwnerSeen', resource: null, disk: null, owner: null, owner_name: null, payload: '{"event":"late"}' };
    fs.appendFileSync(files[files.length - 1]!, encodeFact(row, chainHash(Buffer.from(last.hash, 'hex'), row)));
    const small = cache.catchUp();
    assert.equal(small.problems, []);
    assert.equal(small.newFacts, 1);
    assert.equal(roots(file), after);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
