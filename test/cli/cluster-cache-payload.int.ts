// The cluster read cache stores each fact's payload with its owner prefix elided (payload-elide.ts,
// decision 0014): every answer still carries the payload exactly as published, the chain still verifies
// from the cache file, and a cache an older vmlockd wrote with whole payloads is rewritten once, in
// place, on its next catch-up (never misread, its facts kept).
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { Journal } from '../../src/journal/journal.js';
import { ELIDED_KEY, restorePayload } from '../../src/journal/payload-elide.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const J = 'feedfacecafebeef';
const NAMES = ['web1', 'we"b\\2', 'wéb-3', 'w\u2028b'];

/** Facts of every payload shape: the owner first (elided), other key orders, no owner, odd names. */
function rows(host: string, from: number, n: number): ChainRow[] {
  const out: ChainRow[] = [];
  for (let seq = from; seq < from + n; seq++) {
    const name = NAMES[seq % NAMES.length]!;
    const uuid = `11111111-1111-4111-8111-${String(seq % 7).padStart(12, '0')}`;
    const at = new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString();
    const disk = `/var/lib/libvirt/images/d${seq % 5}.qcow2`;
    const k = seq % 6;
    const base = { seq, at, host, resource: `/ls/${seq % 5}`, disk, owner: uuid, owner_name: name };
    if (k === 0) out.push({ ...base, kind: 'DaemonStarted', resource: null, disk: null, owner: null, owner_name: null, payload: JSON.stringify({ pid: seq, held: 0 }) });
    else if (k === 1) out.push({ ...base, kind: 'LockAcquired', payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', source: 'virsh', generation: seq }) });
    else if (k === 2) out.push({ ...base, kind: 'LockReleased', payload: JSON.stringify({ owner: { name, uuid }, source: 'virsh' }) });
    else if (k === 3) out.push({ ...base, kind: 'OwnerSeen', disk: null, resource: null, payload: JSON.stringify({ owner: { uuid, name } }) });
    else if (k === 4) out.push({ ...base, kind: 'LockAcquired', owner_name: 'another-name', payload: JSON.stringify({ owner: { uuid, name }, mode: 'shared', source: 'virsh' }) });
    else out.push({ ...base, kind: 'LockRefused', payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', holder: { host: 'hv-x', mode: 'exclusive' }, message: 'held elsewhere' }) });
  }
  return out;
}

function publish(lockspace: string, host: string, n: number): { add: (more: number) => void; all: ChainRow[] } {
  const w = segmentWriter(lockspace, host, J, { segmentBytes: 4096 });
  let prev = GENESIS_HASH;
  const all: ChainRow[] = [];
  const add = (more: number) => {
    for (const r of rows(host, all.length + 1, more)) {
      prev = chainHash(prev, r);
      w.add(r, prev);
      all.push(r);
    }
    w.flush();
  };
  add(n);
  return { add, all };
}

/** Every fact the cache answers for the chain, by every read path, against what was published. */
function assertAnswers(cache: ClusterCache, published: readonly ChainRow[]): void {
  const [c] = cache.chains();
  assert.ok(c, 'the chain is cached');
  const j = cache.openChain(c!);
  try {
    const want = published.map((r) => ({ seq: r.seq, payload: JSON.parse(r.payload) as unknown }));
    assert.equal(j.query({}).map((f) => ({ seq: f.seq, payload: f.payload })), want, 'query: every payload as published');
    assert.equal([...j.readAfter(0)].map((f) => ({ seq: f.seq, payload: f.payload })), want, 'readAfter: every payload as published');
    // The disk and VM questions read the covering indexes: their payloads too.
    const disk = published.find((r) => r.disk !== null)!.disk!;
    assert.equal(j.query({ disk }).map((f) => f.payload), published.filter((r) => r.disk === disk).map((r) => JSON.parse(r.payload) as unknown));
    const owner = published.find((r) => r.owner !== null)!.owner!;
    assert.equal(j.query({ owner }).map((f) => f.payload), published.filter((r) => r.owner === owner).map((r) => JSON.parse(r.payload) as unknown));
    assert.equal(j.query({ kinds: ['LockRefused'] }).map((f) => f.payload), published.filter((r) => r.kind === 'LockRefused').map((r) => JSON.parse(r.payload) as unknown));
    const chain = j.verifyChain();
    assert.is(chain.ok, true, `the cache's chain verifies against its stored hashes: ${JSON.stringify(chain)}`);
  } finally {
    j.close();
  }
}

function stored(file: string): Array<{ seq: number; payload: string }> {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT seq, payload FROM facts ORDER BY seq').all() as Array<{ seq: number; payload: string }>;
  } finally {
    db.close();
  }
}

test('payloads are stored with the owner prefix elided and every answer carries them exactly as published', () => {
  const dir = tmpdir('vmlockd-cluster-payload-');
  const lockspace = path.join(dir, 'lockspace');
  const p = publish(lockspace, 'hv-a', 120);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  const r = cache.catchUp();
  assert.equal([r.newFacts, r.problems.length], [120, 0]);
  const file = cache.chains()[0]!.file;
  const s = stored(file);
  // By seq mod 6: 1 owner first with the row's own name: elided; 2 keys in another order: whole; 3 the
  // owner alone: elided; 4 another name in the row than in the payload: whole; 0 no owner: whole.
  assert.ok(s[0]!.payload.startsWith('\u0001,"mode":"exclusive"'), `seq 1 stored elided: ${JSON.stringify(s[0]!.payload)}`);
  assert.ok(s[1]!.payload.startsWith('{"owner":{"name"'));
  assert.is(s[2]!.payload, '\u0001}');
  assert.ok(s[3]!.payload.startsWith('{"owner":{"uuid"'));
  assert.ok(s[5]!.payload.startsWith('{"pid"'));
  assertAnswers(cache, p.all);
  // More facts later (indexes in place): elided as well, answers still exact.
  p.add(30);
  assert.is(cache.catchUp().newFacts, 30);
  assertAnswers(cache, p.all);
});

test('a cache written with whole payloads (an older vmlockd) is read as it is, then rewritten once on its next catch-up', () => {
  const dir = tmpdir('vmlockd-cluster-payload-old-');
  const lockspace = path.join(dir, 'lockspace');
  const p = publish(lockspace, 'hv-a', 90);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  cache.catchUp();
  const file = cache.chains()[0]!.file;
  // The file as an older vmlockd left it: whole payloads, no form key, a hint naming its older index set.
  {
    const db = new Database(file);
    db.exec('DROP TRIGGER facts_no_update');
    const rowsNow = db.prepare('SELECT seq, owner, owner_name, payload FROM facts').all() as Array<{ seq: number; owner: string | null; owner_name: string | null; payload: string }>;
    const set = db.prepare('UPDATE facts SET payload = ? WHERE seq = ?');
    for (const x of rowsNow) set.run(restorePayload(x.payload, x.owner, x.owner_name), x.seq);
    db.prepare('DELETE FROM meta WHERE key = ?').run(ELIDED_KEY);
    db.close();
    const hint = JSON.parse(fs.readFileSync(`${file}.pos`, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(`${file}.pos`, JSON.stringify({ ...hint, ix: 'older000000' }));
  }
  assert.ok(stored(file).every((x) => !x.payload.startsWith('\u0001')), 'the emulated older cache holds whole payloads');
  assertAnswers(cache, p.all); // read as it is: no key, nothing restored
  const r = cache.catchUp();
  assert.equal([r.newFacts, r.problems.length, r.resets.length], [0, 0, 0], 'nothing read again: rewritten in place');
  assert.ok(stored(file).some((x) => x.payload.startsWith('\u0001')), 'rewritten elided');
  assertAnswers(cache, p.all);
  p.add(12);
  assert.is(cache.catchUp().newFacts, 12);
  assertAnswers(cache, p.all);
});

test('a new chain file has 16 KiB pages; one an older vmlockd made with 4 KiB pages is caught up and read as it is', () => {
  const dir = tmpdir('vmlockd-cluster-pages-');
  const lockspace = path.join(dir, 'lockspace');
  const a = publish(lockspace, 'hv-a', 40);
  const b = publish(lockspace, 'hv-b', 40);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  // hv-b's chain file exists already, with SQLite's default pages in WAL mode (as an older vmlockd left it).
  const old = path.join(cache.dir, 'hv-b', `${J}.db`);
  fs.mkdirSync(path.dirname(old), { recursive: true });
  const pre = new Database(old);
  pre.pragma('journal_mode = WAL');
  pre.exec('CREATE TABLE placeholder (x); DROP TABLE placeholder');
  pre.close();
  const r = cache.catchUp();
  assert.equal([r.newFacts, r.problems.length], [80, 0]);
  const pageSize = (file: string) => {
    const db = new Database(file, { readonly: true });
    try {
      return db.pragma('page_size', { simple: true }) as number;
    } finally {
      db.close();
    }
  };
  const chains = cache.chains();
  assert.equal(chains.map((c) => [c.host, pageSize(c.file)]), [['hv-a', 16384], ['hv-b', 4096]]);
  for (const [c, p] of [[chains[0]!, a], [chains[1]!, b]] as const) {
    const j = cache.openChain(c);
    try {
      assert.equal(j.query({}).map((f) => f.payload), p.all.map((x) => JSON.parse(x.payload) as unknown));
    } finally {
      j.close();
    }
  }
});

test('a payload form this vmlockd does not know (a newer one) is refused, never misread', () => {
  const dir = tmpdir('vmlockd-cluster-payload-new-');
  const lockspace = path.join(dir, 'lockspace');
  publish(lockspace, 'hv-a', 12);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  cache.catchUp();
  const c = cache.chains()[0]!;
  const db = new Database(c.file);
  db.prepare('UPDATE meta SET value = ? WHERE key = ?').run('owner-elided-99', ELIDED_KEY);
  db.close();
  assert.throws(() => cache.openChain(c).close(), /payload form "owner-elided-99"/);
});

test.run();
