// (review15) a journal compacted while publication was off (or before the upgrade that turned
// publication on) publishes from its first live seq; the grants of holds still open at the cut are only
// in the journal's `carried` table, never published. `audit --cluster --disk D --at now` then says nobody
// holds D while the local `audit` names the VM, and --overlaps cannot see that hold.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, cli, tmpdir, UUID1 } from '../helpers/daemon.js';
import { postEvents, startStop, status, waitFor } from '../helpers/published.js';

const test = suite('publication after a compaction done while publish = 0');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

test('a hold older than a compaction done while publish = 0 is in audit --cluster (the published history starts with the carried holds)', async () => {
  const root = tmpdir('vmlockd-r15-compact-');
  const ls = path.join(root, 'lockspace');
  const stateDir = path.join(root, 'state');
  const images = path.join(root, 'images');
  fs.mkdirSync(images, { recursive: true });
  const conf = path.join(root, 'vmlockd.conf');
  fs.writeFileSync(conf, 'publish = 0\n');
  const d = new TestDaemon({ stateDir, lockspace: ls, hostId: 'hv-a', extra: ['--config', conf], env: { VMLOCKD_PUBLISH_INTERVAL_MS: '20' } });
  running.push(await d.start());
  const disk = path.join(images, 'long-lived.img');
  fs.writeFileSync(disk, '');
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'longvm', disk]).code, 0);
  await postEvents(d.socket, startStop(images, 0, 30));
  await new Promise((r) => setTimeout(r, 1100));
  const cutAt = new Date().toISOString();
  await postEvents(d.socket, startStop(images, 30, 10));
  const c = cli(['journal', 'compact', '--before', cutAt, '--state-dir', stateDir]);
  assert.is(c.code, 0, c.stderr + c.stdout);
  console.log('compact:', c.stdout.trim());

  fs.writeFileSync(conf, 'publish = 1\n');
  await waitFor('publication to catch up', async () => {
    const st = await status(d.socket);
    return st.publication?.enabled === true && st.publication.publishedSeq === st.lastSeq ? st : undefined;
  });

  const local = d.cli(['audit', '--disk', disk, '--at', 'now', '--json']);
  assert.is(local.code, 0, local.stderr);
  console.log('local audit:', local.stdout.trim().replace(/\s+/g, ' ').slice(0, 300));
  const home = path.join(root, 'auditor');
  fs.mkdirSync(home, { recursive: true });
  const cl = cli(['audit', '--cluster', '--lockspace', ls, '--disk', disk, '--at', 'now', '--json'], { env: { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
  console.log('cluster audit:', cl.code, cl.stdout.trim().replace(/\s+/g, ' ').slice(0, 300), cl.stderr.trim());
  assert.match(local.stdout, /longvm/, 'the local audit names the holder');
  assert.match(cl.stdout, /longvm/, 'audit --cluster must name the same holder (it is still running with the lock)');
  const ver = cli(['journal', 'verify', '--cluster', '--lockspace', ls], { env: { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
  assert.is(ver.code, 0, `journal verify --cluster accepts a history that starts after a compaction: ${ver.stdout}${ver.stderr}`);
});

test.run();
