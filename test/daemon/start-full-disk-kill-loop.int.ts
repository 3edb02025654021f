// Regression (review25c F3): 82dfa84 (decision 0023): "a start never exits over a full disk; it serves with facts
// staged". Each start journals DaemonStarted and one Reacquired per held lock into the staging file;
// with SQLite full those stay staged. (16 MiB: room for SQLite's WAL once the filler is gone; the
// staging file's preallocated room is what runs out, after ~11 starts.) A SIGKILL loop on a full state directory: every start must
// hold every acknowledged lock again (and the daemon stay up), however many starts pile up.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, cli, until } from '../helpers/daemon.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
  unmountAll(mounts);
});
const uuid = (i: number) => `cccccccc-0000-4000-8000-${String(i).padStart(12, '0')}`;

test('SIGKILL loop on a full state directory: every start re-takes every acknowledged lock', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '16m');
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock') });
  daemons.push(d);
  await d.start();
  const acked: number[] = [];
  const N = 120;
  for (let i = 0; i < N; i++) {
    assert.is(d.cli(['acquire', '--vm', uuid(i), disk(i)]).code, 0);
    acked.push(i);
  }
  console.log('  before fill:', JSON.stringify(JSON.parse(d.cli(['status', '--json']).stdout).journalTrouble));
  const filler = fill(state);
  let starts = 0;
  for (let round = 0; round < 25; round++) {
    await d.kill('SIGKILL');
    try {
      await d.start(60_000);
    } catch (e) {
      assert.unreachable(`start ${round + 1} on the full disk failed (after ${starts} good starts): ${(e as Error).message}\n${d.stderr.slice(-2000)}`);
    }
    starts++;
    const listed = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
    for (const i of acked) {
      assert.ok(listed.some((l) => l.disk === disk(i)), `round ${round}: d${i} not held again`);
      assert.ok(kernelHeld(lockspace, disk(i)), `round ${round}: d${i} listed but not held by the kernel`);
    }
    // A new acquire: refused or acknowledged; if acknowledged it must survive the next kill.
    const r = d.cli(['acquire', '--vm', uuid(1000 + round), disk(1000 + round)]);
    if (r.code === 0) acked.push(1000 + round);
  }
  fs.unlinkSync(filler);
  await until('moved after space back', () => {
    const s = JSON.parse(d.cli(['status', '--json']).stdout);
    return s.journalTrouble === null && s.journalMovedSeq === s.lastSeq;
  }, 60_000);
  await d.kill('SIGTERM');
  const v = cli(['journal', 'verify', '--state-dir', state]);
  assert.is(v.code, 0, v.stdout + v.stderr);
  console.log(`  ${starts} starts on a full disk, ${acked.length} locks acknowledged`);
});

test.run();
