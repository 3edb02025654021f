// review26a F3 (the review's repro): a SIGKILL during the start's re-take must not erase the proof of a
// gap intrusion. Host A holds disk D exclusive (first in the journal) and 2,500 others; A's daemon is
// SIGKILLed; host B takes D and releases it (B's record, a higher generation, is the proof: decision
// 0020). A starts: its re-take of D reads B's record. Before the fix it wrote its own record over it at
// once and went on re-taking the other 2,500 locks, the facts (LeaseLost, Reacquired) journaled only
// after the whole loop: a SIGKILL inside that loop (a crash loop, a start timeout, an OOM kill) left A's
// own record on D and nothing in the journal, and the next start raised no alarm at all. Now the record
// is written only once the LeaseLost is journaled: A is killed the moment D's record is its own again,
// and the LeaseLost is in the journal (the next start must also come up and hold D again).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, startDaemon, tmpdir } from '../helpers/daemon.js';
import { journalFacts } from '../helpers/settled.js';
import { tracked } from '../helpers/tracked.js';

const { running, track } = tracked(test);
const MANY = 2500;

function recordOf(file: string): { host?: string; gen?: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(512);
    const n = fs.readSync(fd, buf, 0, 512, 0);
    const text = buf.subarray(0, n).toString('utf8').replace(/\0/g, '').trim();
    return JSON.parse(text);
  } catch {
    return {};
  } finally {
    fs.closeSync(fd);
  }
}

test('an intrusion found by a re-take that is SIGKILLed before its facts are journaled is still reported at the next start', async () => {
  const root = tmpdir('vmlockd-r26a-f3-');
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const d = path.join(images, 'D.qcow2');
  fs.writeFileSync(d, '');
  const others = Array.from({ length: MANY }, (_, i) => path.join(images, `o${i}.qcow2`));
  for (const o of others) fs.writeFileSync(o, '');
  const aOpts = { stateDir: path.join(root, 'state-a'), lockspace, hostId: 'hv-a', socket: path.join(root, 'a.sock') };
  const a = await track(startDaemon(aOpts));
  const b = await track(startDaemon({ stateDir: path.join(root, 'state-b'), lockspace, hostId: 'hv-b', socket: path.join(root, 'b.sock') }));
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', d]).code, 0);
  for (let i = 0; i < MANY; i += 500) {
    const r = a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', ...others.slice(i, i + 500)]);
    assert.is(r.code, 0, r.stderr);
  }
  const lockFile = fs.readdirSync(lockspace).map((f) => path.join(lockspace, f)).find((f) => fs.statSync(f).isFile() && fs.readFileSync(f, 'utf8').includes('D.qcow2'))!;
  assert.ok(lockFile, 'the lock file of D');
  const takenGen = recordOf(lockFile).gen!;
  await a.kill('SIGKILL');
  // The gap: vm2 on host B gets vm1's disk, then lets it go.
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', d]).code, 0);
  assert.is(b.cli(['release', '--vm', UUID2, d]).code, 0);
  const intruder = recordOf(lockFile);
  assert.is(intruder.host, 'hv-b');
  // A starts; killed as soon as its re-take has written its own record over B's.
  const starting = new TestDaemon(aOpts);
  const up = starting.start(120_000).catch(() => undefined);
  let killed = false;
  for (const end = Date.now() + 120_000; Date.now() < end; ) {
    const r = recordOf(lockFile);
    if (r.host === 'hv-a' && (r.gen ?? 0) > (intruder.gen ?? 0)) {
      await starting.kill('SIGKILL');
      killed = true;
      break;
    }
    // A poll, not an assertion: the kill must land as soon as D's record is A's again.
    await new Promise((res) => setTimeout(res, 2));
  }
  await up;
  assert.ok(killed, 'the start wrote its own record on D');
  // The next start: B's record is overwritten only after the LeaseLost was journaled.
  const again = new TestDaemon(aOpts);
  running.push(await again.start(120_000));
  assert.is(recordOf(lockFile).host, 'hv-a', 'the next start holds D again for vm1');
  const lost = journalFacts(aOpts.stateDir, 'LeaseLost').filter((f) => f.payload.disk === d);
  assert.ok(
    lost.length > 0 || /LEASE LOST: disk [^\n]*D\.qcow2/.test(again.stderr),
    `vm1's disk was taken by host B in the gap (record hv-b gen ${intruder.gen}, A's take journaled gen ${takenGen}); after a SIGKILL during the re-take no LeaseLost and no LEASE LOST line; the lock file now says ${JSON.stringify(recordOf(lockFile))}; the killed start logged: ${JSON.stringify((starting.stdout + starting.stderr).slice(-600))}`,
  );
});

test.run();
