// An owner name with a lone UTF-16 surrogate (review 24c F3): the payload elision (decision 0014)
// rebuilt the payload from the SQLite owner_name column, which stores UTF-8 and reads the surrogate
// back as U+FFFD, so the cache answered another payload than the segment published. Such a payload is
// now kept whole. (The owner_name column itself cannot hold a lone surrogate in any SQLite file: the
// payload is the fact as published.) Real CLI (dist/main.js), synthetic segments.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { MAIN, tmpdir } from '../helpers/daemon.js';

test('a lone surrogate in an owner name: the payload comes back from the cache as published', () => {
  const root = tmpdir('vmlockd-surrogate-');
  const ls = path.join(root, 'ls');
  const w = segmentWriter(ls, 'hv-a', 'feedfacecafebeef', { segmentBytes: 4096 });
  let prev = GENESIS_HASH;
  const uuid = '11111111-1111-4111-8111-000000000001';
  const name = '\ud800x';
  for (let seq = 1; seq <= 6; seq++) {
    const r: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), host: 'hv-a', kind: 'LockAcquired', resource: '/ls/1', disk: '/img/d1.qcow2', owner: uuid, owner_name: name, payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', source: 'virsh', generation: seq }) };
    prev = chainHash(prev, r);
    w.add(r, prev);
  }
  w.flush();
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const r = spawnSync(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', ls, '--cache', path.join(root, 'cache'), '--vm', uuid, '--json'], { encoding: 'utf8', env: { ...process.env, HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
  assert.is(r.status, 0, r.stderr);
  const facts = JSON.parse(r.stdout) as Array<{ seq: number; payload: { owner: { name: string }; generation: number } }>;
  assert.is(facts.length, 6);
  for (const f of facts) {
    assert.is(f.payload.owner.name, name, `seq ${f.seq}: published "\\ud800x", answered ${JSON.stringify(f.payload.owner.name)}`);
    assert.is(f.payload.generation, f.seq);
  }
});

test.run();
