// (found by review 15b) a hold that began before the pruning cut (carried in <journal>.pruned) and an intruder on
// another host after the holder's daemon died (the restart gap): --overlaps must find it from a reader
// that never read the pruned segments.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, cli, tmpdir } from '../helpers/daemon.js';
import { postEvents, publishedAll, readPublished, startStop, waitFor } from '../helpers/published.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

async function scenario(prune: boolean): Promise<void> {
  const root = tmpdir('vmlockd-pruned-overlap-');
  const ls = path.join(root, 'lockspace');
  const dir = path.join(ls, '.journal', 'h1');
  const disk = path.join(root, 'long-lived.img');
  fs.writeFileSync(disk, '');
  const env = prune ? { VMLOCKD_PUBLISH_INTERVAL_MS: '20', VMLOCKD_PUBLISH_RETAIN_MS: '4000', VMLOCKD_PUBLISH_PRUNE_EVERY_MS: '200' } : { VMLOCKD_PUBLISH_INTERVAL_MS: '20' };
  const d = new TestDaemon({ stateDir: path.join(root, 'state'), lockspace: ls, hostId: 'h1', extra: ['--publish-segment-bytes', '4096'], env });
  running.push(await d.start());
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'longvm', disk]).code, 0);
  await postEvents(d.socket, startStop(path.join(root, 'images'), 0, 60));
  await publishedAll(d.socket);
  const before = readPublished(dir, 'h1').segments.map((s) => s.name);
  const marker = path.join(dir, `${before[0]!.slice(0, 16)}.pruned`);
  if (prune) await waitFor('pruned', () => fs.existsSync(marker) && !fs.existsSync(path.join(dir, before[0]!)));
  await d.kill('SIGKILL');
  const b = new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace: ls, hostId: 'h2', env: { VMLOCKD_PUBLISH_INTERVAL_MS: '20' } });
  running.push(await b.start());
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'intruder', disk]).code, 0);
  await publishedAll(b.socket);
  const home = path.join(root, 'auditor');
  fs.mkdirSync(home);
  const e = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const ov = cli(['audit', '--cluster', '--lockspace', ls, '--overlaps', '--json'], { env: e });
  assert.is(ov.code, 0, ov.stderr);
  const o = JSON.parse(ov.stdout) as Array<{ a: { host: string }; b: { host: string } }>;
  assert.is(o.length, 1, `longvm (h1, carried from before the cut, host died holding it) and intruder (h2): expected 1 overlap, got ${ov.stdout}`);
}

test('control, no pruning: the restart-gap overlap is reported', () => scenario(false));
test('pruned head + restart gap: the overlap of the carried hold with another host is reported', () => scenario(true));

test.run();
