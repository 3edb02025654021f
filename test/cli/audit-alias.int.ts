// `vmlockd audit --disk PATH` (and `audit --cluster --disk`) on a hard link of a journaled disk
// answer for that disk, as `vmlockd who` does, saying which name they matched (review25a F7: they
// answered "unknown disk" while who named the holder "(as YOUR-PATH)"). Real daemon, real files;
// the cluster case reads published segments written by the test's segment writer.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diskIdentity } from '../../src/engine/resolve.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { MAIN, TestDaemon, UUID1, cli, tmpdir } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
  d = undefined;
});

test('audit --disk on a hard link of a held disk names its holder, as who does, and says which name it matched', async () => {
  const dir = tmpdir();
  const ls = path.join(dir, 'ls');
  const a = path.join(dir, 'a.img');
  const link = path.join(dir, 'hard.img');
  fs.writeFileSync(a, 'image');
  fs.linkSync(a, link);
  const state = path.join(dir, 'state');
  d = await new TestDaemon({ stateDir: state, lockspace: ls, hostId: 'hv-a' }).start();
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', a]).code, 0);
  settled(state);
  const who = cli(['who', link, '--lockspace', ls]);
  assert.match(who.stdout, 'vm1', 'who finds the holder through the link');
  const at = new Date(Date.now() + 1000).toISOString();
  const audit = cli(['audit', '--disk', link, '--at', at, '--state-dir', state]);
  assert.ok(audit.code === 0 && audit.stdout.includes('vm1'), `audit --disk ${link} --at ${at}: exit ${audit.code}: ${audit.stdout}${audit.stderr}(who: ${who.stdout.split('\n')[0]})`);
  assert.match(audit.stderr, `same file`, audit.stderr);
  assert.match(audit.stderr, a, audit.stderr);
  // The history too.
  const history = cli(['audit', '--disk', link, '--state-dir', state, '--json']);
  assert.is(history.code, 0, history.stderr);
  assert.ok((JSON.parse(history.stdout) as Array<{ kind: string }>).some((f) => f.kind === 'LockAcquired'), history.stdout);
  // A file that is no journaled disk is still unknown.
  const other = path.join(dir, 'other.img');
  fs.writeFileSync(other, 'x');
  const unknown = cli(['audit', '--disk', other, '--state-dir', state]);
  assert.is.not(unknown.code, 0);
  assert.match(unknown.stderr, 'unknown disk');
});

test('audit --cluster --disk on a hard link of a published disk answers for that disk', () => {
  const root = tmpdir('vmlockd-alias-cluster-');
  const ls = path.join(root, 'ls');
  const a = path.join(root, 'a.img');
  const link = path.join(root, 'hard.img');
  fs.writeFileSync(a, 'image');
  fs.linkSync(a, link);
  const w = segmentWriter(ls, 'hv-a', 'feedfacecafebeef', { segmentBytes: 4096 });
  const uuid = UUID1;
  const r: ChainRow = {
    seq: 1, at: new Date(Date.now() - 60_000).toISOString(), host: 'hv-a', kind: 'LockAcquired', resource: path.join(ls, 'x'), disk: a, owner: uuid, owner_name: 'vm1',
    payload: JSON.stringify({ owner: { uuid, name: 'vm1' }, resource: path.join(ls, 'x'), name: 'x', lockspace: ls, kind: 'file', disk: a, path: a, inode: diskIdentity(a), mode: 'exclusive', source: 'api', generation: 1 }),
  };
  w.add(r, chainHash(GENESIS_HASH, r));
  w.flush();
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const run = (args: string[]) =>
    spawnSync(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', ls, '--cache', path.join(root, 'cache'), ...args], { encoding: 'utf8', env: { ...process.env, HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
  const at = run(['--disk', link, '--at', r.at]);
  assert.ok(at.status === 0 && at.stdout.includes('vm1'), `audit --cluster --disk ${link}: exit ${at.status}: ${at.stdout}${at.stderr}`);
  assert.match(at.stderr, 'same file', at.stderr);
  // Asked again, from the warm cache (elided payloads).
  const again = run(['--disk', link, '--json']);
  assert.is(again.status, 0, again.stderr);
  assert.is((JSON.parse(again.stdout) as unknown[]).length, 1, again.stdout);
});

test.run();
