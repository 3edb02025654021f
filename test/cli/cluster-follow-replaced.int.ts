// `audit --cluster --follow` while a host's history is published again with other facts from seq 6
// on (its directory moved aside and a journal restored from an older copy published, same journal
// id): the follower printed the old 6..10 already. It must say on stderr that what it printed from
// seq 6 on is no longer the published history, and print the history published now from there
// (6..12), never only 11..12 as if 6..10 had not changed (review 15b).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { MAIN, tmpdir, until } from '../helpers/daemon.js';

const J = 'c0ffee00c0ffee00';
const H = 'hv-a';

/** `n` facts; from seq `from` on tagged `variant` (another history after that point). */
function history(n: number, variant = '', from = Infinity): Array<{ row: ChainRow; hash: Buffer }> {
  const out: Array<{ row: ChainRow; hash: Buffer }> = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const v = seq >= from ? variant : '';
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), host: H, kind: 'OwnerSeen', resource: null, disk: null, owner: '11111111-1111-4111-8111-111111111111', owner_name: v ? `web1-${v}` : 'web1', payload: JSON.stringify({ n: seq, v }) };
    prev = chainHash(prev, row);
    out.push({ row, hash: prev });
  }
  return out;
}

/** One segment holding the history, created whole (tmp + rename, as the publisher does). */
function publishOne(lockspace: string, facts: Array<{ row: ChainRow; hash: Buffer }>): void {
  const dir = hostSegmentDir(lockspace, H);
  fs.mkdirSync(dir, { recursive: true });
  let text = encodeHeader({ host: H, journal: J, first: 1, prev: GENESIS_HASH, created: '2026-01-01T00:00:00.000Z' });
  for (const f of facts) text += encodeFact(f.row, f.hash);
  fs.writeFileSync(path.join(dir, `.${segmentFileName(J, 1)}.tmp`), text);
  fs.renameSync(path.join(dir, `.${segmentFileName(J, 1)}.tmp`), path.join(dir, segmentFileName(J, 1)));
}

test('--follow across a history published again: a warning naming host, journal and seq, then the new facts 6..12', async () => {
  const root = tmpdir('vmlockd-cluster-follow-replaced-');
  const ls = path.join(root, 'lockspace');
  publishOne(ls, history(10));
  const child = spawn(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', ls, '--cache', path.join(root, 'cache'), '--follow', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const lines = () => out.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { seq: number; ownerName?: string });
  try {
    await until('the backlog of 10', () => lines().length >= 10, 30_000);
    assert.is(err, '', 'nothing to warn about yet');
    fs.renameSync(hostSegmentDir(ls, H), path.join(ls, 'moved-aside'));
    publishOne(ls, history(12, 'restored', 6));
    await until(`seq 12 followed (${out}${err})`, () => lines().some((l) => l.seq === 12), 30_000);
    const after = lines().slice(10);
    assert.equal(after.map((l) => l.seq), [6, 7, 8, 9, 10, 11, 12], 'the history published now, from its first differing fact');
    assert.ok(after.every((l) => l.ownerName === 'web1-restored'), 'the new facts, not the old ones again');
    assert.match(err, /warning: host hv-a: journal c0ffee00c0ffee00: .*seq 6\b/);
    assert.match(err, /printed .*seq 6 to 10/, `the warning says which printed facts are no longer the history: ${err}`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
});

test('--follow across a segment cut shorter in place (8..10 gone): a warning naming the printed facts that are gone, then what is published there later', async () => {
  const root = tmpdir('vmlockd-cluster-follow-cut-');
  const ls = path.join(root, 'lockspace');
  const file = path.join(hostSegmentDir(ls, H), segmentFileName(J, 1));
  const rewrite = (facts: Array<{ row: ChainRow; hash: Buffer }>) => {
    let text = encodeHeader({ host: H, journal: J, first: 1, prev: GENESIS_HASH, created: '2026-01-01T00:00:00.000Z' });
    for (const f of facts) text += encodeFact(f.row, f.hash);
    fs.writeFileSync(file, text); // in place: the same inode
  };
  publishOne(ls, history(10));
  const child = spawn(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', ls, '--cache', path.join(root, 'cache'), '--follow', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const lines = () => out.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { seq: number; ownerName?: string });
  try {
    await until('the backlog of 10', () => lines().length >= 10, 30_000);
    rewrite(history(7));
    await until(`the cut said (${err})`, () => /seq 8 to 10 .* no longer published/.test(err), 30_000);
    assert.match(err, /host hv-a: journal c0ffee00c0ffee00: segment c0ffee00c0ffee00-0*1\.seg: seq 8 to 10 .*the facts printed before as seq 8 to 10 are among them/);
    rewrite(history(9, 'later', 8));
    await until(`the new 8..9 followed (${out}${err})`, () => lines().length >= 12, 30_000);
    assert.equal(lines().slice(10).map((l) => `${l.seq}:${l.ownerName}`), ['8:web1-later', '9:web1-later']);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
});

test.run();
