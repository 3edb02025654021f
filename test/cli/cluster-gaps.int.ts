// A host's down gaps on the cluster timeline (gapsOf, cluster-query.ts) from a cache caught up from
// real segment files: a clean stop until the next start, a crash from the last fact before the
// restart (in the same journal, and across a host's two journals), a dead host from its last fact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { clusterTimeline, type ClusterSources } from '../../src/cli/cluster-query.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const DISK = '/srv/shared/gaps.img';
const T = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

function journal(lockspace: string, host: string, id: string, events: Array<[number, string]>): void {
  const w = segmentWriter(lockspace, host, id, { segmentBytes: 4096 });
  let prev = GENESIS_HASH;
  let seq = 0;
  const vm = { uuid: '44444444-4444-4444-8444-444444444444', name: 'vm-gaps' };
  for (const [at, kind] of events) {
    seq++;
    const lock = kind === 'LockAcquired' || kind === 'LockReleased';
    const payload = lock ? { owner: vm, mode: 'exclusive' } : kind === 'OwnerSeen' ? { owner: vm, event: 'seen' } : { pid: seq };
    const r: ChainRow = { seq, at: T(at), host, kind, resource: lock ? '/ls/gaps' : null, disk: lock ? DISK : null, owner: lock || kind === 'OwnerSeen' ? vm.uuid : null, owner_name: lock || kind === 'OwnerSeen' ? vm.name : null, payload: JSON.stringify(payload) };
    prev = chainHash(prev, r);
    w.add(r, prev);
  }
  w.flush();
}

test('stop, crash (within a journal and across two), and a dead host: each gap from the right fact', () => {
  const dir = tmpdir('vmlockd-cluster-gaps-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(lockspace);
  // hv-a: start 1, lock 2, clean stop 10, start 20, seen 25, crash (no stop), start 40, seen 45, stop 50.
  journal(lockspace, 'hv-a', 'aaaaaaaaaaaaaaaa', [[1, 'DaemonStarted'], [2, 'LockAcquired'], [10, 'DaemonStopped'], [20, 'DaemonStarted'], [25, 'OwnerSeen'], [40, 'DaemonStarted'], [45, 'OwnerSeen'], [50, 'DaemonStopped']]);
  // hv-b: one journal crashes after its fact at 30; a new journal (state directory lost) starts at 60.
  journal(lockspace, 'hv-b', 'bbbbbbbbbbbbbbb1', [[3, 'DaemonStarted'], [4, 'LockAcquired'], [8, 'LockReleased'], [30, 'OwnerSeen']]);
  journal(lockspace, 'hv-b', 'bbbbbbbbbbbbbbb2', [[60, 'DaemonStarted'], [61, 'OwnerSeen'], [62, 'DaemonStarted'], [70, 'OwnerSeen']]);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  assert.equal(cache.catchUp().problems, []);
  const hosts = new Map<string, ClusterSources['hosts'][number]['chains'][number][]>();
  for (const c of cache.chains()) hosts.set(c.host, [...(hosts.get(c.host) ?? []), { chain: c, journal: cache.openChain(c) }]);
  const cs: ClusterSources = { hosts: [...hosts].map(([host, chains]) => ({ host, alive: host === 'hv-a', chains })), now: T(100) };
  try {
    const t = clusterTimeline(cs, DISK, T(0), T(100));
    const gaps = t.gaps.map((g) => `${g.host} ${g.how} ${g.from}..${g.to ?? 'open'}`).sort();
    assert.equal(gaps, [
      `hv-a crash ${T(25)}..${T(40)}`,
      `hv-a stopped ${T(10)}..${T(20)}`,
      `hv-a stopped ${T(50)}..open`,
      `hv-b crash ${T(30)}..${T(60)}`,
      `hv-b crash ${T(61)}..${T(62)}`,
      `hv-b crash ${T(70)}..open`,
    ].sort());
  } finally {
    for (const h of cs.hosts) for (const c of h.chains) c.journal.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
