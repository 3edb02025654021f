// review26b F5: files planted in the shared lockspace must not fill the asking host's state
// directory. Every chain (host, journal id) the cluster cache read became its own SQLite file (~330 KB
// with shm and pos, even for a 184-byte header-only segment), in <state_dir>/cluster-cache by default,
// beside the daemon's journal; nothing bounded their number. Now: no file for a chain without facts,
// at most MAX_CHAINS_PER_HOST chains per host directory (and MAX_CHAINS_TOTAL in all), the rest named
// in a warning; and nothing is cached while the cache's filesystem is under its free-space floor.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, startDaemon, tmpdir } from '../helpers/daemon.js';
import { segmentWriter } from '../helpers/segments.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { MAX_CHAINS_PER_HOST } from '../../src/cli/cluster-cache-bounds.js';

const SEGMENTS = 500;
const DISK = '/srv/shared/bounds.img';

function env(dir: string): Record<string, string> {
  const home = path.join(dir, 'home');
  fs.mkdirSync(home, { recursive: true });
  return { HOME: home, VMLOCKD_CONFIG: '/nonexistent' };
}

function dbFiles(dir: string): string[] {
  try {
    return fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.db'));
  } catch {
    return [];
  }
}

/** One journal of one host with a single fact (a valid chain anyone with write access can make). */
function oneFactChain(ls: string, host: string, journal: string, i: number): void {
  const w = segmentWriter(ls, host, journal, { segmentBytes: 4096 });
  const vm = { uuid: '44444444-4444-4444-8444-444444444444', name: 'vm-bounds' };
  const r: ChainRow = { seq: 1, at: new Date(Date.UTC(2026, 0, 1, 0, 0, i % 60)).toISOString(), host, kind: 'LockAcquired', resource: '/ls/bounds', disk: DISK, owner: vm.uuid, owner_name: vm.name, payload: JSON.stringify({ owner: vm, mode: 'exclusive' }) };
  w.add(r, chainHash(GENESIS_HASH, r));
  w.flush();
}

test(`${SEGMENTS} header-only segments of distinct journal ids: the cluster cache in the state directory stays small`, async () => {
  const dir = tmpdir('vmlockd-cache-bounds-');
  const ls = path.join(dir, 'ls');
  const stateDir = path.join(dir, 'state');
  const d = await startDaemon({ stateDir, lockspace: ls, hostId: 'ha' });
  try {
    const hx = path.join(ls, '.journal', 'hx');
    fs.mkdirSync(hx, { recursive: true });
    for (let i = 0; i < SEGMENTS; i++) {
      const j = i.toString(16).padStart(16, '0');
      const text = JSON.stringify({ t: 'segment', v: 1, host: 'hx', journal: j, first: 1, prev: '0'.repeat(64), created: '2026-12-01T00:00:00.000Z' }) + '\n';
      fs.writeFileSync(path.join(hx, `${j}-0000000000000001.seg`), text);
    }
    // --state-dir as the packaged config's state_dir = /var/lib/vmlockd gives it.
    const r = cli(['audit', '--cluster', '--overlaps', '--lockspace', ls, '--state-dir', stateDir], { env: env(dir) });
    const cache = path.join(stateDir, 'cluster-cache');
    const kb = fs.existsSync(cache) ? Number(execFileSync('du', ['-sk', cache], { encoding: 'utf8' }).split('\t')[0]) : 0;
    const hxFiles = dbFiles(cache).filter((f) => f.includes(`${path.sep}hx${path.sep}`) || f.startsWith(`hx${path.sep}`));
    assert.is(hxFiles.length, 0, `no cache file for a chain without facts: ${hxFiles.slice(0, 3).join(', ')}`);
    assert.ok(kb < 20 * 1024, `planted header-only segments made ${kb} KiB of cache in the daemon's state directory (exit ${r.code}: ${r.stderr.slice(0, 300)})`);
  } finally {
    await d.kill('SIGKILL');
  }
});

test(`more than ${MAX_CHAINS_PER_HOST} journals with facts in one host directory: the rest are named, not cached`, () => {
  const dir = tmpdir('vmlockd-cache-bounds-');
  const ls = path.join(dir, 'ls');
  const extra = 3;
  for (let i = 0; i < MAX_CHAINS_PER_HOST + extra; i++) oneFactChain(ls, 'hx', (0x1000 + i).toString(16).padStart(16, '0'), i);
  oneFactChain(ls, 'hy', 'aaaaaaaaaaaaaaaa', 0);
  const cache = path.join(dir, 'cache');
  const r = cli(['audit', '--cluster', '--lockspace', ls, '--cache', cache, '--disk', DISK], { env: env(dir) });
  const files = dbFiles(cache);
  assert.is(files.filter((f) => f.includes(`hx${path.sep}`)).length, MAX_CHAINS_PER_HOST, files.join(' '));
  assert.is(files.filter((f) => f.includes(`hy${path.sep}`)).length, 1, 'another host is still read');
  assert.match(r.stderr, new RegExp(`host hx: .*${extra} journal\\(s\\) not read into the cluster cache, past its bound of ${MAX_CHAINS_PER_HOST} per host directory`), r.stderr);
  assert.match(r.stderr, new RegExp((0x1000 + MAX_CHAINS_PER_HOST).toString(16).padStart(16, '0')), 'the first one left out is named');
});

test('a cache filesystem under its free-space floor: nothing new is cached, and the error says why', () => {
  const dir = tmpdir('vmlockd-cache-bounds-');
  const ls = path.join(dir, 'ls');
  oneFactChain(ls, 'hx', 'bbbbbbbbbbbbbbbb', 0);
  const mnt = path.join(dir, 'small');
  fs.mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt], { encoding: 'utf8' });
  assert.is(m.status, 0, `mount a real 16 MiB tmpfs: ${m.stderr}`);
  try {
    // 16 MiB: the floor is 1.6 MiB; leave less than that free.
    const s = fs.statfsSync(mnt);
    fs.writeFileSync(path.join(mnt, 'fill'), Buffer.alloc(s.bavail * s.bsize - 1024 * 1024));
    const cache = path.join(mnt, 'cache');
    const r = cli(['audit', '--cluster', '--lockspace', ls, '--cache', cache, '--disk', DISK], { env: env(dir) });
    assert.match(r.stderr, /the cluster cache .* MiB free on its filesystem, under its floor of 1 MiB/, r.stderr);
    assert.is(dbFiles(cache).length, 0, 'no chain file written under the floor');
    // Room again: the chain is read.
    fs.rmSync(path.join(mnt, 'fill'));
    const r2 = cli(['audit', '--cluster', '--lockspace', ls, '--cache', cache, '--disk', DISK], { env: env(dir) });
    assert.not.match(r2.stderr, /under its floor/);
    assert.is(dbFiles(cache).length, 1, r2.stderr);
    assert.match(r2.stdout, /vm-bounds/, r2.stdout);
  } finally {
    spawnSync('umount', [mnt]);
  }
});

test.run();
