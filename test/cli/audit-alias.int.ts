// `vmlockd audit --disk PATH` (and `audit --cluster --disk`) on a hard link of a journaled disk
// answer for that disk, as `vmlockd who` does, saying which name they matched (review25a F7: they
// answered "unknown disk" while who named the holder "(as YOUR-PATH)"). And when facts name both the
// path and another name of the same file, the answer covers both (review27 F2: `audit --disk A --at T`
// said nobody held A while VM2 held it through its hard link B). Real daemon, real files; the
// cluster cases read published segments written by the test's segment writer.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diskIdentity } from '../../src/engine/resolve.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { MAIN, TestDaemon, UUID1, UUID2, cli, tmpdir } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

function get(socket: string, target: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: socket, path: target }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      })
      .on('error', reject);
  });
}

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

test('audit --disk A --at T names the VM that held A through its hard link B at T, and B\'s history has A\'s', async () => {
  const dir = tmpdir();
  const ls = path.join(dir, 'ls');
  const a = path.join(dir, 'a.img');
  const b = path.join(dir, 'b.img');
  const c = path.join(dir, 'c.img');
  fs.writeFileSync(a, 'image');
  fs.linkSync(a, b);
  fs.linkSync(a, c);
  const state = path.join(dir, 'state');
  d = await new TestDaemon({ stateDir: state, lockspace: ls, hostId: 'hv-a' }).start();
  // vm1 used the disk by A earlier; vm2 holds it now by B.
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', a]).code, 0);
  assert.is(d.cli(['release', '--vm', UUID1]).code, 0);
  const r = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', b]);
  assert.is(r.code, 0, r.stderr);
  settled(state);
  const who = cli(['who', a, '--lockspace', ls]);
  assert.match(who.stdout, 'vm2', 'who A names vm2 (as A)');
  const at = new Date(Date.now() + 1000).toISOString();
  const audit = cli(['audit', '--disk', a, '--at', at, '--state-dir', state]);
  assert.ok(audit.code === 0 && audit.stdout.includes('vm2'), `audit --disk ${a} --at ${at} (who: ${who.stdout.split('\n')[0]}): exit ${audit.code}: ${audit.stdout}${audit.stderr}`);
  assert.match(audit.stderr, b, audit.stderr);
  const hist = cli(['audit', '--disk', b, '--state-dir', state, '--json']);
  assert.is(hist.code, 0, hist.stderr);
  assert.ok(hist.stdout.includes(UUID1), `audit --disk ${b} leaves out vm1's facts on the same file: ${hist.stdout}`);
  // The daemon's API too.
  const api = await get(d.socket, `/v1/audit?disk=${encodeURIComponent(b)}`);
  assert.is(api.status, 200, JSON.stringify(api.body));
  assert.ok(JSON.stringify(api.body).includes(UUID1), `GET /v1/audit?disk=${b} leaves out vm1's facts on the same file: ${JSON.stringify(api.body)}`);
  // A third name no fact uses answers for both journaled names (it was refused as "several").
  const third = cli(['audit', '--disk', c, '--state-dir', state, '--json']);
  assert.is(third.code, 0, third.stderr);
  assert.ok(third.stdout.includes(UUID1) && third.stdout.includes(UUID2), third.stdout);
});

test('audit --cluster --disk A --at T names the VM that held its hard link B at T', () => {
  const root = tmpdir('vmlockd-alias-cluster-');
  const ls = path.join(root, 'ls');
  const a = path.join(root, 'a.img');
  const b = path.join(root, 'b.img');
  fs.writeFileSync(a, 'image');
  fs.linkSync(a, b);
  const w = segmentWriter(ls, 'hv-a', 'feedfacecafebeef', { segmentBytes: 4096 });
  const t0 = Date.now() - 60_000;
  const row = (seq: number, at: number, kind: string, disk: string, uuid: string, name: string, extra: object): ChainRow => ({
    seq, at: new Date(at).toISOString(), host: 'hv-a', kind, resource: path.join(ls, name), disk, owner: uuid, owner_name: name,
    payload: JSON.stringify({ owner: { uuid, name }, resource: path.join(ls, name), name, lockspace: ls, kind: 'file', disk, path: disk, inode: diskIdentity(disk), mode: 'exclusive', ...extra }),
  });
  let prev = GENESIS_HASH;
  for (const r of [
    row(1, t0, 'LockAcquired', a, UUID1, 'vm1', { source: 'api', generation: 1 }),
    row(2, t0 + 1000, 'LockReleased', a, UUID1, 'vm1', { source: 'api' }),
    row(3, t0 + 2000, 'LockAcquired', b, UUID2, 'vm2', { source: 'api', generation: 1 }),
  ]) {
    prev = chainHash(prev, r);
    w.add(r, prev);
  }
  w.flush();
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const run = (args: string[]) =>
    spawnSync(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', ls, '--cache', path.join(root, 'cache'), ...args], { encoding: 'utf8', env: { ...process.env, HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
  const at = run(['--disk', a, '--at', new Date(t0 + 2000).toISOString()]);
  assert.ok(at.status === 0 && at.stdout.includes('vm2'), `audit --cluster --disk ${a} --at: exit ${at.status}: ${at.stdout}${at.stderr}`);
  const hist = run(['--disk', b, '--json']);
  assert.is(hist.status, 0, hist.stderr);
  assert.ok(hist.stdout.includes(UUID1), hist.stdout);
});

test.run();
