// The cluster read cache when a host's published history is not the one it read before: a segment
// replaced under the same name (shorter or longer), a host's directory moved aside and published
// again (other segment boundaries), old segments pruned. The cache must notice (the bytes before its
// stored offset are kept as a hash), never resume at a stale offset in another file, never mix two
// histories and never silently skip facts; facts of a history that only lost segments stay.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, encodeSeal, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { cli, tmpdir } from '../helpers/daemon.js';

const J = 'c0ffee00c0ffee00';
const H = 'hv-a';

/** A history: `n` facts; from seq `from` on, payloads tagged `variant` (another history after that point). */
function history(n: number, variant = '', from = Infinity, pad = 0): Array<{ row: ChainRow; hash: Buffer }> {
  const out: Array<{ row: ChainRow; hash: Buffer }> = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const v = seq >= from ? variant : '';
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), host: H, kind: 'OwnerSeen', resource: null, disk: null, owner: '11111111-1111-4111-8111-111111111111', owner_name: 'web1', payload: JSON.stringify({ n: seq, v, pad: v ? 'x'.repeat(pad) : '' }) };
    prev = chainHash(prev, row);
    out.push({ row, hash: prev });
  }
  return out;
}

/** Writes the history as segments of the given fact counts (the last one left open, unsealed). */
function publish(lockspace: string, facts: Array<{ row: ChainRow; hash: Buffer }>, sizes: number[], created: string): string[] {
  const dir = hostSegmentDir(lockspace, H);
  fs.mkdirSync(dir, { recursive: true });
  const names: string[] = [];
  let i = 0;
  let prev = GENESIS_HASH;
  sizes.forEach((size, k) => {
    const first = i + 1;
    const name = segmentFileName(J, first);
    let text = encodeHeader({ host: H, journal: J, first, prev, created });
    const part = facts.slice(i, i + size);
    for (const f of part) text += encodeFact(f.row, f.hash);
    i += part.length;
    if (part.length > 0) prev = part[part.length - 1]!.hash;
    if (k < sizes.length - 1) text += encodeSeal({ last: i, hash: prev, count: part.length });
    fs.writeFileSync(path.join(dir, name), text);
    names.push(name);
  });
  return names;
}

function moveAside(lockspace: string): void {
  const dir = hostSegmentDir(lockspace, H);
  fs.renameSync(dir, path.join(lockspace, `moved-aside-${Math.random().toString(16).slice(2)}`));
}

/** The cached chain's facts as seq:hash, and its stored count and last seq. */
function cached(cache: ClusterCache): { rows: string[]; facts: number; last: number | undefined } {
  const chains = cache.chains().filter((c) => c.host === H);
  assert.is(chains.length, 1, 'one chain for the one journal');
  const j = cache.openChain(chains[0]!);
  try {
    const rows = j.db.prepare('SELECT seq, hash FROM facts ORDER BY seq').all() as Array<{ seq: number; hash: Buffer }>;
    return { rows: rows.map((r) => `${r.seq}:${r.hash.toString('hex').slice(0, 12)}`), facts: chains[0]!.facts, last: chains[0]!.last?.seq };
  } finally {
    j.close();
  }
}

const expected = (facts: Array<{ row: ChainRow; hash: Buffer }>) => facts.map((f) => `${f.row.seq}:${f.hash.toString('hex').slice(0, 12)}`);

function setup(name: string) {
  const dir = tmpdir(`vmlockd-cc-replaced-${name}-`);
  const lockspace = path.join(dir, 'lockspace');
  return { lockspace, cache: ClusterCache.open(path.join(dir, 'cache'), lockspace) };
}

test('a segment replaced under its name by a SHORTER other history (a journal restored from an older copy) is read again, not skipped', () => {
  const { lockspace, cache } = setup('short');
  publish(lockspace, history(10), [10], '2026-01-01T00:00:00.000Z');
  assert.is(cache.catchUp().newFacts, 10);
  assert.is(cache.catchUp().newFacts, 0);
  // Restored copy: seq 1..5 the same, then 6..7 another history; the old directory moved aside.
  moveAside(lockspace);
  const now = history(7, 'restored', 6);
  publish(lockspace, now, [7], '2026-01-02T00:00:00.000Z');
  const r = cache.catchUp();
  assert.equal(r.problems, []);
  assert.is(r.newFacts, 2, 'seq 6 and 7 of the history published now');
  assert.is(r.resets.length, 1);
  assert.is(r.resets[0]!.seq, 6);
  const c = cached(cache);
  assert.equal(c.rows, expected(now), 'exactly the history published now');
  assert.equal([c.facts, c.last], [7, 7]);
  // And it goes on from there.
  fs.rmSync(hostSegmentDir(lockspace, H), { recursive: true });
  const more = history(9, 'restored', 6);
  publish(lockspace, more, [9], '2026-01-02T00:00:00.000Z');
  assert.equal([cache.catchUp().newFacts, cached(cache).rows], [2, expected(more)]);
});

