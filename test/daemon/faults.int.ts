// Faults an operator or the machine brings, against real daemons (issue 12, chaos suite "faults"):
// a start with staged facts that SQLite cannot take (a full state directory: it serves, its locks held), and the lockspace
// removed, replaced by a new directory, or replaced by a file while locks are held. The daemon stays
// up (or, at start, says why in one line), never claims a lock the kernel does not hold, and never lets
// a second host take a disk it holds. (A read-only state directory: test/daemon/durability.int.ts.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { TestDaemon, UUID1, UUID2, cli, tmpdir, until } from '../helpers/daemon.js';
import { kernelHeld, kernelLockedFiles, listedVsKernel } from '../helpers/kernel-locks.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];

test.after.each(async () => {
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `bbbbbbbb-0000-4000-8000-${String(i).padStart(12, '0')}`;

test('a start with acknowledged facts still staged that SQLite cannot take (full disk) re-takes every lock and serves (review24d: it exited, dropping them all); with space back every fact moves into SQLite', async () => {
  // 4 MiB: with the filler gone, room for SQLite's WAL beside the preallocated staging file (1.25 MiB).
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '4m');
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock') });
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(0), disk(0)]).code, 0);
  const filler = fill(state);
  // Acknowledged while the staging file has room, though SQLite cannot take them: they stay staged.
  const acked = [0];
  for (let i = 1; i < 400; i++) {
    const r = d.cli(['acquire', '--vm', uuid(i), disk(i)]);
    if (r.code !== 0) break;
    acked.push(i);
  }
  const st = JSON.parse(d.cli(['status', '--json']).stdout);
  const pending = st.journalTrouble?.pending ?? 0;
  assert.ok(pending > 0, `no fact was left staged: ${JSON.stringify(st.journalTrouble)}`);
  await d.kill('SIGKILL');

  // The start cannot move the staged facts into SQLite: they stay staged (durable), every lock is
  // held again, and the log says why SQLite lags.
  await d.start();
  const listed = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
  for (const i of acked) {
    assert.ok(listed.some((l) => l.disk === disk(i)), `d${i} (acknowledged; ${pending} staged at the kill) is not held again`);
    assert.ok(kernelHeld(lockspace, disk(i)), `d${i} is listed but the kernel holds no lock`);
  }
  const trouble = JSON.parse(d.cli(['status', '--json']).stdout).journalTrouble;
  assert.is(trouble?.sqlite?.errno, 'ENOSPC', JSON.stringify(trouble));
  assert.match(d.stderr, /staged facts could not be moved into SQLite .*ENOSPC/);

  // Space returns: every fact moves into SQLite; a crash then, and every lock is held again from it.
  fs.unlinkSync(filler);
  await until('the staged facts moved into SQLite', () => {
    const s2 = JSON.parse(d.cli(['status', '--json']).stdout);
    return s2.journalTrouble === null && s2.journalMovedSeq === s2.lastSeq;
  }, 30_000);
  await d.kill('SIGKILL');
  await d.start();
  const again = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
  for (const i of acked) assert.ok(again.some((l) => l.disk === disk(i)), `d${i} is not held after the next start`);
  await d.kill('SIGTERM');
  assert.is(cli(['journal', 'verify', '--state-dir', state]).code, 0);
  console.log(`  staged at the kill: ${pending} facts; ${acked.length} locks acknowledged`);
});

async function twoHosts(interval = '1') {
  const dir = tmpdir('vmlockd-lsfault-');
  fs.chmodSync(dir, 0o755);
  const lockspace = path.join(dir, 'ls');
  fs.mkdirSync(path.join(dir, 'img'));
  const img = path.join(dir, 'img', 'a.img');
  fs.writeFileSync(img, 'x');
  const a = await new TestDaemon({ stateDir: path.join(dir, 'sa'), lockspace, hostId: 'ha', extra: ['--verify-interval', interval] }).start();
  daemons.push(a);
  const b = await new TestDaemon({ stateDir: path.join(dir, 'sb'), lockspace, hostId: 'hb', extra: ['--verify-interval', interval] }).start();
  daemons.push(b);
  assert.is(a.cli(['acquire', '--vm', UUID1, img]).code, 0);
  return { dir, lockspace, img, a, b, name: sha256Hex(img) };
}

