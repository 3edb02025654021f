// review27c F2b (MEDIUM): a real daemon whose wall clock steps back while its state directory is
// full. The 1 s clock watch sends the ClockStepped through the group commit; the journal refused it
// and the step was lost (no fact, no log line: the line came only with the journaled fact), so
// `audit --at` a moment the clock passed twice answered by the labels alone (here: the verifier's
// facts already wait for room, so every append carries them and is refused). Now the step waits with
// the facts no client is answered for, is logged at once, and is journaled once there is room, ahead
// of every fact made after it. Real 8 MiB tmpfs state directory, libfaketime's clock, real CLI.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { TestDaemon, cli, until } from '../helpers/daemon.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `eeeeeeee-0000-4000-8000-${String(i).padStart(12, '0')}`;

interface Fact {
  seq: number;
  at: string;
  kind: string;
  payload: { from?: string; to?: string; seenBy?: string; wallAt?: string };
}

test('a clock step back on a full state directory waits, is logged at once, and is journaled ahead of later facts once there is room', async () => {
  assert.ok(fs.existsSync(FAKETIME), 'apt-get install faketime');
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const rc = path.join(dir, 'faketime.rc');
  fs.writeFileSync(rc, '+0\n');
  const env = { LD_PRELOAD: FAKETIME, FAKETIME_TIMESTAMP_FILE: rc, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' };
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock'), env, extra: ['--verify-interval', '1'] });
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(1), '--name', 'alpha', disk(1)]).code, 0);

  // Fill the state directory, then use up the staging file's preallocated room until the journal refuses a write.
  const filler = fill(state);
  let refused = false;
  for (let i = 2; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');
  // What room is left may still take one small fact: a held lock file replaced under the daemon makes
  // the verifier's LeaseLost and Reacquired wait for room, and every later append carries them first.
  const file = JSON.parse(d.cli(['who', disk(1), '--json']).stdout).file as string;
  fs.writeFileSync(`${file}.new`, '');
  fs.renameSync(`${file}.new`, file);
  await until('the verifier\'s LeaseLost waits for room', () => (JSON.parse(d.cli(['status', '--json']).stdout).factsWaiting?.kinds?.LeaseLost ?? 0) >= 1, 60_000);

  // The wall clock is set back 2 minutes under the running daemon; no command comes.
  fs.writeFileSync(rc, '-120\n');
  await until('the step is logged at once, though not journaled yet', () => /CLOCK STEPPED BACK.*not journaled yet/.test(d.stdout + d.stderr), 15_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${d.stdout.slice(-3000)}\n${d.stderr.slice(-3000)}`);
  });
  const st = JSON.parse(d.cli(['status', '--json']).stdout);
  assert.ok((st.factsWaiting?.kinds?.ClockStepped ?? 0) >= 1, `the ClockStepped waits for room: ${JSON.stringify(st.factsWaiting)}`);

  // Room again: the step is journaled, then a command's facts after it.
  fs.unlinkSync(filler);
  await until('the waiting facts are journaled and moved into SQLite', () => {
    const s = JSON.parse(d.cli(['status', '--json']).stdout);
    return s.factsWaiting === null && s.journalTrouble === null && s.journalMovedSeq === s.lastSeq;
  }, 120_000);
  assert.is(d.cli(['acquire', '--vm', uuid(900_000), '--name', 'beta', disk(900_000)]).code, 0);

  const steps = JSON.parse(d.cli(['audit', '--kind', 'ClockStepped', '--json', '--limit', '0']).stdout) as Fact[];
  assert.is(steps.length, 1, `one ClockStepped journaled: ${JSON.stringify(steps)}`);
  const step = steps[0]!;
  assert.is(step.payload.seenBy, 'monotonic');
  assert.ok(step.payload.to! < step.payload.from!, JSON.stringify(step));
  const beta = (JSON.parse(d.cli(['audit', '--disk', disk(900_000), '--json']).stdout) as Fact[]).find((f) => f.kind === 'LockAcquired')!;
  assert.ok(beta.seq > step.seq, `beta's grant (seq ${beta.seq}) after the step (seq ${step.seq})`);
  assert.ok(beta.at >= step.at && beta.payload.wallAt !== undefined && beta.payload.wallAt < step.at, `beta labelled at the floor, its clock reading kept: ${JSON.stringify(beta)}`);

  await d.kill('SIGTERM');
  const v = cli(['journal', 'verify', '--state-dir', state]);
  assert.is(v.code, 0, v.stdout + v.stderr);
});

test.run();
