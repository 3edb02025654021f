// review28b (fix28b a48ceb5, black-box): two real daemons in direct mode (`--lockspace ""`) share one
// disk image. (1) Rounds of A's verifier while B shares the disk throughout: no false loss from the
// fdinfo check. (2) A's own read lock is dropped from its very description (pidfd_getfd + F_UNLCK,
// test/helpers/drop-lock.py) while B's read lock keeps the disk "held": A's verifier records the
// LeaseLost and re-takes the disk (before a48ceb5 the re-assert took it again unseen).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, UUID2, startDaemon, tmpdir } from '../helpers/daemon.js';
import { journalFacts } from '../helpers/settled.js';
import { tracked } from '../helpers/tracked.js';

const { running, track } = tracked(test);
const DROP_LOCK = path.join(ROOT, 'test', 'helpers', 'drop-lock.py');

const status = (d: TestDaemon): any => JSON.parse(d.cli(['status', '--json']).stdout);

async function rounds(d: TestDaemon, n: number): Promise<void> {
  const seen = new Set<string>([status(d).verifiedAt]);
  const end = Date.now() + 30_000;
  while (seen.size <= n && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    seen.add(status(d).verifiedAt);
  }
  assert.ok(seen.size > n, `${n} clean verification rounds`);
}

test('direct shared disk, another host sharing it: no false loss over verifier rounds; our read lock dropped from our description: LeaseLost, then re-taken', async () => {
  const root = tmpdir('vmlockd-r28b-direct-shared-');
  const img = path.join(root, 'shared.img');
  fs.writeFileSync(img, 'image');
  const a = await track(startDaemon({ stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock'), extra: ['--verify-interval', '1'] }));
  const b = await track(startDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }));
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', '--shared', img]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', '--shared', img]).code, 0);
  await rounds(a, 3);
  assert.equal(journalFacts(a.opts.stateDir, 'LeaseLost'), [], 'no false loss while another host shares the disk');

  const drop = spawnSync('python3', [DROP_LOCK, String(a.proc!.pid), img, '0:1'], { encoding: 'utf8' });
  assert.is(drop.status, 0, drop.stderr);
  assert.ok(Number(drop.stdout.trim()) >= 1, 'no descriptor of daemon A names the image');
  const end = Date.now() + 20_000;
  while (journalFacts(a.opts.stateDir, 'Reacquired').length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
  const lost = journalFacts(a.opts.stateDir, 'LeaseLost');
  assert.is(lost.length, 1, `the dropped read lock is a loss: ${JSON.stringify(lost)}\n${a.stderr}`);
  assert.match(String(lost[0]!.payload.reason), /read\) lock is gone/);
  assert.is(journalFacts(a.opts.stateDir, 'Reacquired').length, 1, 'and re-taken');
  await rounds(a, 2);
  assert.is(journalFacts(a.opts.stateDir, 'LeaseLost').length, 1, 'one loss, no repeat once re-taken');
  // Still exclusive access is refused to a third VM on B (both read locks hold).
  assert.is(b.cli(['acquire', '--vm', '00000003-0000-4000-8000-000000000003', '--name', 'vm3', img]).code, 3);
});

test('a take-over of a daemon holding a direct disk shared while another host shares it: adopted as proven (no unproven warning), no loss over verifier rounds', async () => {
  const root = tmpdir('vmlockd-r28b-direct-shared-to-');
  const img = path.join(root, 'shared.img');
  fs.writeFileSync(img, 'image');
  const opts = { stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock'), extra: ['--verify-interval', '1'] };
  const a = await track(startDaemon(opts));
  const b = await track(startDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }));
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', '--shared', img]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', '--shared', img]).code, 0);
  let cur = a;
  for (let i = 0; i < 2; i++) {
    const next = new TestDaemon({ ...opts, extra: [...opts.extra, '--takeover'] });
    running.push(next);
    await next.start(30_000);
    assert.equal(await cur.exit!, { code: 0, signal: null }, cur.stderr);
    cur = next;
  }
  const st = status(cur);
  assert.equal({ adopted: st.started.adopted, retaken: st.started.retaken, lost: st.started.lost }, { adopted: 1, retaken: 0, lost: 0 });
  assert.is(st.started.directUnproven, undefined, `a description handed over while it holds its read lock is proven: ${JSON.stringify(st.started)}`);
  assert.ok(!/continuity unproven/.test(cur.stdout + cur.stderr), cur.stdout + cur.stderr);
  await rounds(cur, 3);
  assert.equal(journalFacts(opts.stateDir, 'LeaseLost'), [], 'no false loss after the take-overs');
});

test.run();
