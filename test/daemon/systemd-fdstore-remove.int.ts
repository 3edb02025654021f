// review26a: a released lock's FDSTOREREMOVE must reach systemd even when the manager stopped reading
// for a while (its queue full, the daemon's backlog full). The daemon's backlog dropped its oldest
// descriptor-less message to make room, an FDSTOREREMOVE among them: systemd kept the released
// description, and after the disk was taken again the store held two descriptors under its name. The
// restart (Restart=always after a SIGKILL) was handed both.
//
// The shipped unit in a confined user manager (test/helpers/systemd.ts); the manager is frozen
// (SIGSTOP) while the daemon takes and releases; VMLOCKD_NOTIFY_BACKLOG makes the backlog small so a
// few dozen releases fill it (50,000 otherwise).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { sha256Hex } from '../../src/engine/resolve.js';
import { MAIN, UUID1, UUID2, cli, until } from '../helpers/daemon.js';
import { lockedByAnyone } from '../helpers/kernel-locks.js';
import { journalFacts } from '../helpers/settled.js';
import { Sandbox, sandboxHost, shippedUnit } from '../helpers/systemd.js';

const UNIT = 'vmlockd.service';
const BACKLOG = 8;

function testUnit(dir: string, state: string, socket: string, lockspace: string): string {
  const exec = `ExecStart=${process.execPath} ${MAIN} serve --state-dir ${state} --socket ${socket} --lockspace ${lockspace} --host-id hv-a`;
  const unit = shippedUnit(UNIT)
    .split('\n')
    .filter((l) => !/^(StateDirectory|RuntimeDirectory)/.test(l))
    .map((l) => (l.startsWith('ExecStart=') ? exec : l))
    .join('\n');
  assert.match(unit, 'FileDescriptorStoreMax=');
  assert.match(unit, 'Restart=always');
  return unit.replace('[Service]\n', `[Service]\nEnvironment=VMLOCKD_NOTIFY_BACKLOG=${BACKLOG}\nStandardOutput=append:${dir}/vmlockd.log\nStandardError=append:${dir}/vmlockd.log\n`);
}

const test = suite('systemd: an FDSTOREREMOVE is never dropped from the notify backlog');

let sb: Sandbox | undefined;
let frozen = false;
process.on('exit', () => {
  if (sb && frozen) process.kill(sb.pid, 'SIGCONT');
  sb?.stop();
});

test.after.each(() => {
  if (sb) {
    if (frozen) process.kill(sb.pid, 'SIGCONT');
    frozen = false;
    const r = sb.stop();
    sb = undefined;
    assert.is(r.code, 0, `systemd-sandbox stop: ${r.out}`);
  }
});

test('a disk released and taken again while the manager did not read: after a SIGKILL the restart adopts its one descriptor, holds it, and records no loss', async () => {
  assert.is(process.getuid?.(), 0, 'the systemd test runs as root (CI does)');
  assert.ok(fs.existsSync('/lib/systemd/systemd'), '/lib/systemd/systemd is missing: .ci/install-system.sh installs systemd');
  const { root, lockspace, disks, state } = sandboxHost('vmlockd-sd-remove-');
  const socket = path.join(root, 'a.sock');
  const [x, y] = disks as [string, string];
  sb = Sandbox.start(path.join(root, 'sandbox'));
  const s = sb;
  s.install(UNIT, testUnit(root, state, socket, lockspace));
  assert.is(s.ctl('daemon-reload').code, 0);
  assert.is(s.ctl('start', UNIT).code, 0, fs.existsSync(path.join(root, 'vmlockd.log')) ? fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8') : '');
  const status = async (): Promise<Record<string, any> | undefined> => {
    const r = await call(socket, 'GET', '/v1/status').catch(() => undefined);
    return r?.status === 200 ? (r.body as Record<string, any>) : undefined;
  };
  const acquire = async (vm: string, disk: string) => {
    const r = await call(socket, 'POST', '/v1/acquire', { vm: { uuid: vm }, disks: [{ path: disk }] });
    assert.is(r.status, 200, JSON.stringify(r.body));
  };
  // Each VM holds one disk: a release of the VM lets that disk go.
  const release = async (vm: string, _disk: string) => {
    const r = await call(socket, 'POST', '/v1/release', { vm: { uuid: vm } });
    assert.is(r.status, 200, JSON.stringify(r.body));
  };
  await until('the daemon answers', status);
  await acquire(UUID1, x);
  await until('x in the store', async () => (await status())?.started?.fdStore?.backlog === 0);

  // The manager stops reading: its queue fills, then the daemon's backlog.
  process.kill(s.pid, 'SIGSTOP');
  frozen = true;
  for (let i = 0; i < 100 && ((await status())?.started?.fdStore?.backlog ?? 0) === 0; i++) {
    await acquire(UUID2, y);
    await release(UUID2, y);
  }
  assert.ok(((await status())?.started?.fdStore?.backlog ?? 0) > 0, 'the backlog never filled');
  // x released: its FDSTOREREMOVE waits; then far more releases of another disk than the backlog holds.
  await release(UUID1, x);
  for (let i = 0; i < 3 * BACKLOG; i++) {
    await acquire(UUID2, y);
    await release(UUID2, y);
  }
  // x taken again (a new description); the manager reads again and the backlog drains.
  await acquire(UUID1, x);
  process.kill(s.pid, 'SIGCONT');
  frozen = false;
  await until('the backlog delivered', async () => (await status())?.started?.fdStore?.backlog === 0);
  const before = await status();
  // A daemon-reload (a package install runs one) serializes the store and reads it back: the order of
  // the descriptors handed back at the next start is reversed then (systemd prepends each one it
  // adds), so a released description left in the store comes before the live one.
  assert.is(s.ctl('daemon-reload').code, 0);

  const k = s.ctl('kill', '--signal=SIGKILL', '--kill-who=main', UNIT);
  assert.is(k.code, 0, k.out);
  let up: Record<string, any> | undefined;
  await until('the restart after the SIGKILL', async () => {
    const st = await status();
    if (st && st.pid !== before?.pid) up = st;
    return up !== undefined;
  }, 60_000);
  const log = fs.readFileSync(path.join(root, 'vmlockd.log'), 'utf8');
  const started = up!.started;
  const lost = journalFacts(state, 'LeaseLost');
  assert.equal(lost, [], `a loss was recorded for a lock this host held throughout: ${log.slice(-1500)}`);
  assert.ok(lockedByAnyone(path.join(lockspace, sha256Hex(x))), `the held disk x is not locked after the restart: ${log.slice(-1500)}`);
  const locks = JSON.parse(cli(['locks', '--json', '--socket', socket]).stdout) as Array<{ disk: string }>;
  assert.equal(locks.map((l) => l.disk), [x]);
  // The restart adopted x's one descriptor from the store and closed none (a released lock's).
  assert.is(started.how, 'store', JSON.stringify(started));
  assert.is(started.adopted, 1, JSON.stringify(started));
  assert.is(started.dropped, 0, `the store handed back the descriptor of a released lock: ${JSON.stringify(started)}`);
  assert.is(s.ctl('stop', UNIT).code, 0);
});

test.run();
