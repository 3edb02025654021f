// review26a F4 (HIGH): a take-over dropped every direct lock on a block device. `serve --takeover` (and a
// restart handed systemd's store) adopts a descriptor only if fstatId calls it a regular file
// (locker.ts adopt: `mine.type !== 'file'`); a block device node (a disk locked in place with
// `--lockspace ""`, or by the virtlockd protocol's default lockspace, e.g. an LVM LV or a LUN) is
// "other", so the handed-over description is closed and the disk re-taken on a new one, which the old
// daemon's description (held until UP) refuses: LEASE LOST "another owner held the lock", and once the
// old daemon exits nobody holds the device while its VM runs. Fixed: fstatId says "block" for a block
// device, and adopt() keeps it for a direct resource whose path names that very node (dev, ino).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, tmpdir } from '../helpers/daemon.js';

const test = suite('a take-over keeps direct locks on block devices (review26a F4)');
const running: TestDaemon[] = [];
let loop: string | undefined;
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
  if (loop) execFileSync('losetup', ['-d', loop]);
  loop = undefined;
});

test('direct lock on a loop device survives serve --takeover', async () => {
  const root = tmpdir('vmlockd-r26a-f5-');
  const backing = path.join(root, 'backing.img');
  fs.writeFileSync(backing, Buffer.alloc(1 << 20));
  loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  const opts = { stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock') };
  const a = new TestDaemon(opts);
  running.push(await a.start());
  const acq = a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', loop]);
  assert.is(acq.code, 0, acq.stderr);
  const next = new TestDaemon({ ...opts, extra: ['--takeover'] });
  running.push(next);
  await next.start(30_000);
  assert.equal(await a.exit!, { code: 0, signal: null }, a.stderr);
  const st = JSON.parse(next.cli(['status', '--json']).stdout);
  assert.equal({ adopted: st.started.adopted, lost: st.started.lost, locks: st.locks }, { adopted: 1, lost: 0, locks: 1 }, `${next.stdout}${next.stderr}`);
  assert.is(st.started.directUnproven, undefined, 'adopted: no gap');
  // The device is still held with the old daemon gone: another daemon's VM is refused it.
  const other = new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') });
  running.push(await other.start());
  const steal = other.cli(['acquire', '--vm', UUID2, '--name', 'vm2', loop]);
  assert.is(steal.code, 3, `vm2 must be refused ${loop}: ${steal.stdout}${steal.stderr}`);
});

test.run();
