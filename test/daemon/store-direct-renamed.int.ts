// review27 F4 under systemd (through test/helpers/systemd.ts's confined sandbox): `systemctl restart`
// of the shipped unit hands the store's descriptors back, and adoption goes through the same adopt()
// as `serve --takeover`. A disk locked in place and renamed under its lock (a new file at its old
// path) was compared with the old path: the stored description was closed (or the new file locked
// instead), and the VM's disk was free for anyone. Now the descriptor is judged by the journaled
// identity: adopted 1, lost 0, the renamed disk still refused to another daemon.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, UUID1, UUID2, cli, tmpdir, until } from '../helpers/daemon.js';
import { Sandbox, shippedUnit } from '../helpers/systemd.js';

const UNIT = 'vmlockd.service';
const test = suite('systemd: a restart keeps a direct lock on a disk renamed under its lock (review27 F4)');
let sb: Sandbox | undefined;
let other: TestDaemon | undefined;
process.on('exit', () => sb?.stop());
test.after.each(async () => {
  await other?.kill('SIGKILL');
  other = undefined;
  sb?.stop();
  sb = undefined;
});

test('systemctl restart: the renamed disk stays locked (adopted 1, lost 0), the new file at its old path is not', async () => {
  const root = tmpdir('vmlockd-store-direct-renamed-');
  const disk = path.join(root, 'a.img');
  const moved = path.join(root, 'a-moved.img');
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
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
  const acq = cli(['acquire', '--vm', UUID1, '--name', 'vm1', disk, '--socket', socket]);
  assert.is(acq.code, 0, acq.stderr);
  await until('the stored descriptor', () => statusOf()?.started?.fdStore?.stored >= 1);
  fs.renameSync(disk, moved);
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
  const before = statusOf()!.pid;
  const rs = s.ctl('restart', UNIT);
  assert.is(rs.code, 0, rs.out);
  const after = await until('the restarted daemon', () => {
    const x = statusOf();
    return x && x.pid !== before ? x : undefined;
  }, 30_000);
  const log = fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8');
  assert.equal({ how: after.started.how, adopted: after.started.adopted, retaken: after.started.retaken, lost: after.started.lost, locks: after.locks }, { how: 'store', adopted: 1, retaken: 0, lost: 0, locks: 1 }, log.split('\n').filter((l) => /LEASE|dropped|adopt|renamed/i.test(l)).join('\n'));
  assert.match(log, /renamed under its lock/);
  other = await new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }).start();
  const steal = other.cli(['acquire', '--vm', UUID2, '--name', 'vm2', moved]);
  assert.is(steal.code, 3, `vm2 must be refused ${moved} (vm1's disk, renamed): ${steal.stdout}${steal.stderr}`);
  assert.is(other.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]).code, 0, 'the new file at the old path is another disk, locked by nobody');
});

test.run();
