// review26a F4 (HIGH) under systemd (through test/helpers/systemd.ts's confined sandbox): `systemctl restart`
// of the shipped unit hands the store's descriptors back; a direct lock on a block device is not a
// regular file, so adopt() drops it (closes it, FDSTOREREMOVE) and re-takes it on a new description,
// which the store's copy still refuses: LEASE LOST, and the device is held by nobody afterwards.
// Fixed: activation accepts a block device descriptor (service.ts listenFds) and adopt() keeps it.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, UUID1, UUID2, cli, tmpdir, until } from '../helpers/daemon.js';
import { Sandbox, shippedUnit } from '../helpers/systemd.js';

const UNIT = 'vmlockd.service';
const test = suite('systemd: a restart keeps direct locks on block devices (review26a F4)');
let sb: Sandbox | undefined;
let loop: string | undefined;
let other: TestDaemon | undefined;
process.on('exit', () => sb?.stop());
test.after.each(async () => {
  await other?.kill('SIGKILL');
  other = undefined;
  sb?.stop();
  sb = undefined;
  if (loop) execFileSync('losetup', ['-d', loop]);
  loop = undefined;
});

test('systemctl restart: the loop device stays locked (adopted 1, lost 0)', async () => {
  const root = tmpdir('vmlockd-r26a-f4sd-');
  const backing = path.join(root, 'backing.img');
  fs.writeFileSync(backing, Buffer.alloc(1 << 20));
  loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  const state = path.join(root, 'state-a');
  const socket = path.join(root, 'a.sock');
  const exec = `ExecStart=${process.execPath} ${MAIN} serve --state-dir ${state} --socket ${socket} --lockspace "" --host-id hv-sd-a`;
  let unit = shippedUnit(UNIT)
    .split('\n')
    .filter((l) => !/^(StateDirectory|RuntimeDirectory)/.test(l))
    .map((l) => (l.startsWith('ExecStart=') ? exec : l))
    .join('\n');
  unit = unit.replace('[Service]\n', `[Service]\nStandardOutput=append:${root}/vmlockd.log\nStandardError=append:${root}/vmlockd.log\n`);
  sb = Sandbox.start(path.join(root, 'sandbox'));
  const s = sb;
  s.install(UNIT, unit);
  assert.is(s.ctl('daemon-reload').code, 0);
  const st = s.ctl('start', UNIT);
  assert.is(st.code, 0, `start: ${st.out}\n${fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8')}`);
  const statusOf = () => {
    const r = cli(['status', '--json', '--socket', socket]);
    return r.code === 0 ? (JSON.parse(r.stdout) as Record<string, any>) : undefined;
  };
  const acq = cli(['acquire', '--vm', UUID1, '--name', 'vm1', loop, '--socket', socket]);
  assert.is(acq.code, 0, acq.stderr);
  await until('the stored descriptor', () => statusOf()?.started?.fdStore?.stored >= 1);
  const before = statusOf()!.pid;
  const rs = s.ctl('restart', UNIT);
  assert.is(rs.code, 0, rs.out);
  const after = await until('the restarted daemon', () => {
    const x = statusOf();
    return x && x.pid !== before ? x : undefined;
  }, 30_000);
  const log = fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8');
  assert.equal({ how: after.started.how, adopted: after.started.adopted, lost: after.started.lost, locks: after.locks }, { how: 'store', adopted: 1, lost: 0, locks: 1 }, log.split('\n').filter((l) => /LEASE|dropped|adopt/i.test(l)).join('\n'));
  // The device is still held by the restarted daemon: another daemon's VM is refused it.
  other = await new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }).start();
  const steal = other.cli(['acquire', '--vm', UUID2, '--name', 'vm2', loop]);
  assert.is(steal.code, 3, `vm2 must be refused ${loop}: ${steal.stdout}${steal.stderr}`);
});

test.run();
