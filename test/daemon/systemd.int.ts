// Invariant 9 under the real systemd of the machine (Debian 12: systemd 252): the shipped unit,
// run by a user manager confined to its own cgroup and mount namespace (test/helpers/systemd-sandbox,
// docs/ci.md: an unconfined `systemd --user` adopts every process of the machine). Another host
// hammers `acquire` on the held disks through a SIGKILL of the daemon (Restart=always) and a
// `systemctl restart`: it must get nothing. After `systemctl stop` it gets everything.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { MAIN, TestDaemon, UUID1, UUID2, cli, until } from '../helpers/daemon.js';
import { Sandbox, sandboxHost, shippedUnit } from '../helpers/systemd.js';

const UNIT = 'vmlockd.service';

/** The shipped unit with this checkout's paths; logs to a file (no journald in the sandbox). */
function testUnit(dir: string, state: string, socket: string, lockspace: string): string {
  const shipped = shippedUnit(UNIT);
  const exec = `ExecStart=${process.execPath} ${MAIN} serve --state-dir ${state} --socket ${socket} --lockspace ${lockspace} --host-id hv-sd-a`;
  let unit = shipped
    .split('\n')
    // State and runtime directories are the test's own (the sandbox shares the host's filesystem).
    .filter((l) => !/^(StateDirectory|RuntimeDirectory)/.test(l))
    .map((l) => (l.startsWith('ExecStart=') ? exec : l))
    .join('\n');
  unit = unit.replace('[Service]\n', `[Service]\nStandardOutput=append:${dir}/vmlockd.log\nStandardError=append:${dir}/vmlockd.log\n`);
  assert.match(unit, 'Type=notify');
  assert.match(unit, 'FileDescriptorStoreMax=');
  assert.match(unit, 'Restart=always');
  return unit;
}

const test = suite('systemd: the descriptor store keeps every lock through a crash and a restart');

let sb: Sandbox | undefined;
let other: TestDaemon | undefined;
let hammering = false;
// A test process that dies half-way must not leave a manager behind.
process.on('exit', () => {
  sb?.stop();
});

test.after.each(async () => {
  hammering = false;
  await other?.kill('SIGKILL');
  other = undefined;
  if (sb) {
    const r = sb.stop();
    sb = undefined;
    assert.is(r.code, 0, `systemd-sandbox stop: ${r.out}`);
  }
});

