// Each cluster question reads every chain in one read transaction (inSnapshot, cluster-query.ts): its
// statements see one state of the chain, the transaction is ended when the question returns or
// throws (an open one would keep the next catch-up's checkpoint from finishing), and the answers are
// the ones the same questions give without it. On a cache caught up from real segment files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CONFLICT_KINDS } from '../../src/cli/audit-query.js';
import { holdersAnswer, queryFacts } from '../../src/cli/audit-query.js';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { clusterFacts, clusterHolders, clusterOverlaps, clusterTimeline, inSnapshot, sourcesAt, type ClusterSources } from '../../src/cli/cluster-query.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { tmpdir } from '../helpers/daemon.js';

const DISK = '/srv/shared/moved.img';
const T = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

/** Two hosts handing DISK over, each with a restart and a refusal. */
function publish(lockspace: string): void {
  for (const [h, host] of ['hv-a', 'hv-b'].entries()) {
    const w = segmentWriter(lockspace, host, `${h}bcdef0123456789`.slice(0, 16), { segmentBytes: 4096 });
    let prev = GENESIS_HASH;
    let seq = 0;
    const vm = { uuid: `2222222${h}-2222-4222-8222-222222222222`, name: `vm-${host}` };
    const add = (kind: string, at: number, disk: string | null, payload: object) => {
      seq++;
      const r: ChainRow = { seq, at: T(at), host, kind, resource: disk === null ? null : '/ls/moved', disk, owner: disk === null ? null : vm.uuid, owner_name: disk === null ? null : vm.name, payload: JSON.stringify(payload) };
      prev = chainHash(prev, r);
      w.add(r, prev);
    };
    add('DaemonStarted', 1 + h, null, { pid: 1 });
    for (let i = 0; i < 30; i++) {
      const t = 10 + i * 20;
      if (i % 2 === h) {
        add('LockAcquired', t, DISK, { owner: vm, mode: 'exclusive', generation: i });
        add('LockReleased', t + 5, DISK, { owner: vm, reason: 'stopped' });
      } else if (i % 7 === 3) add('LockRefused', t + 1, DISK, { owner: vm, mode: 'exclusive', holder: { host: 'other', mode: 'exclusive' } });
      if (i === 17) {
        add('DaemonStopped', t + 8, null, { pid: 1 });
        add('DaemonStarted', t + 9, null, { pid: 2 });
      }
    }
    w.flush();
  }
}

function sources(cache: ClusterCache): ClusterSources {
  const hosts = new Map<string, ClusterSources['hosts'][number]['chains'][number][]>();
  for (const c of cache.chains()) hosts.set(c.host, [...(hosts.get(c.host) ?? []), { chain: c, journal: cache.openChain(c) }]);
  return { hosts: [...hosts].map(([host, chains]) => ({ host, alive: true, chains })), now: T(2000) };
}

const open = (cs: ClusterSources) => cs.hosts.flatMap((h) => h.chains.filter((c) => c.journal.db.inTransaction).map((c) => c.chain.host));

test('a question reads each chain in one transaction, ended when it returns or throws; the answers are unchanged', () => {
  const dir = tmpdir('vmlockd-cluster-snapshot-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(lockspace);
  publish(lockspace);
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  assert.equal(cache.catchUp().problems, []);
  const cs = sources(cache);
  assert.is(cs.hosts.length, 2);
  try {
    // Inside a question every chain is in its read transaction; after it, none is.
    let inside: string[] = [];
    inSnapshot(cs, () => {
      inside = open(cs);
    });
    assert.equal(inside, ['hv-a', 'hv-b']);
    assert.equal(open(cs), []);
    assert.throws(() => inSnapshot(cs, () => {
      throw new Error('boom');
    }), /boom/);
    assert.equal(open(cs), []);
    // A question inside another's snapshot runs in it and leaves it to the outer one to end.
    inSnapshot(cs, () => {
      clusterHolders(cs, DISK, T(100));
      inside = open(cs);
    });
    assert.equal(inside, ['hv-a', 'hv-b']);
    assert.equal(open(cs), []);

    // The same answers as the one-journal code run statement by statement.
    for (let s = 5; s < 620; s += 37) {
      const got = clusterHolders(cs, DISK, T(s));
      assert.equal(open(cs), []);
      const plain = cs.hosts.flatMap((h) => {
        const src = sourcesAt(h, T(s), cs.now);
        return src === undefined ? [] : holdersAnswer(src, DISK, T(s)).holders;
      });
      assert.equal(got.holders.map((x) => [x.host, x.owner.uuid, x.since]).sort(), plain.map((x) => [x.host, x.owner.uuid, x.since]).sort());
    }
    const conflicts = clusterFacts(cs, { kinds: [...CONFLICT_KINDS], since: T(0), until: T(2000) }, 1000);
    const plain = cs.hosts.flatMap((h) => h.chains.flatMap((c) => queryFacts({ live: c.journal }, { kinds: [...CONFLICT_KINDS], since: T(0), until: T(2000), limit: 1000, newest: true })));
    assert.is(conflicts.length, plain.length);
    assert.ok(conflicts.length > 0);
    assert.ok(clusterTimeline(cs, DISK, T(0), T(2000)).intervals.length >= 28);
    assert.equal(clusterOverlaps(cs, DISK), []);
    assert.equal(open(cs), []);

    // No reader holds a transaction between questions: another connection's writes and a full
    // checkpoint (what a catch-up does) go through while the question's connections stay open.
    const file = cs.hosts[0]!.chains[0]!.chain.file;
    const w = new Database(file);
    try {
      w.pragma('busy_timeout = 0');
      w.exec(`INSERT INTO meta (key, value) VALUES ('snapshot-test', '1')`);
      const ck = w.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
      assert.is(ck[0]!.busy, 0, 'a reader held the WAL: the checkpoint could not finish');
    } finally {
      w.close();
    }
  } finally {
    for (const h of cs.hosts) for (const c of h.chains) c.journal.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
