// A host's newest, open segment removed (review 24c F2): with no successor statement covering the
// seal of the segment before it (a writer that opens the next segment with its next fact), removal
// cannot be told from a rotation waiting for that fact. `journal verify --cluster` says so in a note;
// a fresh cache answered "no overlaps" and said nothing. Now every audit --cluster question gives
// the same note on stderr (the answer itself unchanged).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { MAIN, tmpdir } from '../helpers/daemon.js';

function ask(ls: string, cache: string, args: string[]) {
  const home = path.join(path.dirname(cache), 'home');
  fs.mkdirSync(home, { recursive: true });
  return spawnSync(process.execPath, [MAIN, ...args, '--lockspace', ls, '--cache', cache], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
}

test('newest open segment removed, no successor statement: a fresh --overlaps gives verify\'s note, on every question', () => {
  const root = tmpdir('vmlockd-newest-open-');
  const ls = path.join(root, 'ls');
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  for (const [host, j, t0, uuid] of [['hv-a', 'aaaaaaaaaaaaaaaa', 41, '11111111-1111-4111-8111-00000000000a'], ['hv-b', 'bbbbbbbbbbbbbbbb', 45, '11111111-1111-4111-8111-00000000000b']] as const) {
    const w = segmentWriter(ls, host, j, { segmentBytes: 2048 });
    let prev = GENESIS_HASH;
    const name = `vm-${host}`;
    const rows: ChainRow[] = [];
    for (let i = 0; i < 30; i++) rows.push({ seq: rows.length + 1, at: at(t0 - 40 + i), host, kind: 'OwnerSeen', resource: null, disk: null, owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name } }) });
    rows.push({ seq: rows.length + 1, at: at(t0), host, kind: 'LockAcquired', resource: '/ls/x', disk: '/img/x.qcow2', owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', source: 'virsh', generation: 1 }) });
    rows.push({ seq: rows.length + 1, at: at(100), host, kind: 'LockReleased', resource: '/ls/x', disk: '/img/x.qcow2', owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name }, source: 'virsh' }) });
    for (const r of rows) {
      prev = chainHash(prev, r);
      w.add(r, prev);
    }
    w.flush();
  }
  const before = ask(ls, path.join(root, 'warm'), ['audit', '--cluster', '--overlaps']);
  assert.match(before.stdout, /1 overlap/);
  assert.is(before.stderr, '', 'nothing to say while the newest segment is there');
  const dir = path.join(ls, '.journal', 'hv-a');
  const segs = fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();
  const newest = segs[segs.length - 1]!;
  fs.rmSync(path.join(dir, newest));
  const note = new RegExp(`note: host hv-a: journal aaaaaaaaaaaaaaaa: ${segs[segs.length - 2]!.replace('.', '\\.')} is sealed at seq \\d+ and no segment follows it \\(${newest.replace('.', '\\.')} missing\\)`);
  for (const cache of ['fresh', 'fresh', 'warm']) {
    const r = ask(ls, path.join(root, cache), ['audit', '--cluster', '--overlaps']);
    assert.match(r.stderr, note, `${cache}: ${r.stdout} | ${r.stderr}`);
    assert.not.match(r.stderr, /host hv-b/);
  }
  const v = spawnSync(process.execPath, [MAIN, 'journal', 'verify', '--cluster', '--lockspace', ls, '--journal', '/nonexistent/journal.db'], { encoding: 'utf8', env: { ...process.env, VMLOCKD_CONFIG: '/nonexistent' } });
  assert.match(v.stdout, /note: .* is sealed at seq \d+ and no segment follows it/);
});

test.run();
