// fillDiskNames (the cluster read cache's set-based fill after a bulk load, schema 4) writes exactly the
// disk_names rows the triggers write one by one: session 28 computes the identity's rest once per row
// in a subquery instead of four times; the expressions are the triggers' own, and odd payloads (no
// closing quote, an empty identity, two identities, non-ASCII text before it, a lease name in upper
// case) must give the same rows either way.
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fillDiskNames, migrate } from '../../src/journal/schema.js';

const LEASE = 'ab12'.repeat(16);
const PAYLOADS = [
  '{"inode":"2049:1:17"}',
  '{"owner":{"uuid":"u","name":"v"},"disk":"/d","inode":"2049:2:17","mode":"exclusive"}',
  '{"inode":""}',
  '{"inode":"2049:3:17',
  '{"inode":"',
  '{"a":"é€𝄞","inode":"2049:4:17"}',
  '{"inode":"2049:5:17","x":{"inode":"2049:6:17"}}',
  '\u0001,"inode":"2049:7:17"}',
  '{"inode" : "2049:8:17"}',
  '{"inode":"\\"q"}',
  'not json "inode":"x"',
  '{}',
];
const DISKS = [null, '/var/lib/libvirt/images/a.qcow2', `/srv/leases/${LEASE}`, `/srv/leases/${LEASE.toUpperCase()}`, `/srv/${LEASE}x`, `x/${LEASE}`, LEASE];

test('fillDiskNames writes the rows the disk_names triggers write', () => {
  const db = new Database(':memory:');
  migrate(db, ':memory:');
  const ins = (t: string, seq: number, disk: string | null, payload: string) =>
    db.prepare(`INSERT INTO ${t} (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash) VALUES (?, ?, 'h', 'LockAcquired', NULL, ?, NULL, NULL, ?, ?)`).run(seq, new Date(seq * 1000).toISOString(), disk, payload, Buffer.alloc(32));
  let seq = 0;
  for (const disk of DISKS) {
    for (const p of PAYLOADS) {
      seq++;
      ins('facts', seq, disk, p);
      ins('carried', seq + 100_000, disk, p);
    }
  }
  const rows = () => db.prepare('SELECT key, disk FROM disk_names ORDER BY key, disk').raw().all();
  const byTriggers = rows();
  assert.ok(byTriggers.length >= 8, `${byTriggers.length} rows`);
  db.exec('DELETE FROM disk_names');
  db.transaction(() => fillDiskNames(db))();
  assert.equal(rows(), byTriggers);
  db.close();
});

test.run();
