// The cross-host suite on a plain local directory: two daemons, one lockspace.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { clusterSuite, startHost, type ClusterSite } from '../helpers/cluster-suite.js';

function localSite(): ClusterSite {
  const dir = tmpdir('vmlockd-local-cluster-');
  const lockspace = path.join(dir, 'lockspace');
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  return { lockspaceA: lockspace, lockspaceB: lockspace, images, coherentNames: true };
}

const local = suite('cluster (local directory)');
const { running } = clusterSuite(local, localSite);

local('`cluster` warns when running hosts have different lock settings, and not when only the mount path differs', async () => {
  const site = localSite();
  const root = tmpdir();
  const conf = path.join(root, 'other.conf');
  fs.writeFileSync(conf, 'auto_disk_leases = 0\n');
  const a: TestDaemon = await startHost(site, 'a', 'hv-fp-a', root);
  running.push(a);
  const b: TestDaemon = await startHost(site, 'b', 'hv-fp-b', root, ['--config', conf]);
  running.push(b);
  const view = JSON.parse(a.cli(['cluster', '--json']).stdout);
  assert.is(view.warnings.length, 1, JSON.stringify(view.warnings));
  assert.match(view.warnings[0], 'lock settings differ between running hosts: ');
  assert.match(view.warnings[0], 'hv-fp-a');
  assert.match(view.warnings[0], 'hv-fp-b');
  await b.kill('SIGKILL');
  // The same lockspace through a symlink (another mount path): same lockspace id, same fingerprint.
  const alias = path.join(root, 'alias');
  fs.symlinkSync(site.lockspaceA, alias);
  const c: TestDaemon = await startHost({ ...site, lockspaceB: alias }, 'b', 'hv-fp-c', root);
  running.push(c);
  assert.equal(JSON.parse(c.cli(['cluster', '--json']).stdout).warnings, []);
});

local('a directory, FIFO or symlink named like a lock file in the lockspace does not sink locks --cluster or cluster', async () => {
  const site = localSite();
  const root = tmpdir();
  const a: TestDaemon = await startHost(site, 'a', 'hv-odd-a', root);
  running.push(a);
  const disk = path.join(site.images, 'odd.img');
  fs.writeFileSync(disk, 'x');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  fs.mkdirSync(path.join(site.lockspaceA, 'a'.repeat(64)));
  execFileSync('mkfifo', [path.join(site.lockspaceA, 'b'.repeat(64))]);
  fs.symlinkSync(disk, path.join(site.lockspaceA, 'c'.repeat(64)));
  const all = a.cli(['locks', '--cluster', '--json']);
  assert.is(all.code, 0, all.stderr);
  assert.equal(JSON.parse(all.stdout).map((l: { disk: string }) => l.disk), [disk]);
  // The same in .hosts and .mounts: a directory or a FIFO (whose open would block) is no host.
  fs.mkdirSync(path.join(site.lockspaceA, '.hosts', 'evil-dir'));
  execFileSync('mkfifo', [path.join(site.lockspaceA, '.hosts', 'evil-fifo')]);
  fs.rmSync(path.join(site.lockspaceA, '.mounts', 'hv-odd-a.json'));
  execFileSync('mkfifo', [path.join(site.lockspaceA, '.mounts', 'hv-odd-a.json')]);
  const view = a.cli(['cluster', '--json']);
  assert.is(view.code, 0, view.stderr);
  const parsed = JSON.parse(view.stdout) as { hosts: Array<{ host: string; locks: Array<{ disk: string }> }> };
  assert.equal(parsed.hosts.map((h) => h.host), ['hv-odd-a']);
  assert.equal(parsed.hosts[0]!.locks.map((l) => l.disk), [disk]);
});

local.run();
