// A restart (upgrade postinst, crash) with a config the daemon rejects must never free the held
// locks (review14 HIGH 1): the shipped unit has no start limit (StartLimitIntervalSec=0), so systemd
// keeps restarting it and keeps its descriptor store; every failed start says how many locks wait.
// RestartSec is shortened here (100 ms, the unit's old value) so that the default start limit, were
// it in force, would be hit within a second or two.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { MAIN, TestDaemon, UUID1, UUID2, cli, until } from '../helpers/daemon.js';
import { Sandbox, sandboxHost, setUnitKey, shippedUnit } from '../helpers/systemd.js';

const UNIT = 'vmlockd.service';
let sb: Sandbox | undefined;
let other: TestDaemon | undefined;
process.on('exit', () => sb?.stop());

test.after.each(async () => {
  await other?.kill('SIGKILL');
  other = undefined;
  if (sb) {
    sb.ctl('stop', UNIT);
    const r = sb.stop();
    sb = undefined;
    assert.is(r.code, 0, `systemd-sandbox stop: ${r.out}`);
  }
});

test('a restart with a config the daemon rejects keeps the held locks while systemd retries, and a fixed config adopts them', async () => {
  assert.is(process.getuid?.(), 0, 'root (the systemd sandbox)');
  const pid1 = fs.readFileSync('/proc/1/cgroup', 'utf8');
  const { root, lockspace, disks, state } = sandboxHost('vmlockd-r14-conf-');
  const socket = path.join(root, 'a.sock');
  const conf = path.join(root, 'vmlockd.conf');
  fs.writeFileSync(conf, `state_dir = "${state}"\nsocket = "${socket}"\nfile_lockspace_dir = "${lockspace}"\nhost_id = "hv-a"\n`);
  const log = path.join(root, 'vmlockd.log');
  let unit = shippedUnit(UNIT);
  // Only what a sandbox needs changes: this checkout's binary on its config file, logs to a file.
  unit = setUnitKey(unit, 'Service', 'ExecStart', `${process.execPath} ${MAIN} serve --config ${conf}`);
  unit = setUnitKey(unit, 'Service', 'StateDirectory', null);
  unit = setUnitKey(unit, 'Service', 'StateDirectoryMode', null);
  unit = setUnitKey(unit, 'Service', 'RuntimeDirectory', null);
  unit = setUnitKey(unit, 'Service', 'RuntimeDirectoryPreserve', null);
  unit = setUnitKey(unit, 'Service', 'RuntimeDirectoryMode', null);
  unit = setUnitKey(unit, 'Service', 'StandardOutput', `append:${log}`);
  unit = setUnitKey(unit, 'Service', 'StandardError', `append:${log}`);
  unit = unit.replace(/^Wants=.*$/m, 'Wants=network-online.target').replace(/^After=.*$/m, 'After=network-online.target');
  assert.match(unit, /^Restart=always$/m);
  unit = setUnitKey(unit, 'Service', 'RestartSec', '100ms');

  sb = Sandbox.start(path.join(root, 'sandbox'));
  const s = sb;
  s.install(UNIT, unit);
  assert.is(s.ctl('daemon-reload').code, 0);
  const st = s.ctl('start', UNIT);
  const unitLog = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
  assert.is(st.code, 0, `start: ${st.out}\n${unitLog()}`);
  const status = () => {
    const r = cli(['status', '--json', '--socket', socket]);
    return r.code === 0 ? (JSON.parse(r.stdout) as Record<string, any>) : undefined;
  };
  const acq = cli(['acquire', '--vm', UUID1, '--name', 'vm-a', disks[0]!, '--socket', socket]);
  assert.is(acq.code, 0, acq.stderr);
  await until('the lock in the descriptor store', () => status()?.started?.fdStore?.stored >= 1, 30_000);

  // The operator's mistake in the config file: the running daemon rejects it and serves on.
  fs.appendFileSync(conf, 'on_conflict = "supend"\n');
  await until('the live reload rejected the file', () => /config rejected/.test(unitLog()), 30_000);
  assert.ok(status() !== undefined, 'still serving after the rejected reload');

  // The upgrade's postinst (or a crash and Restart=always): a restart.
  await s.ctlAsync('restart', UNIT);
  // Far past the default start limit (5 starts in 10 s), the unit is still trying, not failed.
  await until('the unit restarted 8 times (or failed)', () => Number(s.show(UNIT, 'NRestarts')) >= 8 || s.show(UNIT, 'ActiveState') === 'failed', 90_000);
  assert.is.not(s.show(UNIT, 'ActiveState'), 'failed', `the unit gave up (${s.show(UNIT, 'Result')}): systemd emptied the descriptor store\n${unitLog().split('\n').slice(-6).join('\n')}`);
  assert.match(unitLog(), /on_conflict must be/);
  assert.match(unitLog(), /1 held disk lock\(s\) wait in systemd's file descriptor store/);

  // Another host on the same lockspace asks for the disk VM a still runs on: refused.
  other = await new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace, hostId: 'hv-b', socket: path.join(root, 'b.sock') }).start();
  const r = await call(other.socket, 'POST', '/v1/acquire', { vm: { uuid: UUID2, name: 'vm-b' }, disks: [{ path: disks[0]! }] });
  const granted = r.status === 200 && (r.body as { status?: string }).status === 'ok';
  assert.is(granted, false, `another host got the disk of a running VM after a restart with a rejected config (unit ${s.show(UNIT, 'ActiveState')}/${s.show(UNIT, 'Result')}, NRestarts ${s.show(UNIT, 'NRestarts')})\n${unitLog().split('\n').slice(-6).join('\n')}`);

  // The operator fixes the file: the next restart serves and adopts the lock it held all along.
  fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace('on_conflict = "supend"\n', ''));
  await until('serving again', () => status() !== undefined, 60_000);
  const st2 = status()!;
  assert.is(st2.started?.how, 'store', JSON.stringify(st2.started));
  const locks = cli(['locks', '--json', '--socket', socket]);
  assert.is(locks.code, 0, locks.stderr);
  assert.ok(locks.stdout.includes(disks[0]!), locks.stdout);
  assert.is(fs.readFileSync('/proc/1/cgroup', 'utf8'), pid1);
});

test.run();