const alive = (d: TestDaemon) => d.proc!.exitCode === null && d.proc!.signalCode === null;
const facts = (d: TestDaemon, kind: string) => JSON.parse(d.cli(['audit', '--json', '--kind', kind]).stdout) as Array<{ payload: Record<string, unknown> }>;

for (const how of ['removed', 'replaced by a new directory'] as const) {
  test(`the lockspace ${how} while a lock is held: LeaseLost, taken again on the new file, the other host refused, the old file let go`, async () => {
    const { lockspace, img, a, b, name } = await twoHosts();
    if (how === 'removed') fs.rmSync(lockspace, { recursive: true, maxRetries: 10 });
    else {
      fs.renameSync(lockspace, `${lockspace}.old`);
      fs.mkdirSync(lockspace);
    }
    await until('LeaseLost and Reacquired on host a', () => facts(a, 'Reacquired').length > 0);
    const lost = facts(a, 'LeaseLost');
    assert.is(lost.length, 1);
    assert.match(String(lost[0]!.payload.reason), /removed|unlinked|replaced/);
    assert.ok(kernelHeld(lockspace, img), 'the new lock file is not locked');
    const r = b.cli(['acquire', '--json', '--vm', UUID2, img]);
    assert.is(r.code, 3, r.stdout + r.stderr);
    assert.is(JSON.parse(r.stdout).code, 'VMLOCKD_ERR_LOCK_HELD');
    // What a lists is what the kernel holds, and the old (unlinked or moved) file is let go.
    const locks = JSON.parse(a.cli(['locks', '--json']).stdout) as Array<{ resource: string }>;
    assert.equal(listedVsKernel(a.proc!.pid!, locks, [lockspace]), { notHeld: [], notListed: [] });
    const old = [...kernelLockedFiles(a.proc!.pid!)].filter((f) => f.includes(name) && f !== path.join(lockspace, name));
    assert.equal(old, [], 'the lock on the old file is still held');
    assert.ok(alive(a) && alive(b));
  });
}

test('the lockspace replaced by a file while a lock is held: the daemons stay up, the lock stays held, a new acquire is a clear error; a directory again brings the lock back', async () => {
  const { dir, lockspace, img, a, b } = await twoHosts();
  // maxRetries: a daemon may create a file in it while the removal runs (ENOTEMPTY, seen at load 18).
  fs.rmSync(lockspace, { recursive: true, maxRetries: 10 });
  fs.writeFileSync(lockspace, 'not a directory');
  const r = b.cli(['acquire', '--json', '--vm', UUID2, img]);
  assert.is(r.code, 1, r.stdout + r.stderr);
  const out = JSON.parse(r.stdout);
  assert.is(out.code, 'VMLOCKD_ERR_IO');
  assert.match(out.message, /ENOTDIR/);
  assert.match(out.message, new RegExp(lockspace.replace(/[/.]/g, '\\$&')));
  // Two verify rounds: a check that cannot run is not a loss.
  await until('host a says it cannot verify', () => /cannot verify 1 held lock/.test(a.stderr));
  assert.is(facts(a, 'LeaseLost').length, 0);
  const locks = JSON.parse(a.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
  assert.equal(locks.map((l) => l.disk), [img]);
  assert.is(kernelLockedFiles(a.proc!.pid!).size > 0, true, 'host a let its lock go');
  assert.ok(alive(a) && alive(b), `a daemon died:\n${a.stderr}\n${b.stderr}`);
  // The directory comes back (empty): the lock file is gone, so the lock is lost and taken again.
  fs.rmSync(lockspace);
  fs.mkdirSync(lockspace);
  await until('the lock taken again on the new lock file', () => kernelHeld(lockspace, img));
  assert.is(b.cli(['acquire', '--vm', UUID2, img]).code, 3);
  assert.ok(fs.existsSync(dir));
});

test.run();
