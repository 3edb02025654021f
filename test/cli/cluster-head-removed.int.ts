// A host's oldest segment(s) removed by hand, with no pruned-through marker (review 24c F1): a fresh
// cache answered as if those facts never happened ("no overlaps", "unknown disk", "nobody held") and a
// warm one answered them, neither warning, while `journal verify --cluster` names a missing head.
// Every audit --cluster question now warns, naming the host and the seq range, in both caches; a
// marker covering the range (retention) keeps them quiet. Synthetic segments written with the one
// encoder (test/helpers/segments.ts), and a real daemon's, read by the real CLI (dist/main.js).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodePruned, prunedFileName } from '../../src/journal/segment-pruned.js';
import { segmentWriter } from '../helpers/segments.js';
import { MAIN, tmpdir } from '../helpers/daemon.js';
import { publishedRotating } from '../helpers/published.js';

const J = 'feedfacecafebeef';
const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

function publish(ls: string, n: number): Array<{ row: ChainRow; hash: Buffer }> {
  const w = segmentWriter(ls, 'hv-a', J, { segmentBytes: 4096 });
  let prev = GENESIS_HASH;
  const out: Array<{ row: ChainRow; hash: Buffer }> = [];
  for (let seq = 1; seq <= n; seq++) {
    const uuid = `11111111-1111-4111-8111-00000000000${seq % 3}`;
    const name = ['web1', 'web2', 'web3'][seq % 3]!;
    const disk = `/img/d${seq % 2}.qcow2`;
    const r: ChainRow = seq % 2
      ? { seq, at: at(seq), host: 'hv-a', kind: 'LockAcquired', resource: `/ls/${seq % 2}`, disk, owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', source: 'virsh', generation: seq }) }
      : { seq, at: at(seq), host: 'hv-a', kind: 'LockReleased', resource: `/ls/${seq % 2}`, disk, owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name }, source: 'virsh' }) };
    prev = chainHash(prev, r);
    w.add(r, prev);
    out.push({ row: r, hash: prev });
  }
  w.flush();
  return out;
}

