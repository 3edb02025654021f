// review31a HIGH 1, end to end: a real daemon (libfaketime's wall clock, an 8 MiB tmpfs state directory
// filled to ENOSPC, bound 0) whose clock is set back 10 minutes while the disk is full, then loses and
// re-takes alpha's lock twice (the lock file replaced by a directory, then given back). Every fact of
// that stretch is labelled at the floor (the time the clock had reached) with the clock's reading as
// wallAt (src/engine/fact-clock.ts), so FactsDropped.coalesced, ranged by the labels, is [floor, floor):
// empty. `audit --at` a moment of the first loss (by the daemon's clock) answers "alpha held it", agreed
// by both passes of the step, with no mark. The daemon's own state then had nobody. Measured on main
// (23:22 UTC run): coalesced [{count 2, from 23:32:11.046Z, to 23:32:11.046Z}], the kept loss's wallAt
// 23:22:13.314Z, and --at 23:22:11.518Z answered alpha with clockSteps (each pass gives this answer).
// The clock first runs BACK_S ahead and is then set back to ours, so alpha's grant precedes the window.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { TestDaemon, until } from '../helpers/daemon.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const BACK_S = 600;
const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `eeeeeeee-0000-4000-8000-${String(i).padStart(12, '0')}`;

function holderOf(d: TestDaemon, disk: string): string | undefined {
  const body = JSON.parse(d.cli(['locks', '--json']).stdout) as unknown;
  const locks = (Array.isArray(body) ? body : (body as { locks: unknown[] }).locks) as Array<{ disk: string; vm: { uuid: string } }>;
  return locks.find((l) => l.disk === disk)?.vm.uuid;
}

test('clock set back on a full disk, lost/re-taken twice past the bound: audit --at the first loss is not an unmarked agreed "alpha"', async () => {
  assert.ok(fs.existsSync(FAKETIME), 'apt-get install faketime');
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const rc = path.join(dir, 'faketime.rc');
  fs.writeFileSync(rc, '+0\n');
  const env = { LD_PRELOAD: FAKETIME, FAKETIME_TIMESTAMP_FILE: rc, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1', VMLOCKD_TEST_WAITING_FACTS_MAX: '0' };
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock'), env, extra: ['--verify-interval', '1'] });
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(1), '--name', 'alpha', disk(1)]).code, 0);
  const file = JSON.parse(d.cli(['who', disk(1), '--json']).stdout).file as string;
  // The clock jumps forward BACK_S (no step back: nothing journaled), so alpha's grant is older than
  // the whole window the step back below passes twice: both passes have alpha until the losses.
  fs.writeFileSync(rc, `+${BACK_S}\n`);
  await new Promise((r) => setTimeout(r, 2_500));

  const filler = fill(state);
  let refused = false;
  for (let i = 3; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');

  fs.writeFileSync(rc, '+0\n');
  // Journaled at once (what room is left may take one small fact) or waiting: either way it is seen.
  await until('the daemon sees the step', () => /CLOCK STEPPED BACK/.test(d.stdout + d.stderr), 30_000);

  let inFirstLoss = '';
  for (let round = 0; round < 2; round++) {
    fs.unlinkSync(file);
    fs.mkdirSync(file);
    await until(`loss ${round + 1}: the daemon lists the disk free`, () => holderOf(d, disk(1)) === undefined, 60_000);
    assert.not.ok(kernelHeld(lockspace, disk(1)));
    if (round === 0) {
      await new Promise((r) => setTimeout(r, 50));
      // The daemon's clock reads ours again (set back BACK_S from where it had run ahead).
      inFirstLoss = new Date().toISOString();
      await new Promise((r) => setTimeout(r, 50));
    }
    fs.rmdirSync(file);
    await until(`re-take ${round + 1}`, () => kernelHeld(lockspace, disk(1)) && holderOf(d, disk(1)) === uuid(1), 60_000);
  }

  fs.unlinkSync(filler);
  await until('the waiting facts are journaled and moved into SQLite', () => {
    const s = JSON.parse(d.cli(['status', '--json']).stdout);
    return s.factsWaiting === null && s.journalTrouble === null && s.journalMovedSeq === s.lastSeq;
  }, 120_000);

  const history = JSON.parse(d.cli(['audit', '--disk', disk(1), '--json', '--limit', '0']).stdout) as Array<{ kind: string; at: string; payload: { wallAt?: string } }>;
  const kept = history.filter((f) => f.kind !== 'LockAcquired');
  assert.equal(kept.map((f) => f.kind), ['LeaseLost', 'Reacquired'], 'the first pair was coalesced away');
  assert.ok(kept.every((f) => f.payload.wallAt !== undefined), `precondition: the kept facts were made in the stretch: ${JSON.stringify(kept)}`);
  const dropped = JSON.parse(d.cli(['audit', '--kind', 'FactsDropped', '--json', '--limit', '0']).stdout) as Array<{ payload: { coalesced?: unknown } }>;
  const a = d.cli(['audit', '--disk', disk(1), '--at', inFirstLoss, '--json']);
  assert.is(a.code, 0, a.stderr);
  const answer = JSON.parse(a.stdout) as { holders: Array<{ owner: { uuid: string } }>; incomplete?: unknown[]; ambiguous?: unknown };
  const agreedAlpha = answer.ambiguous === undefined && answer.holders.some((h) => h.owner.uuid === uuid(1));
  assert.ok(!(agreedAlpha && answer.incomplete === undefined), `audit --at ${inFirstLoss} (alpha's lock lost then, by the daemon's clock) answered alpha, agreed and unmarked; coalesced = ${JSON.stringify(dropped.map((f) => f.payload.coalesced))}`);
  await d.kill('SIGTERM');
});

test.run();
