// A published segment cut shorter in place (facts 8..10 gone, the same inode: a restore of the
// lockspace from an older snapshot, a tool that rewrote it) after the read cache read 1..10. The
// cache must not go on answering with 8..10 as published truth: audit --cluster answers from 1..7 and
// warns, on every question while it lasts, naming host, journal, segment and the seq range that was
// read before and is gone; journal verify --cluster names it too (from what this machine's cache read:
// the segments alone cannot show what they no longer hold). Regrown with the same facts, the warning
// ends; regrown with other facts, the new ones are the answer (review 15b).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, encodeSeal, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { cli, tmpdir } from '../helpers/daemon.js';

const J = 'c0ffee00c0ffee00';
const H = 'hv-a';
const SEG = segmentFileName(J, 1);

function history(n: number, variant = '', from = Infinity): Array<{ row: ChainRow; hash: Buffer }> {
  const out: Array<{ row: ChainRow; hash: Buffer }> = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const v = seq >= from ? variant : '';
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), host: H, kind: 'OwnerSeen', resource: null, disk: null, owner: '11111111-1111-4111-8111-111111111111', owner_name: v ? `w${v}` : 'web1', payload: JSON.stringify({ n: seq }) };
    prev = chainHash(prev, row);
    out.push({ row, hash: prev });
  }
  return out;
}

/** Rewrites the one segment in place (the same inode, truncated and written again). */
function write(ls: string, facts: ReturnType<typeof history>): void {
  const dir = hostSegmentDir(ls, H);
  fs.mkdirSync(dir, { recursive: true });
  let text = encodeHeader({ host: H, journal: J, first: 1, prev: GENESIS_HASH, created: '2026-01-01T00:00:00.000Z' });
  for (const f of facts) text += encodeFact(f.row, f.hash);
  fs.writeFileSync(path.join(dir, SEG), text);
}

function setup(prefix: string) {
  const root = tmpdir(prefix);
  const ls = path.join(root, 'lockspace');
  const cache = path.join(root, 'cache');
  const state = path.join(root, 'state');
  fs.mkdirSync(state);
  write(ls, history(10));
  const env = { VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(root, 'none.sock') };
  const audit = () => {
    const r = cli(['audit', '--cluster', '--lockspace', ls, '--cache', cache, '--json', '--limit', '0'], { env });
    assert.is(r.code, 0, r.stderr);
    return { facts: JSON.parse(r.stdout) as Array<{ seq: number; ownerName?: string }>, stderr: r.stderr };
  };
  const verify = () => cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--cache', cache, '--state-dir', state, '--json'], { env });
  return { ls, audit, verify };
}

const gone = /warning: host hv-a: journal c0ffee00c0ffee00: segment c0ffee00c0ffee00-0*1\.seg: seq 8 to 10 \(.*\) were read from it before and are no longer published/;

test('cut shorter in place to 7 facts: audit --cluster answers 1..7 and says 8..10 were seen and are gone, every time; verify names it', () => {
  const { ls, audit, verify } = setup('vmlockd-cluster-trunc-');
  assert.is(audit().facts.length, 10);
  assert.ok(verify().code === 0, 'a whole history verifies');
  write(ls, history(7));
  const a = audit();
  assert.equal(a.facts.map((f) => f.seq), [1, 2, 3, 4, 5, 6, 7], 'the vanished facts are not presented as published');
  assert.match(a.stderr, gone);
  const b = audit();
  assert.is(b.facts.length, 7);
  assert.match(b.stderr, gone, 'the next question still says it (the cache remembers what vanished)');
  const v = verify();
  assert.is(v.code, 1, `verify fails: ${v.stdout}`);
  const chain = (JSON.parse(v.stdout) as { chains: Array<{ host: string; problems: Array<{ segment: string; seq?: number; reason: string }> }> }).chains.find((c) => c.host === H)!;
  assert.ok(chain.problems.some((p) => p.segment === SEG && p.seq === 8 && /seq 8 to 10 .*no longer published/.test(p.reason)), JSON.stringify(chain.problems));
  // The same facts published again: nothing is gone any more.
  write(ls, history(10));
  const c = audit();
  assert.is(c.facts.length, 10);
  assert.is(c.stderr, '');
  assert.is(verify().code, 0);
});

test('cut to 7 and regrown with other 8..9: audit --cluster shows the new 8..9, not the cached 8..10', () => {
  const { ls, audit } = setup('vmlockd-cluster-regrow-');
  assert.is(audit().facts.length, 10);
  write(ls, history(9, 'new', 8));
  const a = audit();
  assert.equal(a.facts.map((f) => `${f.seq}:${f.ownerName}`).slice(-3), ['7:web1', '8:wnew', '9:wnew']);
  assert.is(a.facts.length, 9);
  assert.match(a.stderr, /seq 8/);
});

test('cut to 7 (seen), then regrown with other 8..9: the new facts are the answer and the vanished 10 is still named', () => {
  const { ls, audit } = setup('vmlockd-cluster-trunc-regrow-');
  assert.is(audit().facts.length, 10);
  write(ls, history(7));
  assert.match(audit().stderr, gone);
  write(ls, history(9, 'new', 8));
  const a = audit();
  assert.equal(a.facts.map((f) => `${f.seq}:${f.ownerName}`).slice(-3), ['7:web1', '8:wnew', '9:wnew']);
  assert.match(a.stderr, /seq 10 \(.*\) were read from it before and are no longer published/);
});

test('the newest segment removed after the cache read it (the one before it sealed): its facts are named as gone, not answered', () => {
  const { ls, audit, verify } = setup('vmlockd-cluster-removed-');
  const all = history(8);
  const dir = hostSegmentDir(ls, H);
  let one = encodeHeader({ host: H, journal: J, first: 1, prev: GENESIS_HASH, created: '2026-01-01T00:00:00.000Z' });
  for (const f of all.slice(0, 5)) one += encodeFact(f.row, f.hash);
  one += encodeSeal({ last: 5, hash: all[4]!.hash, count: 5 });
  let two = encodeHeader({ host: H, journal: J, first: 6, prev: all[4]!.hash, created: '2026-01-01T00:00:00.000Z' });
  for (const f of all.slice(5)) two += encodeFact(f.row, f.hash);
  const second = segmentFileName(J, 6);
  fs.writeFileSync(path.join(dir, SEG), one);
  fs.writeFileSync(path.join(dir, second), two);
  assert.is(audit().facts.length, 8);
  fs.rmSync(path.join(dir, second));
  const a = audit();
  assert.equal(a.facts.map((f) => f.seq), [1, 2, 3, 4, 5]);
  assert.match(a.stderr, new RegExp(`segment ${second.replace('.', '\\.')}: seq 6 to 8 \\(.*\\) were read from it before and are no longer published`));
  const v = verify();
  assert.is(v.code, 1, v.stdout);
  assert.match(v.stdout, /"seq": 6,\s+"reason": "seq 6 to 8 /);
});

test.run();