function ask(ls: string, cache: string, args: string[]) {
  const home = path.join(path.dirname(cache), 'home');
  fs.mkdirSync(home, { recursive: true });
  return spawnSync(process.execPath, [MAIN, ...args, '--lockspace', ls, '--cache', cache], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
}

const headWarning = /warning: host hv-a: journal [0-9a-f]{16}: missing head: seq 1 to \d+ are in no segment/;

test('oldest segment removed without a marker: warm and fresh caches both warn, on every question; a marker covering it keeps them quiet', () => {
  const root = tmpdir('vmlockd-head-removed-');
  const ls = path.join(root, 'ls');
  const facts = publish(ls, 50);
  const q = ['audit', '--cluster', '--disk', '/img/d1.qcow2', '--at', '2026-01-01T00:00:08Z'];
  const before = ask(ls, path.join(root, 'warm'), q);
  assert.match(before.stdout, /LockAcquired #7/);
  assert.is(before.stderr, '');
  const dir = path.join(ls, '.journal', 'hv-a');
  const segs = fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
  fs.rmSync(path.join(dir, segs[0]!));
  const second = Number(segs[1]!.slice(17, 33));
  for (const cache of ['warm', 'fresh', 'fresh', 'warm']) {
    const r = ask(ls, path.join(root, cache), q);
    assert.match(r.stderr, new RegExp(`missing head: seq 1 to ${second - 1} are in no segment and no pruned-through marker`), `${cache}: ${r.stdout} | ${r.stderr}`);
    assert.match(r.stderr, headWarning);
  }
  for (const other of [['--overlaps'], ['--vm', 'web1'], ['--disk', '/img/d0.qcow2', '--timeline']]) {
    assert.match(ask(ls, path.join(root, 'fresh'), ['audit', '--cluster', ...other]).stderr, headWarning, other.join(' '));
  }
  // Retention's marker through the removed segment's last seq: pruning, not damage.
  const through = facts[second - 2]!;
  fs.writeFileSync(path.join(dir, prunedFileName(J)), encodePruned({ host: 'hv-a', journal: J, through: through.row.seq, hash: through.hash.toString('hex'), at: at(100), removed: 1 }, []));
  for (const cache of ['warm', 'fresh', 'fresh2']) assert.not.match(ask(ls, path.join(root, cache), q).stderr, /missing head/, cache);
});

test('oldest segment of one host removed without a marker: --overlaps from a fresh cache warns instead of a silent "no overlaps"', () => {
  const root = tmpdir('vmlockd-head-overlap-');
  const ls = path.join(root, 'ls');
  for (const [host, j, t0, uuid] of [['hv-a', 'aaaaaaaaaaaaaaaa', 1, '11111111-1111-4111-8111-00000000000a'], ['hv-b', 'bbbbbbbbbbbbbbbb', 5, '11111111-1111-4111-8111-00000000000b']] as const) {
    const w = segmentWriter(ls, host, j, { segmentBytes: 2048 });
    let prev = GENESIS_HASH;
    const name = `vm-${host}`;
    const rows: ChainRow[] = [{ seq: 1, at: at(t0), host, kind: 'LockAcquired', resource: '/ls/x', disk: '/img/x.qcow2', owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', source: 'virsh', generation: 1 }) }];
    for (let i = 0; i < 30; i++) rows.push({ seq: rows.length + 1, at: at(t0 + 1 + i), host, kind: 'OwnerSeen', resource: null, disk: null, owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name } }) });
    rows.push({ seq: rows.length + 1, at: at(100), host, kind: 'LockReleased', resource: '/ls/x', disk: '/img/x.qcow2', owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name }, source: 'virsh' }) });
    for (const r of rows) {
      prev = chainHash(prev, r);
      w.add(r, prev);
    }
    w.flush();
  }
  assert.match(ask(ls, path.join(root, 'warm'), ['audit', '--cluster', '--overlaps']).stdout, /1 overlap/);
  fs.rmSync(path.join(ls, '.journal', 'hv-a', 'aaaaaaaaaaaaaaaa-0000000000000001.seg'));
  const fresh = ask(ls, path.join(root, 'fresh'), ['audit', '--cluster', '--overlaps']);
  assert.match(fresh.stderr, /warning: host hv-a: journal aaaaaaaaaaaaaaaa: missing head: seq 1 to \d+/, `${fresh.stdout} | ${fresh.stderr}`);
  assert.not.match(fresh.stderr, /host hv-b/);
  assert.match(ask(ls, path.join(root, 'warm'), ['audit', '--cluster', '--overlaps']).stderr, /host hv-a: journal aaaaaaaaaaaaaaaa: missing head/);
});

test('real daemon (SIGKILLed): its oldest segment removed by hand: a fresh --disk D warns, and "unknown disk" says the head is missing', async () => {
  const p = await publishedRotating('vmlockd-head-real-');
  const first = p.segs()[0]!;
  const disk = path.join(p.root, 'images', 'd0.img');
  const warm0 = ask(p.lockspace, path.join(p.root, 'warm'), ['audit', '--cluster', '--disk', disk]);
  assert.match(warm0.stdout, /LockAcquired/, `acquired before: ${warm0.stdout} ${warm0.stderr}`);
  fs.rmSync(path.join(p.dir, first));
  const warm = ask(p.lockspace, path.join(p.root, 'warm'), ['audit', '--cluster', '--disk', disk]);
  const fresh = ask(p.lockspace, path.join(p.root, 'fresh'), ['audit', '--cluster', '--disk', disk]);
  assert.match(warm.stderr, /warning: host hv-a: journal [0-9a-f]{16}: missing head: seq 1 to /, warm.stderr);
  assert.match(fresh.stderr, /warning: host hv-a: journal [0-9a-f]{16}: missing head: seq 1 to /, fresh.stderr);
  if (!/LockAcquired/.test(fresh.stdout)) assert.match(fresh.stderr, /unknown disk .* are missing \(warned above\), and may name it/);
});

test.run();
