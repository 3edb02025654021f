// The cluster read cache on real segment files: incremental catch-up from the stored offset, a torn
// last line left for later, rotation to the next segment, a corrupt line stopping only its host's chain.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, encodeSeal, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { tmpdir } from '../helpers/daemon.js';

const J = 'feedfacecafebeef';

function row(host: string, seq: number): ChainRow {
  return { seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), host, kind: 'OwnerSeen', resource: null, disk: null, owner: '11111111-1111-4111-8111-111111111111', owner_name: 'web1', payload: `{"n":${seq}}` };
}

/** A hand-driven writer: lines exactly as the publisher writes them. */
function chain(lockspace: string, host: string) {
  const dir = hostSegmentDir(lockspace, host);
  fs.mkdirSync(dir, { recursive: true });
  let prev = GENESIS_HASH;
  let seq = 0;
  let file = '';
  let count = 0;
  const open = () => {
    file = path.join(dir, segmentFileName(J, seq + 1));
    fs.writeFileSync(file, encodeHeader({ host, journal: J, first: seq + 1, prev, created: '2026-01-01T00:00:00.000Z' }));
    count = 0;
  };
  open();
  return {
    line(): string {
      seq++;
      const r = row(host, seq);
      prev = chainHash(prev, r);
      count++;
      return encodeFact(r, prev);
    },
    append(text: string) {
      fs.appendFileSync(file, text);
    },
    rotate() {
      fs.appendFileSync(file, encodeSeal({ last: seq, hash: prev, count }));
      open();
    },
    get file() {
      return file;
    },
  };
}

test('catch-up is incremental, leaves a torn last line for later, follows a rotation, and stops one chain at a corrupt line', () => {
  const dir = tmpdir('vmlockd-cluster-cache-');
  const lockspace = path.join(dir, 'lockspace');
  const a = chain(lockspace, 'hv-a');
  const b = chain(lockspace, 'hv-b');
  for (let i = 0; i < 10; i++) a.append(a.line());
  for (let i = 0; i < 5; i++) b.append(b.line());
  const cache = ClusterCache.open(path.join(dir, 'cache'), lockspace);
  let r = cache.catchUp();
  assert.equal([r.hosts, r.chains, r.newFacts, r.problems.length], [2, 2, 15, 0]);
  assert.is(cache.catchUp().newFacts, 0, 'nothing new: nothing read again');

  // Half a line: not yet written. Its other half: read once.
  const line = a.line();
  a.append(line.slice(0, 20));
  r = cache.catchUp();
  assert.equal([r.newFacts, r.pendingTails], [0, 1]);
  a.append(line.slice(20));
  assert.is(cache.catchUp().newFacts, 1);

  // Rotation: seal, next segment; the cache moves on to it.
  a.rotate();
  for (let i = 0; i < 3; i++) a.append(a.line());
  assert.is(cache.catchUp().newFacts, 3);

  // hv-b: an altered fact stops hv-b's chain there (named), hv-a goes on.
  const good = b.line();
  const bad = b.line();
  b.append(good + bad.replace('"payload":"{\\"n\\":7}"', '"payload":"{\\"n\\":8}"'));
  a.append(a.line());
  r = cache.catchUp();
  assert.is(r.newFacts, 2, 'hv-b seq 6 and hv-a seq 15');
  assert.is(r.problems.length, 1);
  assert.equal([r.problems[0]!.host, r.problems[0]!.segment, r.problems[0]!.seq], ['hv-b', segmentFileName(J, 1), 7]);
  assert.match(r.problems[0]!.reason, /hash does not chain/);

  const chains = cache.chains();
  assert.equal(chains.map((c) => `${c.host}:${c.facts}:${c.last?.seq}`), ['hv-a:15:15', 'hv-b:6:6']);
  const j = cache.openChain(chains[0]!);
  try {
    assert.equal(j.query({ owner: 'web1', limit: 2, newest: true }).map((f) => f.seq), [14, 15], 'a journal-schema file the audit queries read');
  } finally {
    j.close();
  }
  // A fresh cache over the same segments reads the same, in one go.
  const again = ClusterCache.open(path.join(dir, 'cache2'), lockspace).catchUp();
  assert.equal([again.newFacts, again.problems.length], [21, 1]);
});

test.run();
