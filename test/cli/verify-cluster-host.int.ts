// `journal verify --cluster --state-dir DIR` without the daemon's config (a state directory copied off a
// dead host for forensics, or a host whose config file is elsewhere), after a compaction moved every
// fact into the archive, compares the journal with the chain of the host its facts name. review26b F7:
// the host was taken from the newest DaemonStarted only, else from the config default (the hostname):
// it printed a phantom host "<hostname> journal J: ok (no facts)", exit 0, and never compared the
// journal with ha's published chain.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, cli, startDaemon, tmpdir } from '../helpers/daemon.js';

test('verify --cluster --state-dir: the journal is compared with its own host\'s chain, no phantom host', async () => {
  const dir = tmpdir('vmlockd-r26b-vhost-');
  fs.mkdirSync(path.join(dir, 'images'));
  const disk = path.join(dir, 'images', 'd.img');
  fs.writeFileSync(disk, 'x');
  const ls = path.join(dir, 'ls');
  const stateDir = path.join(dir, 'state');
  const d = await startDaemon({ stateDir, lockspace: ls, hostId: 'ha' });
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'alpha', disk]).code, 0);
  await d.kill('SIGTERM');
  // Compaction moves the run's DaemonStarted (what verify takes the host from) into the archive.
  const c = cli(['journal', 'compact', '--before', 'now', '--state-dir', stateDir]);
  assert.is(c.code, 0, c.stderr);
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const r = cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--state-dir', stateDir], { env: { HOME: home, VMLOCKD_CONFIG: '/nonexistent' } });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.not.match(r.stdout, new RegExp(`host ${os.hostname()} journal`), 'no phantom host named after the hostname');
  assert.match(r.stdout, /host ha .*matches the local journal/, 'the journal is compared with ha\'s published chain');
});

test.run();
