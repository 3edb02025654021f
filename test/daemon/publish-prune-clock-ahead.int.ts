// A daemon started with its clock 100 days ahead (a host booting with a wrong RTC, before NTP steps it)
// keeps its published history: retention never runs in the first hour after a start. review26b F3:
// retention compared each sealed segment's newest fact with Date.now() at once, so segments written
// minutes ago were "older than 90 days"; it wrote a .pruned marker (the cut looked deliberate) and
// `audit --cluster --disk D` said "unknown disk" for a disk alpha held minutes before.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, cli, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';

const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

test('a start with the clock 100 days ahead keeps the history published minutes ago', async () => {
  assert.ok(fs.existsSync(FAKETIME), 'apt-get install faketime');
  const dir = tmpdir('vmlockd-r26b-prune-');
  fs.mkdirSync(path.join(dir, 'images'));
  const disks = Array.from({ length: 12 }, (_, i) => path.join(dir, 'images', `d${i}.img`));
  for (const d of disks) fs.writeFileSync(d, 'image');
  const ls = path.join(dir, 'ls');
  const opts = { stateDir: path.join(dir, 'state'), lockspace: ls, hostId: 'ha', extra: ['--publish-segment-bytes', '4096'] };
  const a = await startDaemon(opts);
  running.push(a);
  for (const d of disks) assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'alpha', d]).code, 0);
  for (const d of disks) assert.is(a.cli(['release', '--vm', UUID1, d]).code, 0);
  await a.kill('SIGTERM');
  running.splice(0);
  const hostDir = path.join(ls, '.journal', 'ha');
  const before = fs.readdirSync(hostDir).filter((n) => n.endsWith('.seg'));
  assert.ok(before.length >= 3, `several sealed segments: ${before}`);
  const b = await startDaemon({ ...opts, env: { LD_PRELOAD: FAKETIME, FAKETIME: '+100d', FAKETIME_DONT_FAKE_MONOTONIC: '1' } });
  running.push(b);
  // Retention looked at once at a start (before the fix); give it 8 s.
  const deadline = Date.now() + 8000;
  while (Date.now() < deadline && !fs.readdirSync(hostDir).some((n) => n.endsWith('.pruned'))) await new Promise((r) => setTimeout(r, 200));
  const after = fs.readdirSync(hostDir);
  assert.ok(!after.some((n) => n.endsWith('.pruned')), `minutes-old segments pruned by a clock 100 days ahead: ${after}`);
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const r = cli(['audit', '--cluster', '--lockspace', ls, '--cache', path.join(dir, 'cache'), '--disk', disks[0]!], { env: { HOME: home, VMLOCKD_CONFIG: '/nonexistent' } });
  assert.ok(r.stdout.includes('alpha'), `audit --cluster --disk names alpha: ${r.stdout} ${r.stderr}`);
});

test.run();
