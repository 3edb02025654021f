// A sealed segment in the middle of a host's chain removed, emptied or cut to its header under
// <lockspace>/.journal/ after the read cache read it (review 23b item 1): the cached audit --cluster
// must not answer its facts (nor those the chain no longer reaches past it) as published, and must
// name them, on this question and the next (the hint's fast path must not skip the check); a copy put
// back under another inode is the same history again.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, encodeSeal, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { cli, tmpdir } from '../helpers/daemon.js';

const J = 'c0ffee00c0ffee00';
const H = 'hv-a';

function history(n: number): Array<{ row: ChainRow; hash: Buffer }> {
  const out: Array<{ row: ChainRow; hash: Buffer }> = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), host: H, kind: 'OwnerSeen', resource: null, disk: null, owner: '11111111-1111-4111-8111-111111111111', owner_name: 'web1', payload: JSON.stringify({ n: seq }) };
    prev = chainHash(prev, row);
    out.push({ row, hash: prev });
  }
  return out;
}

function setup(prefix: string) {
  const root = tmpdir(prefix);
  const ls = path.join(root, 'lockspace');
  const cache = path.join(root, 'cache');
  const state = path.join(root, 'state');
  fs.mkdirSync(state);
  const all = history(12);
  const dir = hostSegmentDir(ls, H);
  fs.mkdirSync(dir, { recursive: true });
  const seg = (first: number, last: number, sealed: boolean): string => {
    let t = encodeHeader({ host: H, journal: J, first, prev: first === 1 ? GENESIS_HASH : all[first - 2]!.hash, created: '2026-01-01T00:00:00.000Z' });
    for (const f of all.slice(first - 1, last)) t += encodeFact(f.row, f.hash);
    if (sealed) t += encodeSeal({ last, hash: all[last - 1]!.hash, count: last - first + 1 });
    fs.writeFileSync(path.join(dir, segmentFileName(J, first)), t);
    return path.join(dir, segmentFileName(J, first));
  };
  seg(1, 4, true);
  const middle = seg(5, 8, true);
  seg(9, 12, false);
  const env = { VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(root, 'none.sock') };
  const audit = (withCache = true) => {
    const r = cli(['audit', '--cluster', '--lockspace', ls, ...(withCache ? ['--cache', cache] : []), '--json', '--limit', '0'], { env });
    assert.is(r.code, 0, r.stderr);
    return { seqs: (JSON.parse(r.stdout) as Array<{ seq: number }>).map((f) => f.seq), stderr: r.stderr };
  };
  const verify = () => cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--cache', cache, '--state-dir', state, '--json'], { env });
  return { middle, audit, verify };
}

for (const how of ['removed', 'emptied', 'cut to its header'] as const) {
  test(`the middle sealed segment ${how} after the cache read it: its facts are not answered, and the gap is named`, () => {
    const { middle, audit, verify } = setup('vmlockd-r23b-mid-');
    assert.equal(audit().seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    if (how === 'removed') fs.rmSync(middle);
    else if (how === 'emptied') fs.writeFileSync(middle, '');
    else fs.writeFileSync(middle, fs.readFileSync(middle, 'utf8').split('\n')[0] + '\n');
    const a = audit();
    const noCache = audit(false);
    const v = verify();
    assert.equal(a.seqs, [1, 2, 3, 4], `cached answer after the middle segment was ${how}: ${a.stderr}`);
    assert.equal(noCache.seqs, [1, 2, 3, 4]);
    assert.match(a.stderr, /host hv-a: journal c0ffee00c0ffee00: segment c0ffee00c0ffee00-0+5\.seg: seq 5 to 8 .*no longer published/, 'the cached answer names the segment and 5..8');
    assert.match(noCache.stderr, /seq 5/, 'the uncached answer names the missing 5..8');
    assert.is(v.code, 1, v.stdout);
    // The next question (the hint's fast path) says it again and still leaves them out.
    const again = audit();
    assert.equal(again.seqs, [1, 2, 3, 4]);
    assert.match(again.stderr, /seq 5 to 8 .*no longer published/);
  });
}

test('a middle segment copied back under another inode is the same history: nothing vanishes', () => {
  const { middle, audit } = setup('vmlockd-r23b-mid-copy-');
  assert.equal(audit().seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const bytes = fs.readFileSync(middle);
  fs.rmSync(middle);
  fs.writeFileSync(`${middle}.tmp`, bytes);
  fs.renameSync(`${middle}.tmp`, middle);
  const a = audit();
  assert.equal(a.seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.is(a.stderr, '');
});

test('a middle segment removed and put back: its facts are answered again and the warning ends', () => {
  const { middle, audit } = setup('vmlockd-r23b-mid-back-');
  assert.equal(audit().seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const bytes = fs.readFileSync(middle);
  fs.rmSync(middle);
  assert.equal(audit().seqs, [1, 2, 3, 4]);
  fs.writeFileSync(middle, bytes);
  const a = audit();
  assert.equal(a.seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.is(a.stderr, '');
});

test.run();
