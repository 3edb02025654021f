// Regression (review25c F3): 82dfa84 / decision 0023 say a start never exits over a full disk and serves with its
// facts staged. But the start's own facts (DaemonStarted and one Reacquired per held lock) must fit
// the staging file's preallocated room (~1.25 MiB); on a full state directory it cannot grow. A host
// holding ~1,500 disks (or 120 disks after ~10 crash-restarts on the full disk) cannot start: the
// daemon exits "cannot start: cannot write to the journal's staging file ... ENOSPC", and every VM's
// lock is dropped (no descriptor store here, as without systemd).
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { TestDaemon, until } from '../helpers/daemon.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
  unmountAll(mounts);
});
const uuid = (i: number) => `dddddddd-0000-4000-8000-${String(i).padStart(12, '0')}`;

test('a crash on a full state directory with 1,600 disks held: the next start re-takes them all and serves', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '24m');
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock') });
  daemons.push(d);
  await d.start();
  const VMS = 16;
  const PER = 100;
  for (let v = 0; v < VMS; v++) {
    const disks = Array.from({ length: PER }, (_, k) => ({ path: disk(v * PER + k) }));
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(v) }, disks });
    assert.is(r.status, 200, JSON.stringify(r.body).slice(0, 500));
  }
  await until('every fact moved into SQLite (the staging file empty)', async () => {
    const s = (await call(d.socket, 'GET', '/v1/status')).body as { lastSeq: number; journalMovedSeq: number };
    return s.journalMovedSeq === s.lastSeq;
  }, 60_000);
  fill(state);
  await d.kill('SIGKILL');
  try {
    await d.start(120_000);
  } catch (e) {
    assert.unreachable(`the start on the full disk exited, dropping ${VMS * PER} locks: ${(e as Error).message.slice(0, 600)}`);
  }
  for (let i = 0; i < VMS * PER; i += 97) assert.ok(kernelHeld(lockspace, disk(i)), `d${i} not held after the start`);
});

test.run();
