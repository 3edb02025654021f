// audit --cluster after a host was renamed on the same state directory (review15): publication stops
// at the first fact journaled under the new host id (VMLOCKD_ERR_PUBLISH_HOST), so the old host id's
// published history ends with a hold that really went on (re-taken under the new id, then released,
// unpublished). The reader must say that this is unknown, never that the old host id still holds it:
// no false overlap with the next host that takes the disk, and --at after the change says unknown.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, cli, tmpdir, UUID1, UUID2 } from '../helpers/daemon.js';
import { publishedAll, status, waitFor } from '../helpers/published.js';

const test = suite('cluster: a host renamed on the same state directory');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});


test('renamed between acquire and release, then another host takes the disk: no overlap, and unknown after the change', async () => {
  const root = tmpdir('vmlockd-rename-');
  const ls = path.join(root, 'lockspace');
  const stateDir = path.join(root, 'state');
  const disk = path.join(root, 'd1.img');
  fs.writeFileSync(disk, '');
  const env = { VMLOCKD_PUBLISH_INTERVAL_MS: '20' };
  const a = new TestDaemon({ stateDir, lockspace: ls, hostId: 'hv-old', env });
  running.push(await a.start());
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  const before = await publishedAll(a.socket);
  await a.kill('SIGTERM');
  running.splice(0);
  const renamed = new TestDaemon({ stateDir, lockspace: ls, hostId: 'hv-new', env });
  running.push(await renamed.start());
  const st = await waitFor('publication to stop at the host id change', async () => {
    const s = await status(renamed.socket);
    return s.publication?.lastError?.code === 'VMLOCKD_ERR_PUBLISH_HOST' ? s : undefined;
  });
  // What hv-old published (its facts and, at most, the SIGTERM's DaemonStopped) and nothing more: no
  // fact journaled under hv-new counts as published (aud31 LOW 4 made a start report
  // meta.published_through, the previous run's, instead of 0), and the lag counts every fact since.
  assert.ok(st.publication.publishedSeq === null || (st.publication.publishedSeq >= 0 && st.publication.publishedSeq <= before.lastSeq + 1), JSON.stringify({ before: before.lastSeq, publication: st.publication }));
  if (st.publication.publishedSeq !== null) {
    assert.is(st.publication.lagFacts, st.lastSeq - st.publication.publishedSeq, JSON.stringify(st.publication));
    assert.ok(st.publication.lagFacts >= 1, "hv-new's start facts wait, unpublished");
  }
  const during = new Date().toISOString(); // web1 holds the disk through hv-new now (re-taken at its start)
  assert.is(renamed.cli(['release', '--vm', UUID1]).code, 0);
  await renamed.kill('SIGTERM');
  running.splice(0);
  const b = new TestDaemon({ stateDir: path.join(root, 'b-state'), lockspace: ls, hostId: 'hv-b', env });
  running.push(await b.start());
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'db1', disk]).code, 0);
  await publishedAll(b.socket);

  const home = path.join(root, 'auditor');
  fs.mkdirSync(home, { recursive: true });
  const e = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const q = (args: string[]) => cli(['audit', '--cluster', '--lockspace', ls, ...args], { env: e });
  const ov = q(['--overlaps']);
  assert.is(ov.code, 0, ov.stderr);
  assert.match(ov.stdout, /^no overlaps/, `web1 on hv-old is not "still held" against db1 on hv-b:\n${ov.stdout}`);
  const at = q(['--disk', disk, '--at', during]);
  assert.is(at.code, 0, at.stderr);
  assert.match(at.stdout, /host hv-old's journal [0-9a-f]{16} went on as host hv-new from seq \d+ at .*not published \(VMLOCKD_ERR_PUBLISH_HOST\).*unknown/, at.stdout);
  const now = q(['--disk', disk, '--at', 'now']);
  assert.match(now.stdout, /db1/);
  assert.not.match(now.stdout, /web1 .*exclusive/, now.stdout);
  const json = JSON.parse(q(['--disk', disk, '--at', during, '--json']).stdout);
  assert.is(json.hosts.find((h: any) => h.host === 'hv-old').changed.to, 'hv-new');
  const statement = fs.readdirSync(path.join(ls, '.journal', 'hv-new')).filter((n) => n.endsWith('.host-changed'));
  assert.is(statement.length, 1, 'the renamed daemon says where its journal changed host id');
});

test.run();