test('SIGKILL (Restart=always) and `systemctl restart` leave another host nothing; `systemctl stop` frees every disk', async () => {
  assert.is(process.getuid?.(), 0, 'the systemd test runs as root (CI does)');
  assert.ok(fs.existsSync('/lib/systemd/systemd'), '/lib/systemd/systemd is missing: .ci/install-system.sh installs systemd');
  const pid1Before = fs.readFileSync('/proc/1/cgroup', 'utf8');
  const { root, lockspace, disks, state } = sandboxHost('vmlockd-sd-');
  const socket = path.join(root, 'a.sock');

  sb = Sandbox.start(path.join(root, 'sandbox'));
  const s = sb;
  s.install(UNIT, testUnit(root, state, socket, lockspace));
  const ctl = (...args: string[]) => s.ctl(...args);
  assert.is(ctl('daemon-reload').code, 0);
  // Type=notify: `start` returns once the daemon said READY=1.
  const st = ctl('start', UNIT);
  assert.is(st.code, 0, `start: ${st.out}\n${fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8')}`);
  const mainPid = () => Number(/MainPID=(\d+)/.exec(ctl('show', '-p', 'MainPID', UNIT).out)?.[1] ?? 0);
  const activeState = () => /ActiveState=(\w+)/.exec(ctl('show', '-p', 'ActiveState', UNIT).out)?.[1];
  assert.is(activeState(), 'active');
  const pidA = mainPid();
  assert.ok(pidA > 0);

  const acq = cli(['acquire', '--vm', UUID1, '--name', 'vm-a', ...disks, '--socket', socket]);
  assert.is(acq.code, 0, acq.stderr);
  const statusOf = () => {
    const r = cli(['status', '--json', '--socket', socket]);
    return r.code === 0 ? (JSON.parse(r.stdout) as Record<string, any>) : undefined;
  };
  await until('the stored descriptors', () => statusOf()?.started?.fdStore?.stored >= 4);

  // Another host on the same lockspace.
  other = await new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace, hostId: 'hv-sd-b', socket: path.join(root, 'b.sock') }).start();
  let attempts = 0;
  const stolen: string[] = [];
  hammering = true;
  const hammer = (async () => {
    while (hammering) {
      for (const d of disks) {
        try {
          const r = await call(other!.socket, 'POST', '/v1/acquire', { vm: { uuid: UUID2, name: 'vm-b' }, disks: [{ path: d }] });
          attempts++;
          const body = r.body as { status?: string };
          if (r.status === 200 && body.status === 'ok') stolen.push(d);
        } catch {
          if (!hammering) return;
        }
      }
    }
  })();

  // 1. SIGKILL: systemd restarts it; the store hands the descriptors back.
  const killed = ctl('kill', '--signal=SIGKILL', '--kill-who=main', UNIT);
  assert.is(killed.code, 0, killed.out);
  await until('the restart after SIGKILL', () => {
    const p = mainPid();
    return p > 0 && p !== pidA && activeState() === 'active' && statusOf()?.pid === p;
  }, 30_000);
  const afterKill = statusOf()!;
  const attemptsAfterKill = attempts;

  // 2. `systemctl restart` (the upgrade): the same.
  const pidB = mainPid();
  const rs = ctl('restart', UNIT);
  assert.is(rs.code, 0, rs.out);
  await until('the restarted daemon', () => mainPid() !== pidB && statusOf()?.pid === mainPid(), 30_000);
  const afterRestart = statusOf()!;
  // Keep hammering a little after the restart, then look.
  const until2 = attempts + 8;
  await until('more attempts', () => attempts >= until2, 30_000);
  hammering = false;
  await hammer;
  assert.equal(stolen, [], `another host acquired ${stolen.join(', ')} during a restart`);
  assert.ok(attemptsAfterKill >= 4 && attempts >= 12, `the hammer ran (${attempts} attempts)`);
  for (const st of [afterKill, afterRestart]) {
    assert.is(st.locks, 4);
    assert.equal({ how: st.started.how, adopted: st.started.adopted, retaken: st.started.retaken, lost: st.started.lost }, { how: 'store', adopted: 4, retaken: 0, lost: 0 });
  }

  // STATUS= reaches the manager; a reload (ExecReload: SIGHUP; RELOADING=1 ... READY=1) ends active.
  await until('the STATUS= line', () => /StatusText=4 lock\(s\)/.test(ctl('show', '-p', 'StatusText', UNIT).out));
  const rl = ctl('reload', UNIT);
  assert.is(rl.code, 0, rl.out);
  await until('active after the reload', () => activeState() === 'active');
  assert.is(statusOf()!.locks, 4);

  // The journal tells how: DaemonStarted start=store, Reacquired how=adopted.
  const facts = JSON.parse(cli(['audit', '--kind', 'DaemonStarted,Reacquired,LeaseLost', '--json', '--limit', '0', '--socket', socket]).stdout) as Array<{ kind: string; payload: Record<string, unknown> }>;
  const starts = facts.filter((f) => f.kind === 'DaemonStarted').map((f) => f.payload.start);
  assert.equal(starts.slice(-2), ['store', 'store'], JSON.stringify(starts));
  assert.is(facts.filter((f) => f.kind === 'Reacquired' && f.payload.how === 'adopted').length, 8);
  assert.is(facts.filter((f) => f.kind === 'LeaseLost').length, 0);

  // 3. `systemctl stop` empties the store: the other host gets every disk.
  assert.is(ctl('stop', UNIT).code, 0);
  const got = new Set<string>();
  await until(
    'the other host acquiring every disk after `systemctl stop`',
    () => {
      for (const d of disks) {
        if (got.has(d)) continue;
        const r = other!.cli(['acquire', '--vm', UUID2, '--name', 'vm-b', d]);
        if (r.code === 0) got.add(d);
      }
      return got.size === disks.length;
    },
    30_000,
  );

  const r = s.stop();
  sb = undefined;
  assert.is(r.code, 0, `systemd-sandbox stop: ${r.out}`);
  assert.is(fs.readFileSync('/proc/1/cgroup', 'utf8'), pid1Before, "PID 1's cgroup changed");
});

test.run();
