// `audit --disk` on a path no fact names (a hard link, a leased disk): the lookup by identity or lease
// hash, as a scan of every payload (a journal whose disk_names backfill has not run: the code path
// of every lookup before schema version 4) against the disk_names index probe, on one generated
// journal of N facts (default 1M; BENCH_FACTS=N), same run, alternating rounds. Also: the migration
// of a schema-3 journal (what a start pays), the backfill (the writer thread's batches), and the
// append cost of the triggers (a schema-3 file against a schema-4 one, alternating).
//
//   node --import tsx bench/disk-names.ts        prints only (figures go to bench/README.md by hand)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { sha256Hex } from '../src/engine/resolve.js';
import { AUDIT_INDEXES, Journal, MIGRATIONS, migrate } from '../src/journal/journal.js';
import { indexDiskNamesBatch } from '../src/journal/schema.js';
import { ROOT } from './lib.js';
import { mulberry32 } from '../test/helpers/prng.js';

const N = Number(process.env.BENCH_FACTS ?? 1_000_000);
const ROUNDS = 3;
const dir = path.join(ROOT, 'bench', 'out', `disk-names-${N}`);
const load = () => os.loadavg()[0]!.toFixed(1);

/** A schema-3 journal: 20,000 disks, ~300-byte payloads, an identity on every lock fact, a lease name on 1 in 20. */
function generate(file: string): void {
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  migrate(db, file, MIGRATIONS.slice(0, 3));
  for (const ix of AUDIT_INDEXES) db.exec(`DROP INDEX ${ix.name}`);
  const ins = db.prepare('INSERT INTO facts (seq, at, host, kind, resource, disk, owner, owner_name, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const rnd = mulberry32(5);
  const t0 = Date.parse('2025-01-01T00:00:00.000Z');
  db.transaction(() => {
    for (let seq = 1; seq <= N; seq++) {
      const k = Math.floor(rnd() * 20_000);
      const p = `/var/lib/libvirt/images/vm-${String(k).padStart(5, '0')}.qcow2`;
      const lease = k % 20 === 0;
      const disk = lease ? `/var/lib/libvirt/lockd/files/${sha256Hex(p)}` : p;
      const owner = { uuid: `5a1e0000-0000-4000-8000-${String(k % 8000).padStart(12, '0')}`, name: `vm-${k % 8000}` };
      const payload = { resource: `/var/lib/vmlockd/lockspace/${sha256Hex(p)}`, lockspace: '/var/lib/vmlockd/lockspace', kind: 'file', disk, path: disk, ...(lease ? {} : { inode: `64769:${100000 + k}:1733000000${String(k).padStart(9, '0')}` }), owner, mode: 'exclusive', source: 'virsh', generation: 1 + (seq % 97) };
      ins.run(seq, new Date(t0 + seq * 50).toISOString(), 'bench-host', seq % 2 ? 'LockAcquired' : 'LockReleased', payload.resource, disk, owner.uuid, owner.name, JSON.stringify(payload));
    }
  })();
  for (const ix of AUDIT_INDEXES) db.exec(ix.sql);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

function ms<T>(fn: () => T): [number, T] {
  const t = performance.now();
  const v = fn();
  return [performance.now() - t, v];
}

const base = path.join(dir, 'schema3', 'journal.db');
if (!fs.existsSync(base)) {
  const [t] = ms(() => generate(base));
  process.stderr.write(`generated ${N.toLocaleString('en-US')} facts in ${(t / 1000).toFixed(0)} s\n`);
}
const copy = (name: string) => {
  const f = path.join(dir, name, 'journal.db');
  fs.rmSync(path.dirname(f), { recursive: true, force: true });
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.copyFileSync(base, f);
  return f;
};

// The migration a start pays: open (writer) of the schema-3 file, against an open of the same file once migrated.
const scanFile = copy('scan');
const [migrateMs, j0] = ms(() => Journal.open(scanFile, { host: 'bench-host' }));
j0.close();
const [reopenMs, j1] = ms(() => Journal.open(scanFile, { host: 'bench-host' }));
j1.close();
console.log(`migration: Journal.open of the ${N.toLocaleString('en-US')}-fact schema-3 file ${migrateMs.toFixed(1)} ms; the same open once migrated ${reopenMs.toFixed(1)} ms (load ${load()})`);

// The backfill, batch by batch, as the writer thread runs it (without its pauses).
const indexedFile = copy('indexed');
const jb = Journal.open(indexedFile, { host: 'bench-host' });
const batches: number[] = [];
const [fillMs] = ms(() => {
  for (;;) {
    const [t, left] = ms(() => indexDiskNamesBatch(jb.db));
    batches.push(t);
    if (left === 0) break;
  }
});
batches.sort((a, b) => a - b);
const rows = jb.db.prepare('SELECT count(*) FROM disk_names').pluck().get() as number;
jb.close();
console.log(`backfill: ${batches.length} batches in ${(fillMs / 1000).toFixed(1)} s, a batch p50 ${batches[Math.floor(batches.length / 2)]!.toFixed(1)} ms, max ${batches[batches.length - 1]!.toFixed(1)} ms; ${rows.toLocaleString('en-US')} disk_names rows (load ${load()})`);

// Lookups: the scan (nothing indexed yet: every lookup before schema 4) against the index probe.
const hit = `64769:${100000 + 1234}:1733000000${String(1234).padStart(9, '0')}`;
const miss = '64769:1:1';
const leaseHash = sha256Hex('/var/lib/libvirt/images/vm-00020.qcow2');
const scan = Journal.open(scanFile, { host: 'r', readonly: true });
const index = Journal.open(indexedFile, { host: 'r', readonly: true });
for (const [what, q] of [
  ['identity found', (j: Journal) => j.disksWithInode([hit])],
  ['identity not found', (j: Journal) => j.disksWithInode([miss])],
  ['lease hash found', (j: Journal) => j.leaseDisks([leaseHash])],
] as const) {
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const [ta, ra] = ms(() => q(scan));
    const [tb, rb] = ms(() => q(index));
    if (JSON.stringify(ra) !== JSON.stringify(rb)) throw new Error(`${what}: scan ${JSON.stringify(ra)} != index ${JSON.stringify(rb)}`);
    a.push(ta);
    b.push(tb);
  }
  console.log(`${what}: scan ${a.map((x) => x.toFixed(0)).join(', ')} ms; index ${b.map((x) => x.toFixed(2)).join(', ')} ms (load ${load()})`);
}
scan.close();
index.close();

// The triggers' cost per appended fact: 10,000 facts in batches of 500 into a schema-3 file and a schema-4 one, alternating.
const v3 = path.join(dir, 'append3', 'journal.db');
const v4 = path.join(dir, 'append4', 'journal.db');
for (const f of [v3, v4]) {
  fs.rmSync(path.dirname(f), { recursive: true, force: true });
  fs.mkdirSync(path.dirname(f), { recursive: true });
  const db = new Database(f);
  db.pragma('journal_mode = WAL');
  migrate(db, f, f === v3 ? MIGRATIONS.slice(0, 3) : MIGRATIONS);
  db.close();
}
// Raw inserts (no Journal.open, which would migrate the schema-3 file): the triggers' cost alone.
const a3: number[] = [];
const a4: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  a3.push(appendRaw(v3, r));
  a4.push(appendRaw(v4, r));
}
console.log(`append 10,000 facts (500 a transaction): schema 3 ${a3.map((x) => x.toFixed(0)).join(', ')} ms; schema 4 ${a4.map((x) => x.toFixed(0)).join(', ')} ms (load ${load()})`);

function appendRaw(file: string, round: number): number {
  const db = new Database(file);
  db.pragma('synchronous = NORMAL');
  const ins = db.prepare('INSERT INTO facts (seq, at, host, kind, resource, disk, owner, owner_name, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  let seq = (db.prepare('SELECT coalesce(max(seq), 0) FROM facts').pluck().get() as number);
  const [t] = ms(() => {
    for (let b = 0; b < 20; b++) {
      db.transaction(() => {
        for (let k = 0; k < 500; k++) {
          const i = b * 500 + k;
          seq++;
          ins.run(seq, new Date(Date.parse('2030-01-01T00:00:00.000Z') + round * 100_000 + i).toISOString(), 'h', 'LockAcquired', `/ls/${i}`, `/images/d${i % 3000}.img`, `o${i % 100}`, `vm${i % 100}`, JSON.stringify({ disk: `/images/d${i % 3000}.img`, inode: `64769:${i % 3000}:1`, pad: 'x'.repeat(150) }));
        }
      })();
    }
  });
  db.close();
  return t;
}
