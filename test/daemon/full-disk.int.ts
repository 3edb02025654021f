// A full state directory (a real 8 MiB tmpfs, filled) must not take the daemon down (invariant 10):
// commands whose facts cannot be made durable are refused with VMLOCKD_ERR_JOURNAL naming ENOSPC and
// the file, take no lock; held locks stay held; a release that cannot be journaled keeps its lock;
// status and the metrics say so; the daemon recovers alone when space returns; a start on a full
// disk fails in one line.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { TestDaemon, cli, until } from '../helpers/daemon.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { freePort } from '../helpers/ports.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];

const uuid = (i: number) => `aaaaaaaa-0000-4000-8000-${String(i).padStart(12, '0')}`;

test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

test('a full state directory refuses what it cannot journal, keeps every held lock, and recovers alone', async () => {
  // 8 MiB: once space returns, SQLite needs room for every fact the preallocated staging file took.
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const port = await freePort();
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock'), extra: ['--metrics-address', `127.0.0.1:${port}`] });
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(1), disk(1)]).code, 0);
  const filler = fill(state);

  // Acquisitions go on while the staging file has room (it is preallocated under journal_sync =
  // fdatasync, decision 0018: ~1.25 MiB of facts fit after the disk is full); then the first that
  // cannot be journaled is refused. Asked over the socket in this process: a CLI per call would
  // take minutes to fill the preallocation.
  let refused: { i: number; out: any } | undefined;
  for (let i = 2; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    if (r.status === 200) continue;
    refused = { i, out: r.body };
  }
  assert.ok(refused, 'no acquisition was refused on a full disk');
  assert.is(refused.out.code, 'VMLOCKD_ERR_JOURNAL');
  assert.match(refused.out.message, /ENOSPC/);
  assert.match(refused.out.message, new RegExp(state.replace(/[/.]/g, '\\$&')));
  assert.match(refused.out.message, /no lock was taken/);
  // It took no lock: the kernel has none on its lock file.
  assert.not.ok(kernelHeld(lockspace, disk(refused.i)), 'the refused acquisition left its lock behind');
  assert.ok(kernelHeld(lockspace, disk(1)), 'a held lock was dropped');

  // A release that cannot be journaled keeps the lock and says so.
  const rel = d.cli(['release', '--json', '--vm', uuid(1)]);
  assert.is(rel.code, 1, rel.stdout + rel.stderr);
  const relOut = JSON.parse(rel.stdout);
  assert.is(relOut.code, 'VMLOCKD_ERR_JOURNAL');
  assert.match(relOut.message, /still held/);
  assert.ok(kernelHeld(lockspace, disk(1)), 'an unjournaled release dropped the lock');
  const listed = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
  assert.ok(listed.some((l) => l.disk === disk(1)));
  assert.not.ok(listed.some((l) => l.disk === disk(refused!.i)));

  // status and metrics show the condition.
  const st = JSON.parse(d.cli(['status', '--json']).stdout);
  assert.is(st.journalTrouble?.refusing, true);
  assert.is(st.journalTrouble?.stage?.errno, 'ENOSPC');
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(metrics, /vmlockd_journal_write_failing 1/);

  // No log line every 100 ms: a few refusals and two seconds of retries leave a handful of lines.
  for (let k = 0; k < 5; k++) d.cli(['acquire', '--vm', uuid(900_000 + k), disk(900_000 + k)]);
  await new Promise((r) => setTimeout(r, 2000));
  const journalLines = d.stderr.split('\n').filter((l) => /journal/.test(l));
  assert.ok(journalLines.length <= 4, `journal errors are not rate-limited:\n${journalLines.join('\n')}`);
  assert.is(d.proc!.exitCode, null, 'the daemon died');

  // Space returns: the daemon recovers by itself.
  fs.unlinkSync(filler);
  await until('the refused disk can be acquired once space returns', () => d.cli(['acquire', '--vm', uuid(refused!.i), disk(refused!.i)]).code === 0);
  await until('status clears the condition', () => JSON.parse(d.cli(['status', '--json']).stdout).journalTrouble === null);
  assert.is(d.cli(['release', '--vm', uuid(1)]).code, 0);
  assert.not.ok(kernelHeld(lockspace, disk(1)));
  await until('a log line that writes succeed again', () => /can be written again/.test(d.stderr));

  // A start on a full disk says so in one line, exit 1.
  await d.kill('SIGTERM');
  fill(state);
  const r = cli(d.args());
  assert.is(r.code, 1, r.stdout + r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^vmlockd: cannot start: .*ENOSPC/);
  assert.not.match(r.stderr, /\n\s+at /);
});

test.run();
