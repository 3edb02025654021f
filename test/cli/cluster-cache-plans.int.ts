// The cluster read cache answers each question from an index that carries every column it reads
// (no table lookup per fact, no full scan), on a cache caught up from real segment files, and an older
// cache's indexes are rebuilt to those on its next catch-up. The answers are the same facts either way.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CONFLICT_KINDS, DISK_KINDS, LOCK_KINDS } from '../../src/cli/audit-query.js';
import { CACHE_INDEXES, ClusterCache } from '../../src/cli/cluster-cache.js';
import { AUDIT_INDEXES, GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import type { FactQuery, Journal } from '../../src/journal/journal.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const DISK = '/var/lib/libvirt/images/db.qcow2';
const VM = { uuid: '22222222-2222-4222-8222-222222222222', name: 'db' };
const T = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

/** One host's history: starts, grants and releases of DISK by VM, a refusal, other VMs' noise. */
function publish(lockspace: string): void {
  const w = segmentWriter(lockspace, 'hv-a', 'abcdef0123456789', { segmentBytes: 4096 });
  let prev = GENESIS_HASH;
  let seq = 0;
  const add = (kind: string, disk: string | null, owner: { uuid: string; name: string } | null, payload: object) => {
    seq++;
    const r: ChainRow = { seq, at: T(seq), host: 'hv-a', kind, resource: disk === null ? null : `/ls/${seq % 7}`, disk, owner: owner?.uuid ?? null, owner_name: owner?.name ?? null, payload: JSON.stringify(payload) };
    prev = chainHash(prev, r);
    w.add(r, prev);
  };
  add('DaemonStarted', null, null, { pid: 1 });
  for (let i = 0; i < 40; i++) {
    const other = { uuid: `33333333-3333-4333-8333-${String(i).padStart(12, '0')}`, name: `vm${i}` };
    add('OwnerSeen', null, other, { owner: other, event: 'started' });
    add('LockAcquired', `/d/${i}`, other, { owner: other, mode: 'exclusive', generation: 1 });
    if (i % 10 === 0) add('LockAcquired', DISK, VM, { owner: VM, mode: 'exclusive', generation: i });
    if (i % 10 === 5) add('LockReleased', DISK, VM, { owner: VM, reason: 'stopped' });
    if (i === 21) add('LockRefused', DISK, other, { owner: other, mode: 'exclusive', holder: { host: 'hv-a', mode: 'exclusive' } });
    if (i === 30) add('DaemonStopped', null, null, { pid: 1 });
    if (i === 30) add('DaemonStarted', null, null, { pid: 2 });
  }
  w.flush();
}

function chainOf(cache: ClusterCache): Journal {
  const [c] = cache.chains();
  return cache.openChain(c!);
}

const QUESTIONS: Array<[string, FactQuery, boolean, RegExp]> = [
  ['--disk history', { disk: DISK, kinds: [...DISK_KINDS], limit: 1000, newest: true }, false, /^SEARCH facts USING COVERING INDEX facts_disk_at \(disk=\?\)$/],
  ['--at walk', { disk: DISK, kinds: [...LOCK_KINDS], until: T(200) }, true, /^SEARCH facts USING COVERING INDEX facts_disk_at \(disk=\? AND at<\?\)$/],
  ['--vm NAME', { owner: VM.name, limit: 1000, newest: true }, false, /^SEARCH facts USING COVERING INDEX facts_owner_at \(owner=\?\)/],
  ['--vm UUID', { owner: VM.uuid, since: T(10), limit: 1000, newest: true }, false, /^SEARCH facts USING COVERING INDEX facts_owner_at \(owner=\? AND at>\?\)/],
  ['--conflicts --since', { kinds: [...CONFLICT_KINDS], since: T(1), until: T(200), limit: 1000, newest: true }, false, /COVERING INDEX facts_rare_at \(kind=\? AND at>\? AND at<\?\).*COVERING INDEX facts_rare_at \(kind=\? AND at>\? AND at<\?\)/],
  ['the run before a moment', { kinds: ['DaemonStarted'], until: T(150), limit: 1, newest: true }, false, /^SEARCH facts USING COVERING INDEX facts_rare_at \(kind=\? AND at<\?\)$/],
];

test('every cluster question reads a covering index of the caught-up cache, never the table or a full scan', () => {
  const dir = tmpdir('vmlockd-cluster-plans-');
  const lockspace = path.join(dir, 'lockspace');
  publish(lockspace);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  assert.is(cache.catchUp().problems.length, 0);
  const j = chainOf(cache);
  try {
    for (const [name, q, descending, plan] of QUESTIONS) {
      const p = descending ? j.iteratePlan(q, { descending: true }) : j.queryPlan(q);
      assert.match(p, plan, `${name}: ${p}`);
      assert.not.match(p, /SCAN facts|TEMP B-TREE FOR LAST TERM/, `${name}: ${p}`);
    }
    // The answers: the facts themselves, in order.
    assert.equal(j.query({ disk: DISK, kinds: [...DISK_KINDS], limit: 4, newest: true }).map((f) => [f.kind, f.ownerName, (f.payload as { generation?: number }).generation ?? null]), [
      ['LockRefused', 'vm21', null],
      ['LockReleased', 'db', null],
      ['LockAcquired', 'db', 30],
      ['LockReleased', 'db', null],
    ]);
    assert.equal(j.query({ kinds: [...CONFLICT_KINDS], since: T(1), until: T(200), limit: 1000, newest: true }).map((f) => [f.kind, f.disk]), [['LockRefused', DISK]]);
    assert.equal(j.query({ kinds: ['DaemonStarted'], limit: 5 }).map((f) => (f.payload as { pid: number }).pid), [1, 2]);
    assert.equal(j.query({ owner: VM.name }).map((f) => f.kind), ['LockAcquired', 'LockReleased', 'LockAcquired', 'LockReleased', 'LockAcquired', 'LockReleased', 'LockAcquired', 'LockReleased']);
  } finally {
    j.close();
  }
});

test("a cache built with the journal's narrow indexes gets the covering ones on its next catch-up", () => {
  const dir = tmpdir('vmlockd-cluster-plans-old-');
  const lockspace = path.join(dir, 'lockspace');
  publish(lockspace);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  cache.catchUp();
  const [c] = cache.chains();
  // As an older vmlockd left it: the journal schema's indexes, no rare-kinds index.
  const db = new Database(c!.file);
  for (const ix of CACHE_INDEXES) db.exec(`DROP INDEX IF EXISTS ${ix.name}`);
  for (const ix of AUDIT_INDEXES) db.exec(ix.sql);
  db.close();
  const hint = JSON.parse(fs.readFileSync(`${c!.file}.pos`, 'utf8')) as Record<string, unknown>;
  delete hint.ix;
  fs.writeFileSync(`${c!.file}.pos`, JSON.stringify(hint));
  const old = chainOf(cache);
  const before = old.query({ owner: VM.name, limit: 1000, newest: true });
  assert.match(old.queryPlan({ disk: DISK, kinds: [...DISK_KINDS], limit: 1000, newest: true }), /USING INDEX facts_disk_at/);
  old.close();

  assert.is(cache.catchUp().newFacts, 0);
  const j = chainOf(cache);
  try {
    for (const [name, q, descending, plan] of QUESTIONS) {
      const p = descending ? j.iteratePlan(q, { descending: true }) : j.queryPlan(q);
      assert.match(p, plan, `${name}: ${p}`);
    }
    assert.equal(j.query({ owner: VM.name, limit: 1000, newest: true }), before);
  } finally {
    j.close();
  }
});

test.run();
