// review27 F3 (a running VM loses its lock): journal.db, -wal and -shm removed while the daemon is
// idle, then a crash. Decision 0028 writes journal.db anew "at the first move after the removal",
// but an idle daemon moves nothing, so nothing notices: after the SIGKILL the start refuses ("seq N
// does not follow seq 0: acknowledged facts ... are in neither the database nor its staging file")
// and no VM of the host has its lock. The staging file had been cut by the start before (it moved a
// crashed daemon's staged facts), so only journal.db held the earlier facts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

test('journal.db* removed under an idle daemon, then SIGKILL: the restart holds every acknowledged lock', async () => {
  const root = tmpdir();
  const a = path.join(root, 'a.img');
  const b = path.join(root, 'b.img');
  fs.writeFileSync(a, '');
  fs.writeFileSync(b, '');
  const stateDir = path.join(root, 'state');
  const opts = { stateDir, lockspace: path.join(root, 'ls'), hostId: 'ha' };
  const d1 = await startDaemon(opts);
  running.push(d1);
  assert.is(d1.cli(['acquire', '--vm', UUID1, '--name', 'vm1', a]).code, 0);
  settled(stateDir);
  await d1.kill('SIGKILL');
  // This start moves the crashed daemon's staged facts into SQLite and cuts the staging file.
  const d2 = await startDaemon(opts);
  running.push(d2);
  assert.is(d2.cli(['acquire', '--vm', UUID2, '--name', 'vm2', b]).code, 0);
  settled(stateDir);
  await new Promise((r) => setTimeout(r, 2000));
  for (const f of ['journal.db', 'journal.db-wal', 'journal.db-shm']) fs.rmSync(path.join(stateDir, f), { force: true });
  // The daemon is idle: no command arrives before the crash.
  await new Promise((r) => setTimeout(r, 5000));
  await d2.kill('SIGKILL');
  let d3: TestDaemon;
  try {
    d3 = await startDaemon(opts);
    running.push(d3);
  } catch (e) {
    assert.unreachable(`the daemon did not start again (vm1 and vm2 hold no lock now): ${String(e).slice(0, 600)}`);
    throw e;
  }
  const locks = d3.cli(['locks', '--json']);
  assert.ok(locks.stdout.includes(UUID1) && locks.stdout.includes(UUID2), `both acknowledged locks held after the restart: ${locks.stdout}${locks.stderr}`);
});

test.run();
