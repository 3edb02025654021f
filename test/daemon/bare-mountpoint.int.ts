// A lockspace whose filesystem is unmounted for a while (a cluster filesystem's client died and is
// being mounted again): its mount point is a bare local directory. Nothing may be created there (a
// lock file or host file on the local disk protects nothing: no other host sees it), and a lock file
// missing from it is no evidence of a loss. A tmpfs bind-mounted there stands in for the cluster filesystem; the
// GlusterFS suite (test/e2e/gluster.e2e.ts) does the same with a killed FUSE client.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { journalFacts } from '../helpers/cluster-suite.js';
import { UUID1, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';
import { lockedByAnyone } from '../helpers/kernel-locks.js';

const running: TestDaemon[] = [];
const mounts: string[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
  for (const m of mounts.splice(0).reverse()) spawnSync('umount', ['-l', m]);
});

function bind(from: string, to: string): void {
  const r = spawnSync('mount', ['--bind', from, to], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount --bind failed (the suite needs root): ${r.stderr}`);
  mounts.push(to);
}

function unmount(dir: string): void {
  const r = spawnSync('umount', ['-l', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umount -l ${dir} failed: ${r.stderr}`);
  mounts.splice(mounts.indexOf(dir), 1);
}

test('lockspace unmounted for a while: no lock file or host file is created under the bare mount point, no loss and no re-take are journaled, and the lock checks out again once it is back', async () => {
  const root = tmpdir('vmlockd-bare-');
  const real = path.join(root, 'real');
  const mnt = path.join(root, 'mnt');
  fs.mkdirSync(real);
  fs.mkdirSync(mnt);
  // Its own filesystem (as a cluster filesystem is), seen at the mount point through a bind mount
  // that can be taken away and put back.
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', real], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount -t tmpfs failed (the suite needs root): ${r.stderr}`);
  mounts.push(real);
  bind(real, mnt);
  const a = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(mnt, 'ls'), hostId: 'hv-bare', extra: ['--verify-interval', '1'] });
  running.push(a);
  const disk = path.join(root, 'a.img');
  fs.writeFileSync(disk, '');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  const file = JSON.parse(a.cli(['who', disk, '--json']).stdout).file as string;
  assert.ok(file.startsWith(path.join(mnt, 'ls')), file);

  const mark = a.stderr.length;
  unmount(mnt);
  // The host file's check is the first thing a round does: once it has spoken about the bare
  // directory (re-established there, or refused to), that round's lock checks ran too.
  await until('a round on the bare mount point', () => /re-established|cannot be read \(ENOENT\)/.test(a.stderr.slice(mark)), 20_000);
  assert.equal(fs.readdirSync(mnt), [], `created under the bare mount point:\n${a.stderr.slice(mark)}`);
  await until('the lock reported unverified', () => /cannot verify 1 held lock\(s\).*not the one vmlockd started with/.test(a.stderr.slice(mark)), 20_000);
  assert.is(JSON.parse(a.cli(['status', '--json']).stdout).unverified, 1);
  assert.equal(journalFacts(a, 'Reacquired'), [], a.stderr.slice(mark));
  assert.equal(journalFacts(a, 'LeaseLost'), [], a.stderr.slice(mark));

  bind(real, mnt);
  await until('the lock checks out again', () => {
    const st = JSON.parse(a.cli(['status', '--json']).stdout);
    return st.unverified === 0 && st.sinceVerifiedMs < 3000;
  }, 20_000);
  assert.ok(lockedByAnyone(file), 'the original lock still holds');
  assert.equal(journalFacts(a, 'LeaseLost'), []);
  assert.equal(journalFacts(a, 'Reacquired'), []);
  assert.is(JSON.parse(a.cli(['status', '--json']).stdout).locks, 1);
});

test.run();
