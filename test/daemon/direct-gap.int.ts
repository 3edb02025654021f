// review26a F2 (review24a F5): a disk locked in place (`--lockspace ""`) has no gap check: a direct
// lock leaves no record, so a start that re-takes one cannot prove nobody held the disk meanwhile.
// Host A holds vm1's image exclusive; A's daemon is SIGKILLed (no descriptor store); host B's vm2
// takes the image and lets it go; A restarts and re-takes it. Before: `retaken 1, lost 0` and only the
// "listening" line. Now the start says so: a warning naming the count and the disk, the count in
// DaemonStarted (directUnproven) and in status (started.directUnproven, started.directNote).
// A take-over that adopts the direct lock's descriptor (no gap) says nothing.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, UUID2, startDaemon, tmpdir } from '../helpers/daemon.js';
import { journalFacts } from '../helpers/settled.js';
import { tracked } from '../helpers/tracked.js';

const { running, track } = tracked(test);

/** The daemon's log lines (text: "<time> <level> <message> [fields]") whose message matches `re`. */
function logged(d: TestDaemon, re: RegExp): Array<{ level: string; msg: string }> {
  return (d.stdout + d.stderr)
    .split('\n')
    .flatMap((l) => {
      const m = /^\S+ (debug|info|warning|error) (.*)$/.exec(l);
      return m ? [{ level: m[1]!, msg: m[2]! }] : [];
    })
    .filter((l) => re.test(l.msg));
}

test('direct lock re-taken after a gap (another host took and released the image meanwhile): the start warns, DaemonStarted and status count it', async () => {
  const root = tmpdir('vmlockd-direct-gap-');
  const img = path.join(root, 'vm1.img');
  fs.writeFileSync(img, 'image');
  const a = await track(startDaemon({ stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock') }));
  const b = await track(startDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }));
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', img]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', img]).code, 3, 'held by A');
  await a.kill('SIGKILL');
  // The gap: B's VM is granted vm1's image (vm1 still runs on A: two writers), then lets it go.
  const stolen = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', img]);
  assert.is(stolen.code, 0, stolen.stderr);
  assert.is(b.cli(['release', '--vm', UUID2, img]).code, 0);
  await a.start();
  running.push(a);
  const out = `${a.stdout}${a.stderr}`;
  const warn = logged(a, /direct lock/);
  assert.is(warn.length, 1, `one line about the direct re-take:\n${out}`);
  assert.is(warn[0]!.level, 'warning', out);
  assert.match(warn[0]!.msg, /^re-took 1 direct lock\(s\) after a gap/);
  assert.match(warn[0]!.msg, /continuity unproven/);
  assert.ok(warn[0]!.msg.includes(img), `names the disk: ${warn[0]!.msg}`);
  const st = JSON.parse(a.cli(['status', '--json']).stdout);
  assert.is(st.started.retaken, 1);
  assert.is(st.started.directUnproven, 1, JSON.stringify(st.started));
  assert.is(st.started.directNote, '1 direct lock(s) re-taken after a gap: continuity unproven');
  const starts = journalFacts(a.opts.stateDir, 'DaemonStarted');
  assert.is(starts.length, 2);
  assert.is(starts[0]!.payload.directUnproven, undefined, 'the first start re-took nothing');
  assert.is(starts[1]!.payload.directUnproven, 1, JSON.stringify(starts[1]!.payload));
});

test('direct lock adopted through a take-over (no gap): no warning, nothing unproven', async () => {
  const root = tmpdir('vmlockd-direct-nogap-');
  const img = path.join(root, 'vm1.img');
  fs.writeFileSync(img, 'image');
  const opts = { stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock') };
  const a = await track(startDaemon(opts));
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', img]).code, 0);
  const next = new TestDaemon({ ...opts, extra: ['--takeover'] });
  running.push(next);
  await next.start(30_000);
  assert.equal(await a.exit!, { code: 0, signal: null }, a.stderr);
  const st = JSON.parse(next.cli(['status', '--json']).stdout);
  assert.equal({ adopted: st.started.adopted, retaken: st.started.retaken, lost: st.started.lost }, { adopted: 1, retaken: 0, lost: 0 });
  assert.is(st.started.directUnproven, undefined, JSON.stringify(st.started));
  assert.is(logged(next, /direct lock/).length, 0, `${next.stdout}${next.stderr}`);
  const starts = journalFacts(opts.stateDir, 'DaemonStarted');
  assert.is(starts[starts.length - 1]!.payload.directUnproven, undefined);
});

// review27c F3: a shared direct lock whose description no longer holds its read lock (dropped through
// that very description, as a filesystem may drop it), while another host holds the disk shared: the
// take-over re-asserted it "as held throughout" and the start said nothing. Now it is adopted (held)
// and counted: the warning of its own, directUnproven, directNote.
test('a take-over of a shared direct lock whose description lost its lock while another host shares the disk: held, counted as unproven', async () => {
  const root = tmpdir('vmlockd-direct-adopt-doubt-');
  const img = path.join(root, 'vm1.img');
  fs.writeFileSync(img, 'image');
  const opts = { stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock'), extra: ['--verify-interval', '3600'] };
  const a = await track(startDaemon(opts));
  const b = await track(startDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }));
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', '--shared', img]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', '--shared', img]).code, 0);
  const drop = spawnSync('python3', [path.join(ROOT, 'test', 'helpers', 'drop-lock.py'), String(a.proc!.pid), img, '0:0'], { encoding: 'utf8' });
  assert.is(drop.status, 0, drop.stderr);
  assert.ok(Number(drop.stdout.trim()) >= 1, 'no descriptor of the daemon names the image');
  const next = new TestDaemon({ ...opts, extra: [...opts.extra, '--takeover'] });
  running.push(next);
  await next.start(30_000);
  assert.equal(await a.exit!, { code: 0, signal: null }, a.stderr);
  const st = JSON.parse(next.cli(['status', '--json']).stdout);
  assert.is(st.started.adopted, 1, JSON.stringify(st.started));
  assert.is(st.started.directUnproven, 1, JSON.stringify(st.started));
  assert.match(st.started.directNote, /adopted through a descriptor that may have been released/);
  const warn = logged(next, /direct shared lock/);
  assert.is(warn.length, 1, `${next.stdout}${next.stderr}`);
  assert.is(warn[0]!.level, 'warning');
  assert.ok(warn[0]!.msg.includes(img), warn[0]!.msg);
  const starts = journalFacts(opts.stateDir, 'DaemonStarted');
  assert.is(starts[starts.length - 1]!.payload.directUnproven, 1);
  // Held again: host B's exclusive take is refused.
  assert.is(b.cli(['release', '--vm', UUID2, img]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', img]).code, 3, 'the adopted lock does not hold');
});

test.run();