test('a segment replaced under its name by a LONGER other history: never resumed mid-line at the stale offset', () => {
  const { lockspace, cache } = setup('long');
  publish(lockspace, history(10), [10], '2026-01-01T00:00:00.000Z');
  assert.is(cache.catchUp().newFacts, 10);
  moveAside(lockspace);
  const now = history(30, 'other', 4, 37);
  publish(lockspace, now, [30], '2026-01-02T00:00:00.000Z');
  const r = cache.catchUp();
  assert.equal(r.problems, [], 'no decode error from a stale offset');
  assert.equal(r.resets.map((x) => x.seq), [4]);
  const c = cached(cache);
  assert.equal(c.rows, expected(now));
  assert.equal([c.facts, c.last], [30, 30]);
});

test('a directory moved aside and the same history published again (other segment boundaries): no duplicate, no gap, no reset', () => {
  const { lockspace, cache } = setup('same');
  const all = history(40);
  publish(lockspace, all.slice(0, 12), [5, 7], '2026-01-01T00:00:00.000Z');
  assert.is(cache.catchUp().newFacts, 12);
  moveAside(lockspace);
  // Published again from seq 1, rotating elsewhere: the segment the cache stood in has no namesake now.
  publish(lockspace, all.slice(0, 20), [8, 8, 4], '2026-01-03T00:00:00.000Z');
  const r = cache.catchUp();
  assert.equal([r.problems, r.resets, r.newFacts], [[], [], 8]);
  assert.equal(cached(cache).rows, expected(all.slice(0, 20)));
  // The same boundaries again, only the header's created time differs (same offsets).
  moveAside(lockspace);
  publish(lockspace, all.slice(0, 25), [8, 8, 9], '2026-01-04T00:00:00.000Z');
  const r2 = cache.catchUp();
  assert.equal([r2.problems, r2.resets, r2.newFacts], [[], [], 5]);
  assert.equal(cached(cache).rows, expected(all.slice(0, 25)));
});

test('old segments pruned: the facts read from them stay, reading goes on in the segments left', () => {
  const { lockspace, cache } = setup('pruned');
  const all = history(30);
  const names = publish(lockspace, all.slice(0, 10), [5, 5], '2026-01-01T00:00:00.000Z');
  assert.is(cache.catchUp().newFacts, 10);
  // The writer sealed the second segment and went on; the first two were pruned since.
  fs.rmSync(hostSegmentDir(lockspace, H), { recursive: true });
  const after = publish(lockspace, all.slice(0, 20), [5, 5, 10], '2026-01-01T00:00:00.000Z');
  assert.equal(after.slice(0, 2), names);
  for (const n of after.slice(0, 2)) fs.rmSync(path.join(hostSegmentDir(lockspace, H), n));
  const r = cache.catchUp();
  assert.equal([r.problems, r.resets, r.newFacts], [[], [], 10]);
  const c = cached(cache);
  assert.equal(c.rows, expected(all.slice(0, 20)), 'seq 1..10 kept from the pruned segments');
  assert.equal([c.facts, c.last], [20, 20]);
});

test('a history that links nowhere to what was cached (only later segments of another history left): read again whole', () => {
  const { lockspace, cache } = setup('unlinked');
  publish(lockspace, history(10), [10], '2026-01-01T00:00:00.000Z');
  assert.is(cache.catchUp().newFacts, 10);
  moveAside(lockspace);
  const other = history(20, 'other', 1);
  const names = publish(lockspace, other, [5, 5, 10], '2026-01-02T00:00:00.000Z');
  for (const n of names.slice(0, 2)) fs.rmSync(path.join(hostSegmentDir(lockspace, H), n));
  const r = cache.catchUp();
  assert.equal(r.problems, []);
  assert.equal(r.resets.map((x) => x.seq), [1]);
  const c = cached(cache);
  assert.equal(c.rows, expected(other.slice(10)), 'none of the old history mixed in');
  assert.equal([c.facts, c.last], [10, 20]);
});

test('audit --cluster says so: a warning naming host, journal, segment and seq, and answers from the history published now', () => {
  const dir = tmpdir('vmlockd-cc-replaced-cli-');
  const lockspace = path.join(dir, 'lockspace');
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const env = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const q = () => cli(['audit', '--cluster', '--lockspace', lockspace, '--cache', path.join(dir, 'cache'), '--vm', 'web1', '--limit', '100', '--json'], { env });
  publish(lockspace, history(10), [10], '2026-01-01T00:00:00.000Z');
  const before = q();
  assert.is(before.code, 0, before.stderr);
  assert.not.match(before.stderr, /warning/);
  moveAside(lockspace);
  publish(lockspace, history(7, 'restored', 6), [7], '2026-01-02T00:00:00.000Z');
  const after = q();
  assert.is(after.code, 0, after.stderr);
  assert.match(after.stderr, new RegExp(`warning: host ${H}: journal ${J}: segment ${segmentFileName(J, 1)}: seq 6 published now differs`));
  const facts = JSON.parse(after.stdout) as Array<{ seq: number; payload: { v: string } }>;
  assert.equal(facts.map((f) => `${f.seq}${f.payload.v}`), ['1', '2', '3', '4', '5', '6restored', '7restored'], 'the history published now, none of the replaced one');
});

test.run();
