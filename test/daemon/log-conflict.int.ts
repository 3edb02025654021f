// The CONFLICT log line names the disk, the VM and the seq of the LeaseLost it reports (review14), so
// `journalctl VMLOCKD_DISK=...` or a JSON filter on disk finds it and `vmlockd audit` joins it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, UUID1, UUID2, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});

const DROP_LOCK = path.join(ROOT, 'test', 'helpers', 'drop-lock.py');

test('the JSON CONFLICT line names the disk, the VM and the seq of the fact it reports', async () => {
  const root = tmpdir('vmlockd-r14-conflict-');
  const disk = path.join(root, 'a.img');
  fs.writeFileSync(disk, '');
  // A verifies every 3 s: B takes the disk between A's loss and A's next round.
  const a = await startDaemon({ stateDir: path.join(root, 'state-h1'), lockspace: path.join(root, 'ls'), hostId: 'h1', extra: ['--verify-interval', '3', '--log-format', 'json', '--log-level', 'debug'] });
  running.push(a);
  const b = await startDaemon({ stateDir: path.join(root, 'state-h2'), lockspace: path.join(root, 'ls'), hostId: 'h2' });
  running.push(b);
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  const file = JSON.parse(a.cli(['who', disk, '--json']).stdout).file as string;
  // B must ask between A's loss and A's next round; on a loaded machine A may take it back first
  // (a LeaseLost and a re-take, no conflict): then drop it again.
  await until('B takes the disk A lost', () => {
    const r = spawnSync('python3', [DROP_LOCK, String(a.proc!.pid), file], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    return b.cli(['acquire', '--vm', UUID2, '--name', 'web2', disk]).code === 0;
  }, 60_000);
  const line = await until('the CONFLICT line', () => a.stderr.split('\n').find((l) => l.includes('"event":"Conflict"')), 30_000);
  const conflict = JSON.parse(line);
  const lost = a.stderr.split('\n').filter((l) => l.includes('"event":"LeaseLost"')).map((l) => JSON.parse(l));
  assert.ok(lost.length > 0, 'a LeaseLost line');
  // Expected: the conflict line is about disk a.img, VM web1, and names the seq of its fact.
  assert.is(conflict.disk, disk, `disk field on the CONFLICT line: ${line}`);
  assert.is(conflict.vm, 'web1', `vm field on the CONFLICT line: ${line}`);
  assert.type(conflict.seq, 'number', `seq on the CONFLICT line: ${line}`);
  // The same fields as every source's CONFLICT line (test/events/conflict-lines.int.ts): who holds it.
  assert.is(conflict.holder, 'web2', `holder on the CONFLICT line: ${line}`);
  assert.is(conflict.holderHost, 'h2', `holderHost on the CONFLICT line: ${line}`);
  assert.ok(lost.some((l) => l.seq === conflict.seq && l.disk === disk), `the seq is the LeaseLost's: ${line}`);
});

test.run();
