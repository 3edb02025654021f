// Retention of the published history (publish_retain_days) and what journal verify --cluster makes of
// a chain's missing head: removed on purpose by its owner (the pruned-through marker) or not.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, cli, tmpdir, UUID1 } from '../helpers/daemon.js';
import { postEvents, readPublished, startStop, status, waitFor, publishedAll } from '../helpers/published.js';

const test = suite('published history: retention and a missing head');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});


/** An environment for a machine that never ran a daemon (no config, no socket, its own cache). */
function elsewhere(root: string, name: string): Record<string, string> {
  const home = path.join(root, name);
  fs.mkdirSync(home, { recursive: true });
  return { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
}

test('the first segments removed by hand, no marker: verify --cluster fails naming host, the missing seq range and the first segment present', async () => {
  const root = tmpdir('vmlockd-head-');
  const ls = path.join(root, 'lockspace');
  const stateDir = path.join(root, 'state');
  const dir = path.join(ls, '.journal', 'h1');
  const d = new TestDaemon({ stateDir, lockspace: ls, hostId: 'h1', extra: ['--publish-segment-bytes', '4096'], env: { VMLOCKD_PUBLISH_INTERVAL_MS: '20' } });
  running.push(await d.start());
  await postEvents(d.socket, startStop(path.join(root, 'images'), 0, 60));
  await publishedAll(d.socket);
  const segs = readPublished(dir, 'h1').segments;
  assert.ok(segs.length >= 4, `${segs.length} segments`);
  fs.rmSync(path.join(dir, segs[0]!.name));
  fs.rmSync(path.join(dir, segs[1]!.name));
  const third = segs[2]!;
  const first = Number(third.name.slice(17, 33));
  for (const [where, r] of [
    ['another machine', cli(['journal', 'verify', '--cluster', '--lockspace', ls], { env: elsewhere(root, 'other') })],
    ['the host', cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--state-dir', stateDir])],
  ] as const) {
    assert.is.not(r.code, 0, `${where}: ${r.stdout}`);
    assert.match(r.stdout, new RegExp(`host h1 journal [0-9a-f]{16}: segment ${third.name} seq 1: missing head: seq 1 to ${first - 1} are in no segment and no pruned-through marker`), `${where}: ${r.stdout}`);
    assert.match(r.stdout, new RegExp(`the first segment present is ${third.name}`));
  }
});

test('retention: old segments pruned by their owner; verify checks the kept chain from the marker; a hold older than the cut still shows; a removal beyond the marker fails', async () => {
  const root = tmpdir('vmlockd-retain-');
  const ls = path.join(root, 'lockspace');
  const stateDir = path.join(root, 'state');
  const dir = path.join(ls, '.journal', 'h1');
  const disk = path.join(root, 'long-lived.img');
  fs.writeFileSync(disk, '');
  // Retention of 4 s (the config counts days; the environment stands in for a test), looked at every 200 ms.
  const env = { VMLOCKD_PUBLISH_INTERVAL_MS: '20', VMLOCKD_PUBLISH_RETAIN_MS: '4000', VMLOCKD_PUBLISH_PRUNE_EVERY_MS: '200' };
  const d = new TestDaemon({ stateDir, lockspace: ls, hostId: 'h1', extra: ['--publish-segment-bytes', '4096'], env });
  running.push(await d.start());
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'longvm', disk]).code, 0);
  await postEvents(d.socket, startStop(path.join(root, 'images'), 0, 60));
  await publishedAll(d.socket);
  const before = readPublished(dir, 'h1').segments.map((s) => s.name);
  assert.ok(before.length >= 4, `${before.length} segments`);
  const journal = before[0]!.slice(0, 16);
  const marker = path.join(dir, `${journal}.pruned`);
  // Everything but the newest segment gets older than the retention and goes; the newest stays.
  await waitFor('the old segments to be pruned', () => fs.existsSync(marker) && !fs.existsSync(path.join(dir, before[before.length - 2]!)));
  const after = readPublished(dir, 'h1').segments.map((s) => s.name);
  assert.ok(after.includes(before[before.length - 1]!), 'the newest segment is kept');
  assert.not.ok(after.includes(before[0]!), 'the oldest segment (it holds the acquire) is gone');
  const m = fs.readFileSync(marker, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
  assert.is(m[0].t, 'pruned');
  assert.is(m[0].host, 'h1');
  assert.is(m[0].through + 1, Number(after[0]!.slice(17, 33)), 'the marker ends where the first kept segment starts');
  assert.ok(m.slice(1).some((c: any) => c.t === 'carried' && c.kind === 'LockAcquired' && c.owner === UUID1), `the acquire of the hold still in force is carried: ${JSON.stringify(m.slice(1))}`);
  await waitFor('status to show the cut', async () => (await status(d.socket)).publication.prunedThrough === m[0].through);

  const other = elsewhere(root, 'auditor');
  const ok = cli(['journal', 'verify', '--cluster', '--lockspace', ls], { env: other });
  assert.is(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, new RegExp(`note: seq 1 to ${m[0].through} were pruned by the host's daemon`));
  const own = cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--state-dir', stateDir]);
  assert.is(own.code, 0, own.stdout + own.stderr);

  // A reader that never read the pruned segments still knows the hold that began before the cut.
  const now = cli(['audit', '--cluster', '--lockspace', ls, '--disk', disk, '--at', 'now'], { env: other });
  assert.is(now.code, 0, now.stderr);
  assert.match(now.stdout, /longvm/, now.stdout);
  const ov = cli(['audit', '--cluster', '--lockspace', ls, '--overlaps'], { env: other });
  assert.match(ov.stdout, /^no overlaps/);

  // A forged marker (another hash) is caught: the first kept segment must chain from it.
  const text = fs.readFileSync(marker, 'utf8');
  const lines = text.split('\n');
  fs.writeFileSync(marker, [JSON.stringify({ ...JSON.parse(lines[0]!), hash: 'f'.repeat(64) }), ...lines.slice(1)].join('\n'));
  const forged = cli(['journal', 'verify', '--cluster', '--lockspace', ls], { env: elsewhere(root, 'third') });
  assert.is.not(forged.code, 0, forged.stdout);
  assert.match(forged.stdout, new RegExp(`segment ${after[0]!}`));
  fs.writeFileSync(marker, text);

  // A marker does not excuse more than it says: the daemon again without retention, more segments,
  // then the first kept segment removed by hand is named.
  await d.kill('SIGTERM');
  running.splice(0);
  const d2 = new TestDaemon({ stateDir, lockspace: ls, hostId: 'h1', extra: ['--publish-segment-bytes', '4096', '--publish-retain-days', '0'], env: { VMLOCKD_PUBLISH_INTERVAL_MS: '20' } });
  running.push(await d2.start());
  await postEvents(d2.socket, startStop(path.join(root, 'images'), 100, 30));
  await publishedAll(d2.socket);
  const kept = readPublished(dir, 'h1').segments;
  assert.ok(kept.length >= 2, `${kept.length} segments`);
  fs.rmSync(path.join(dir, kept[0]!.name));
  const bad = cli(['journal', 'verify', '--cluster', '--lockspace', ls], { env: elsewhere(root, 'fourth') });
  assert.is.not(bad.code, 0, bad.stdout);
  assert.match(bad.stdout, new RegExp(`missing segments: seq ${m[0].through + 1} to ${Number(kept[1]!.name.slice(17, 33)) - 1} are in no segment; the host's daemon pruned only through seq ${m[0].through}`), bad.stdout);
});

test.run();
