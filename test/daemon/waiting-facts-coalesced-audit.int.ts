// aud31 MEDIUM 2 (review30), end to end: past the bound of waiting facts on a full state directory a
// holding's loss / re-take facts are coalesced (the last LeaseLost and the last Reacquired after it).
// Lost, re-taken, lost, re-taken journals the second pair only, so `audit --at` a moment in the FIRST
// loss said the disk was held, unmarked. Now the FactsDropped lists the coalesced holding and its range,
// and `audit --at` there says the answer is incomplete.
//
// A real daemon, a real 8 MiB tmpfs state directory filled to ENOSPC, bound 0
// (VMLOCKD_TEST_WAITING_FACTS_MAX), a real lock file replaced by a directory twice (the verifier's
// LeaseLost, its re-take failing) and given back twice (Reacquired).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { TestDaemon, until } from '../helpers/daemon.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

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

test('lost, re-taken, lost, re-taken on a full disk past the bound: audit --at the first loss is marked incomplete', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock'), extra: ['--verify-interval', '1'], env: { VMLOCKD_TEST_WAITING_FACTS_MAX: '0' } });
  daemons.push(d);
  await d.start();
  assert.is(d.cli(['acquire', '--vm', uuid(1), '--name', 'kept-vm', disk(1)]).code, 0);
  const file = JSON.parse(d.cli(['who', disk(1), '--json']).stdout).file as string;

  const filler = fill(state);
  let refused = false;
  for (let i = 3; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');

  let inFirstLoss = '';
  for (let round = 0; round < 2; round++) {
    fs.unlinkSync(file);
    fs.mkdirSync(file);
    await until(`loss ${round + 1}: the daemon lists the disk free`, () => holderOf(d, disk(1)) === undefined, 60_000);
    assert.not.ok(kernelHeld(lockspace, disk(1)));
    if (round === 0) {
      await new Promise((r) => setTimeout(r, 50));
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

  const history = JSON.parse(d.cli(['audit', '--disk', disk(1), '--json', '--limit', '0']).stdout) as Array<{ kind: string }>;
  assert.equal(history.map((f) => f.kind).filter((k) => k !== 'LockAcquired'), ['LeaseLost', 'Reacquired'], 'the first pair was coalesced away');
  const a = d.cli(['audit', '--disk', disk(1), '--at', inFirstLoss, '--json']);
  assert.is(a.code, 0, a.stderr);
  const answer = JSON.parse(a.stdout) as { holders: unknown[]; incomplete?: Array<{ owner: string; count: number; from: string; to: string }> };
  assert.ok(answer.incomplete !== undefined, `audit --at ${inFirstLoss} (the lock lost) answered ${answer.holders.length} holder(s) with no mark: ${a.stdout}`);
  assert.is(answer.incomplete.length, 1);
  assert.is(answer.incomplete[0]!.owner, uuid(1));
  assert.is(answer.incomplete[0]!.count, 2);
  assert.ok(answer.incomplete[0]!.from <= inFirstLoss && inFirstLoss < answer.incomplete[0]!.to);
  const text = d.cli(['audit', '--disk', disk(1), '--at', inFirstLoss]);
  assert.match(text.stdout, /journal's disk was full on this host; 2 loss\/re-take fact\(s\) of kept-vm's lock/);
  const list = d.cli(['audit', '--disk', disk(1)]);
  assert.match(list.stderr, /were coalesced/);
  await d.kill('SIGTERM');
});

test.run();
