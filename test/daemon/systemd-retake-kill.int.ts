// review26a F3 under systemd (the shipped unit in a confined user manager, test/helpers/systemd.ts): a
// start that re-takes its locks after a gap hands each re-taken descriptor to the store. Before the
// fix, the descriptor of a disk whose lock file proved an intrusion went there at once, with this
// host's record already written over the proof; a SIGKILL before the start's facts were journaled
// (Restart=always) then had the next start adopt that descriptor, and adoption checks no gap: no
// LeaseLost ever. Now the descriptor (and the record) wait for the LeaseLost to be journaled.
//
// Host A first runs outside systemd (no store: its SIGKILL frees its locks, the gap), host B takes and
// releases A's disk D in the gap, then A starts under systemd with the same state directory and is
// SIGKILLed the moment D's record is its own again.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, UUID1, UUID2, cli, startDaemon, tmpdir, until } from '../helpers/daemon.js';
import { journalFacts } from '../helpers/settled.js';
import { Sandbox, shippedUnit } from '../helpers/systemd.js';

const UNIT = 'vmlockd.service';
const MANY = 2500;

function recordOf(file: string): { host?: string; gen?: number } {
  try {
    return JSON.parse(fs.readFileSync(file).subarray(0, 512).toString('utf8').replace(/\0/g, '').trim());
  } catch {
    return {};
  }
}

/** The shipped unit with this checkout's paths and host id hv-a; logs to a file (no journald in the sandbox). */
function testUnit(dir: string, state: string, socket: string, lockspace: string): string {
  const exec = `ExecStart=${process.execPath} ${MAIN} serve --state-dir ${state} --socket ${socket} --lockspace ${lockspace} --host-id hv-a`;
  const unit = shippedUnit(UNIT)
    .split('\n')
    .filter((l) => !/^(StateDirectory|RuntimeDirectory)/.test(l))
    .map((l) => (l.startsWith('ExecStart=') ? exec : l))
    .join('\n');
  assert.match(unit, 'FileDescriptorStoreMax=');
  assert.match(unit, 'Restart=always');
  return unit.replace('[Service]\n', `[Service]\nStandardOutput=append:${dir}/vmlockd.log\nStandardError=append:${dir}/vmlockd.log\n`);
}

const test = suite('systemd: a re-take killed before its LeaseLost is journaled leaves no proof-less descriptor in the store');

let sb: Sandbox | undefined;
const daemons: TestDaemon[] = [];
process.on('exit', () => {
  sb?.stop();
});

test.after.each(async () => {
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
  if (sb) {
    const r = sb.stop();
    sb = undefined;
    assert.is(r.code, 0, `systemd-sandbox stop: ${r.out}`);
  }
});

test('an intrusion found by a re-take under systemd, SIGKILLed once the record is its own again, is in the journal after the restart adopts the store', async () => {
  assert.is(process.getuid?.(), 0, 'the systemd test runs as root (CI does)');
  assert.ok(fs.existsSync('/lib/systemd/systemd'), '/lib/systemd/systemd is missing: .ci/install-system.sh installs systemd');
  const root = tmpdir('vmlockd-sd-retake-');
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const d = path.join(images, 'D.qcow2');
  fs.writeFileSync(d, '');
  const others = Array.from({ length: MANY }, (_, i) => path.join(images, `o${i}.qcow2`));
  for (const o of others) fs.writeFileSync(o, '');
  const state = path.join(root, 'state-a');
  const socket = path.join(root, 'a.sock');

  // A without systemd: D first in the journal, then the others; SIGKILL (no store: the gap opens).
  const a = await startDaemon({ stateDir: state, lockspace, hostId: 'hv-a', socket });
  daemons.push(a);
  const b = await startDaemon({ stateDir: path.join(root, 'state-b'), lockspace, hostId: 'hv-b', socket: path.join(root, 'b.sock') });
  daemons.push(b);
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', d]).code, 0);
  for (let i = 0; i < MANY; i += 500) {
    const r = a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', ...others.slice(i, i + 500)]);
    assert.is(r.code, 0, r.stderr);
  }
  const lockFile = fs.readdirSync(lockspace).map((f) => path.join(lockspace, f)).find((f) => fs.statSync(f).isFile() && fs.readFileSync(f, 'utf8').includes('D.qcow2'))!;
  assert.ok(lockFile, 'the lock file of D');
  await a.kill('SIGKILL');
  // The gap: vm2 on host B gets vm1's disk, then lets it go.
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', d]).code, 0);
  assert.is(b.cli(['release', '--vm', UUID2, d]).code, 0);
  const intruder = recordOf(lockFile);
  assert.is(intruder.host, 'hv-b');

  // A under systemd; SIGKILLed (Restart=always) as soon as D's record is A's again.
  sb = Sandbox.start(path.join(root, 'sandbox'));
  const s = sb;
  s.install(UNIT, testUnit(root, state, socket, lockspace));
  assert.is(s.ctl('daemon-reload').code, 0);
  const mainPid = async () => Number((await s.showAsync(UNIT, 'MainPID')) || 0);
  const starting = s.ctlAsync('start', UNIT);
  let firstPid = 0;
  for (const end = Date.now() + 120_000; Date.now() < end; ) {
    const r = recordOf(lockFile);
    if (r.host === 'hv-a' && (r.gen ?? 0) > (intruder.gen ?? 0)) {
      firstPid = await mainPid();
      const k = await s.ctlAsync('kill', '--signal=SIGKILL', '--kill-who=main', UNIT);
      assert.is(k.code, 0, k.out);
      break;
    }
    await new Promise((res) => setTimeout(res, 2));
  }
  assert.ok(firstPid > 0, `the start under systemd wrote its own record on D: ${fs.existsSync(path.join(root, 'vmlockd.log')) ? fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8').slice(-800) : ''}`);
  await starting;
  const statusOf = () => {
    const r = cli(['status', '--json', '--socket', socket]);
    return r.code === 0 ? (JSON.parse(r.stdout) as Record<string, any>) : undefined;
  };
  // The restart (Restart=always) comes up with what the store kept.
  let up: Record<string, any> | undefined;
  await until('the restart after the SIGKILL', async () => {
    const st = statusOf();
    if (st && st.pid !== firstPid && st.locks === MANY + 1) up = st;
    return up !== undefined;
  }, 180_000);
  const lost = journalFacts(state, 'LeaseLost').filter((f) => f.payload.disk === d);
  const log = fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8');
  assert.ok(
    lost.length > 0,
    `vm1's disk was taken by host B in the gap (record hv-b gen ${intruder.gen}); after a SIGKILL of the start under systemd no LeaseLost was journaled (restart: ${JSON.stringify(up?.started)}); the lock file says ${JSON.stringify(recordOf(lockFile))}; log: ${log.slice(-800)}`,
  );
  assert.is(s.ctl('stop', UNIT).code, 0);
});

test.run();
