// The cluster read cache's disk_names (schema 4, decision 0027: `audit --cluster --disk` finds a hard
// link by its identity and a virtlockd-protocol lease by its hash through it). A bulk load lifts the
// triggers and fills the table set-based at its end (decision 0014, bench/README.md): the rows are the
// ones the triggers write; a load killed with the triggers lifted answers by a scan until the next
// catch-up repairs it; a chain whose facts were left pending (a cache an older vmlockd wrote, migrated
// to version 4: no writer thread ever indexes it) is filled on its next catch-up.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { Journal } from '../../src/journal/journal.js';
import { DISK_NAMES_PENDING, GENESIS_HASH, chainHash, migrate, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const J = 'abcdef0123456789';
const LEASE = `/srv/leases/${'ab12'.repeat(16)}`;

/** ~45,000 facts (over the cache's 16 MiB bulk threshold): lock facts with identities, a lease, others. */
function publish(lockspace: string, host: string, n: number): void {
  const w = segmentWriter(lockspace, host, J);
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const d = seq % 4000;
    const disk = seq % 97 === 0 ? LEASE : `/var/lib/libvirt/images/d${d}.qcow2`;
    const owner = { uuid: `11111111-1111-4111-8111-${String(seq % 300).padStart(12, '0')}`, name: `vm-${seq % 300}` };
    const base = { seq, at: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(), host, resource: `/ls/${d}`, disk, owner: owner.uuid, owner_name: owner.name };
    const k = seq % 5;
    let row: ChainRow;
    if (k === 0) row = { ...base, kind: 'OwnerSeen', resource: null, disk: null, payload: JSON.stringify({ owner, event: 'started', inode: 'not:a:disk' }) };
    else if (k === 4) row = { ...base, kind: 'LockReleased', payload: JSON.stringify({ owner, source: 'virsh', reason: 'stopped' }) };
    else {
      const pad = 'x'.repeat(200);
      row = { ...base, kind: 'LockAcquired', payload: JSON.stringify({ owner, resource: base.resource, lockspace: '/ls', kind: 'file', disk, path: disk, inode: `2049:${100000 + (d % 3000)}:17000${seq % 2}`, mode: 'exclusive', source: 'virsh', pad }) };
    }
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
}

function chainFile(cacheRoot: string): string {
  const [dir] = fs.readdirSync(cacheRoot);
  const hostDir = path.join(cacheRoot, dir!, 'hv-1');
  return path.join(hostDir, fs.readdirSync(hostDir).find((f) => f.endsWith('.db'))!);
}

/** disk_names as the schema's triggers write it for the rows the chain file holds. */
function byTriggers(file: string): string[] {
  const src = new Database(file, { readonly: true });
  const db = new Database(':memory:');
  try {
    migrate(db, ':memory:');
    const ins = db.prepare('INSERT INTO facts (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
    db.transaction(() => {
      for (const r of src.prepare('SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload, hash FROM facts ORDER BY seq').raw().iterate()) ins.run(...(r as unknown[]));
    })();
    return (db.prepare(`SELECT key || ' ' || disk FROM disk_names ORDER BY 1`).pluck().all() as string[]);
  } finally {
    db.close();
    src.close();
  }
}

function state(file: string): { rows: string[]; pending: string | undefined; triggers: string[] } {
  const db = new Database(file, { readonly: true });
  try {
    return {
      rows: db.prepare(`SELECT key || ' ' || disk FROM disk_names ORDER BY 1`).pluck().all() as string[],
      pending: db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(DISK_NAMES_PENDING) as string | undefined,
      triggers: db.prepare(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%disk_names' ORDER BY name`).pluck().all() as string[],
    };
  } finally {
    db.close();
  }
}

function answers(file: string): { ids: string[]; leases: string[] } {
  const j = Journal.open(file, { host: 'audit', readonly: true });
  try {
    return { ids: j.disksWithInode(['2049:100007:170001', '2049:100007:170000']), leases: j.leaseDisks(['ab12'.repeat(16)]) };
  } finally {
    j.close();
  }
}

/** The chain file as a load killed with the triggers lifted leaves it (or an older cache migrated to 4). */
function damage(file: string, pending: string, dropTriggers: boolean): void {
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    if (dropTriggers) db.exec('DROP TRIGGER facts_disk_names; DROP TRIGGER carried_disk_names');
    db.exec(`DELETE FROM disk_names WHERE substr(key, -1) IN ('0', '2', '4') OR key LIKE 'lease:%'`);
    db.prepare('UPDATE meta SET value = ? WHERE key = ?').run(pending, DISK_NAMES_PENDING);
  } finally {
    db.close();
  }
  fs.rmSync(`${file}.pos`, { force: true });
}

test('a bulk load fills disk_names as the triggers would; a lifted or pending table is answered by a scan, then filled', () => {
  const dir = tmpdir('cc-disk-names');
  try {
    const lockspace = path.join(dir, 'ls');
    publish(lockspace, 'hv-1', 45_000);
    const cacheRoot = path.join(dir, 'cache');
    const r = ClusterCache.open(cacheRoot, lockspace).catchUp();
    assert.equal(r.problems, []);
    assert.equal(r.newFacts, 45_000);
    const file = chainFile(cacheRoot);
    const want = byTriggers(file);
    assert.ok(want.length > 2000, `${want.length} rows`);
    assert.ok(want.includes(`lease:${'ab12'.repeat(16)} ${LEASE}`));
    const s = state(file);
    assert.equal(s.rows, want, 'the rows the triggers write');
    assert.equal(s.pending, '0');
    assert.equal(s.triggers, ['carried_disk_names', 'facts_disk_names']);
    const good = answers(file);
    assert.ok(good.ids.includes('/var/lib/libvirt/images/d7.qcow2') && good.ids.includes('/var/lib/libvirt/images/d3007.qcow2'), good.ids.join(' '));
    assert.equal(good.leases, [LEASE]);

    // Killed during a bulk load: triggers lifted, every fact pending, rows missing. Answered by the scan.
    damage(file, String(Number.MAX_SAFE_INTEGER), true);
    assert.equal(answers(file), good);
    assert.equal(ClusterCache.open(cacheRoot, lockspace).catchUp().problems, []);
    const repaired = state(file);
    assert.equal(repaired.rows, want, 'filled again on the next catch-up');
    assert.equal(repaired.pending, '0');
    assert.equal(repaired.triggers, ['carried_disk_names', 'facts_disk_names']);

    // A cache an older vmlockd wrote, migrated to version 4: every fact pending, no writer thread to index it.
    damage(file, '45000', false);
    assert.equal(answers(file), good);
    ClusterCache.open(cacheRoot, lockspace).catchUp();
    const filled = state(file);
    assert.equal(filled.rows, want, 'the pending facts indexed');
    assert.equal(filled.pending, '0');
    assert.equal(answers(file), good);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
