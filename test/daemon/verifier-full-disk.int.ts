// Regression (robust26, decision 0026): the verifier's facts were only logged and dropped when the
// journal refused the write at run time (a full state directory), so a LeaseLost, the record that a
// VM lost its lock, never reached the audit. Now they are folded in, wait in memory (status
// factsWaiting, metric vmlockd_journal_facts_waiting) and are journaled first once there is room, in
// order, the hash chain intact. A real 8 MiB tmpfs state directory, filled; a real lock file replaced
// under the running daemon (a loss the verifier sees and re-takes); a real audit afterwards.
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
test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `dddddddd-0000-4000-8000-${String(i).padStart(12, '0')}`;

test('a LeaseLost the verifier records on a full state directory waits, and audit shows it once there is room', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const port = await freePort();
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock'), extra: ['--verify-interval', '1', '--metrics-address', `127.0.0.1:${port}`] });
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(1), '--name', 'lost-vm', disk(1)]).code, 0);
  assert.is(d.cli(['acquire', '--vm', uuid(2), '--name', 'other-vm', disk(2)]).code, 0);
  const file = JSON.parse(d.cli(['who', disk(1), '--json']).stdout).file as string;

  // Fill the state directory, then use up the staging file's preallocated room (decision 0018)
  // until the journal refuses a write.
  const filler = fill(state);
  let refused = false;
  for (let i = 3; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');
  assert.is(JSON.parse(d.cli(['status', '--json']).stdout).journalTrouble?.refusing, true);

  // The held lock file replaced under the daemon: the verifier's next round records LeaseLost and
  // takes the new file's lock (Reacquired); the journal refuses both.
  fs.writeFileSync(`${file}.new`, '');
  fs.renameSync(`${file}.new`, file);
  let st: any;
  await until('the verifier\'s LeaseLost waits for room', () => {
    st = JSON.parse(d.cli(['status', '--json']).stdout);
    return (st.factsWaiting?.kinds?.LeaseLost ?? 0) >= 1;
  }, 60_000);
  assert.ok(st.factsWaiting.stageFile.endsWith('-stage'), JSON.stringify(st.factsWaiting));
  await until('the log says the facts wait, and names the loss at once', () => /JOURNAL FULL: .*LeaseLost/.test(d.stderr) && /lost-vm.*not journaled yet: the state directory is full/.test(d.stderr), 30_000);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(metrics, /vmlockd_journal_facts_waiting [1-9]/);
  assert.ok(kernelHeld(lockspace, disk(1)), 'the replaced lock file was not taken again');
  assert.ok(kernelHeld(lockspace, disk(2)), 'another VM\'s lock was dropped');

  // Room again: the waiting facts are journaled first, on their own (the retry) or ahead of a command.
  fs.unlinkSync(filler);
  await until('the waiting facts are journaled and moved into SQLite', () => {
    const s = JSON.parse(d.cli(['status', '--json']).stdout);
    return s.factsWaiting === null && s.journalTrouble === null && s.journalMovedSeq === s.lastSeq;
  }, 120_000);
  assert.is(d.cli(['acquire', '--vm', uuid(900_000), disk(900_000)]).code, 0);

  // The disk's history, as an operator asks it.
  const history = JSON.parse(d.cli(['audit', '--disk', disk(1), '--json', '--limit', '0']).stdout) as Array<{ seq: number; kind: string; disk: string | null; payload: any }>;
  const audit = (kind: string) => history.filter((f) => f.kind === kind);
  const lostFacts = audit('LeaseLost').filter((f) => f.disk === disk(1));
  assert.is(lostFacts.length, 1, `audit shows no LeaseLost for the replaced lock file: ${JSON.stringify(history)}`);
  assert.match(lostFacts[0]!.payload.reason, /replaced/);
  assert.is(lostFacts[0]!.payload.owner.uuid, uuid(1));
  const retaken = audit('Reacquired').filter((f) => f.disk === disk(1));
  assert.is(retaken.length, 1);
  assert.ok(retaken[0]!.seq > lostFacts[0]!.seq, 'Reacquired journaled before its LeaseLost');
  // Nothing that happened after them is journaled before them.
  const later = JSON.parse(d.cli(['audit', '--disk', disk(900_000), '--json']).stdout) as Array<{ seq: number; kind: string }>;
  assert.is(later[0]?.kind, 'LockAcquired');
  assert.ok(later[0]!.seq > retaken[0]!.seq);

  await d.kill('SIGTERM');
  const v = cli(['journal', 'verify', '--state-dir', state]);
  assert.is(v.code, 0, v.stdout + v.stderr);
});

test.run();
