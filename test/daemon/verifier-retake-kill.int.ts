// wait27 (MEDIUM): on a full state directory the verifier's re-take wrote this host's holder record
// into the lock file while its LeaseLost and Reacquired still waited in memory (decision 0026). A
// SIGKILL then lost both, and the record (this host, a generation above the journal's) hid the host
// that held the disk while the lock was gone: the next start read it as its own (facts lost with the
// journal) and recorded no loss. Now the record waits for those facts to be durable (Locker.retake,
// recordRetakes()); the next start finds the other host's record and records the LeaseLost.
// A real 8 MiB tmpfs state directory, filled; the daemon's lock dropped through its own description
// (pidfd_getfd: a lock the filesystem dropped); another host's free record in the lock file (what
// its take and release in that window leave); SIGKILL; a restart with room again; a real audit.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { decodeExclusive, encodeExclusive } from '../../src/engine/holder-record.js';
import { ROOT, TestDaemon, until } from '../helpers/daemon.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `eeeeeeee-0000-4000-8000-${String(i).padStart(12, '0')}`;

function head(file: string) {
  const buf = Buffer.alloc(512);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, buf, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
  return decodeExclusive(buf);
}

test('a verifier re-take on a full state directory, SIGKILLed before its facts are journaled: the next start records the loss', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const opts = { stateDir: state, lockspace, hostId: 'hv-a', socket: path.join(dir, 'vmlockd.sock'), extra: ['--verify-interval', '1'] };
  const d = new TestDaemon(opts);
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(1), '--name', 'lost-vm', disk(1)]).code, 0);
  const file = JSON.parse(d.cli(['who', disk(1), '--json']).stdout).file as string;
  const mine = head(file)!;
  assert.is(mine.host, 'hv-a');

  const filler = fill(state);
  let refused = false;
  for (let i = 3; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');

  // What hv-b's take and release leave while hv-a's lock is gone (written first, so the verifier
  // cannot re-take between the drop and hv-b's record), then the lock drops.
  const intruder = { v: 1, mode: 'free' as const, gen: mine.gen + 1, host: 'hv-b', pid: 4242, since: new Date().toISOString(), disk: disk(1), vm: { uuid: uuid(99), name: 'intruder' } };
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, encodeExclusive(intruder), 0, 512, 0);
  fs.closeSync(fd);
  const drop = spawnSync('python3', [path.join(ROOT, 'test', 'helpers', 'drop-lock.py'), String(d.proc!.pid), file, '0:0'], { encoding: 'utf8' });
  assert.is(drop.status, 0, drop.stderr);
  assert.ok(Number(drop.stdout.trim()) >= 1, 'no descriptor of the daemon names the lock file');

  await until('the verifier\'s LeaseLost and Reacquired wait for room', () => {
    const st = JSON.parse(d.cli(['status', '--json']).stdout);
    return (st.factsWaiting?.kinds?.LeaseLost ?? 0) >= 1 && (st.factsWaiting?.kinds?.Reacquired ?? 0) >= 1;
  }, 60_000);
  assert.is(head(file)?.host, 'hv-b', `the re-take wrote its record while its facts wait: ${JSON.stringify(head(file))}`);

  await d.kill('SIGKILL');
  fs.unlinkSync(filler);
  const next = new TestDaemon(opts);
  daemons.push(next);
  await next.start();
  const history = JSON.parse(next.cli(['audit', '--disk', disk(1), '--json', '--limit', '0']).stdout) as Array<{ kind: string; payload: any }>;
  const lost = history.filter((f) => f.kind === 'LeaseLost');
  assert.is(lost.length, 1, `the loss is in no fact: ${JSON.stringify(history.map((f) => f.kind))}`);
  assert.is(lost[0]!.payload.holder?.host, 'hv-b', JSON.stringify(lost[0]!.payload));
  assert.is(lost[0]!.payload.owner.uuid, uuid(1));
  // Held again, and the record is this host's once the start's facts are journaled.
  await until('this host\'s record written after the start\'s facts', () => head(file)?.host === 'hv-a', 30_000);
  assert.ok(head(file)!.gen > intruder.gen);
});

test.run();
