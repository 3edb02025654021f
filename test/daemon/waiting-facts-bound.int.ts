// Regression (review26d F2, wait27): past the bound of facts that may wait in memory on a full state
// directory (WAITING_FACTS_MAX, lowered here with VMLOCKD_TEST_WAITING_FACTS_MAX), a Reacquired that
// follows a LeaseLost kept waiting was dropped: once the disk had room, the journal said the lock was
// lost and never taken again while the daemon held it. `vmlockd audit` was false, a refused command
// (its failed group commit rebuilds the state from the journal and the waiting facts) made the daemon
// list the disk as free while it held it, and a restart left the running VM without its lock. Now the
// facts that change who holds which lock are never dropped (decision 0026): the journal, a fresh audit
// and a restart see exactly the state the daemon had.
//
// Real daemons, a real 8 MiB tmpfs state directory filled to ENOSPC, a real lock file replaced by a
// directory under the daemon (the verifier's LeaseLost, its re-take failing), then given back (the
// verifier's Reacquired, past the bound).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { TestDaemon, cli, until } from '../helpers/daemon.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `eeeeeeee-0000-4000-8000-${String(i).padStart(12, '0')}`;

/** The VM the daemon lists as holding `disk` (GET /v1/locks: its state), if any. */
function holderOf(d: TestDaemon, disk: string): string | undefined {
  const body = JSON.parse(d.cli(['locks', '--json']).stdout) as unknown;
  const locks = (Array.isArray(body) ? body : (body as { locks: unknown[] }).locks) as Array<{ disk: string; vm: { uuid: string } }>;
  return locks.find((l) => l.disk === disk)?.vm.uuid;
}

test('a Reacquired past the bound of waiting facts is journaled: audit and a restart see the lock held', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const opts = { stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock'), extra: ['--verify-interval', '1'], env: { VMLOCKD_TEST_WAITING_FACTS_MAX: '1' } };
  const d = new TestDaemon(opts);
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(1), '--name', 'kept-vm', disk(1)]).code, 0);
  const file = JSON.parse(d.cli(['who', disk(1), '--json']).stdout).file as string;

  // Fill the state directory, then use up the staging file's room until the journal refuses a write.
  const filler = fill(state);
  let refused = false;
  for (let i = 3; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');

  // The lock file replaced by a directory: the verifier records LeaseLost (kept: the bound is 1) and
  // cannot take it again (EISDIR), so the re-take is pending.
  fs.unlinkSync(file);
  fs.mkdirSync(file);
  await until('the verifier\'s LeaseLost waits for room', () => (JSON.parse(d.cli(['status', '--json']).stdout).factsWaiting?.kinds?.LeaseLost ?? 0) >= 1, 60_000);
  assert.not.ok(kernelHeld(lockspace, disk(1)));
  // Given back: the pending re-take takes it (Reacquired, past the bound).
  fs.rmdirSync(file);
  await until('the verifier takes the lock again', () => kernelHeld(lockspace, disk(1)), 60_000);
  await until('the daemon lists it held again', () => holderOf(d, disk(1)) === uuid(1), 10_000);

  // A command refused on the full disk: its failed group commit rebuilds the state from the journal
  // and the waiting facts. The daemon must still list the lock it holds.
  const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(800_000) }, disks: [{ path: disk(800_000) }] });
  assert.is.not(r.status, 200, 'the disk had room again too early');
  assert.ok(kernelHeld(lockspace, disk(1)));
  assert.is(holderOf(d, disk(1)), uuid(1), 'after a refused command the daemon lists as free a lock it holds');

  // Room again: everything that waits is journaled.
  fs.unlinkSync(filler);
  await until('the waiting facts are journaled and moved into SQLite', () => {
    const s = JSON.parse(d.cli(['status', '--json']).stdout);
    return s.factsWaiting === null && s.journalTrouble === null && s.journalMovedSeq === s.lastSeq;
  }, 120_000);
  assert.is(holderOf(d, disk(1)), uuid(1));

  // A fresh audit: lost, then taken again (the Reacquired is in the journal, after the LeaseLost).
  const history = JSON.parse(d.cli(['audit', '--disk', disk(1), '--json', '--limit', '0']).stdout) as Array<{ seq: number; kind: string }>;
  const kinds = history.map((f) => f.kind);
  const lostAt = kinds.lastIndexOf('LeaseLost');
  assert.ok(lostAt >= 0, `no LeaseLost in the audit: ${kinds.join(' ')}`);
  assert.ok(kinds.indexOf('Reacquired', lostAt) > lostAt, `the audit says the lock was lost and never taken again while the daemon holds it: ${kinds.join(' ')}`);

  // A restart rebuilds the state from the journal alone: the lock is the VM's, re-taken.
  assert.is((await d.kill('SIGTERM')).code, 0);
  const v = cli(['journal', 'verify', '--state-dir', state]);
  assert.is(v.code, 0, v.stdout + v.stderr);
  const d2 = new TestDaemon(opts);
  daemons.push(d2);
  await d2.start();
  assert.is(holderOf(d2, disk(1)), uuid(1), 'the restart does not hold the lock the daemon held');
  assert.ok(kernelHeld(lockspace, disk(1)), 'the restart did not take the lock again');
  await d2.kill('SIGTERM');
});

test.run();
