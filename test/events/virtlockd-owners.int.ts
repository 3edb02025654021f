// The virtlockd protocol server's owner rules against a real daemon and real client processes: the
// close rule is keyed by the owner pid that took each lock, owners are watched by pid after a
// restart even when they held nothing at that moment, and an acquire for an owner already gone
// never leaves a lock behind (issue 16, items 11 and 12, and the hot-plug race).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { LockClient, LockRpcError } from '../../src/events/virtlockd/client.js';
import { TestDaemon, tmpdir } from '../helpers/daemon.js';
import { RemoteClient } from '../helpers/remote-client.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const UUID_A = '00112233-4455-6677-8899-aabbccddeeff';
const UUID_B = 'ffeeddcc-bbaa-9988-7766-554433221100';

interface Served {
  readonly daemon: TestDaemon;
  readonly socket: string;
}

async function serve(dir: string): Promise<Served> {
  const socket = path.join(dir, 'run', 'virtlockd-sock');
  const daemon = new TestDaemon({
    stateDir: path.join(dir, 'state'),
    socket: path.join(dir, 'vmlockd.sock'),
    lockspace: path.join(dir, 'lockspace'),
    hostId: 'hv1',
    extra: ['--virtlockd-socket', socket],
  });
  await daemon.start();
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
  if (!existsSync(socket)) {
    await daemon.kill('SIGKILL');
    assert.unreachable(`no virtlockd socket at ${socket}\n${daemon.stderr}`);
  }
  return { daemon, socket };
}

function audit(d: TestDaemon, kind: string): Array<{ payload: Record<string, any> }> {
  const r = d.cli(['audit', '--json', '--kind', kind, '--limit', '1000']);
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function locks(d: TestDaemon): Array<[string, string, string]> {
  const r = d.cli(['locks', '--json']);
  assert.is(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<Record<string, any>>).map((l): [string, string, string] => [path.basename(l.resource), l.mode, l.vm.uuid]).sort();
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(100);
  }
  assert.unreachable(`timed out waiting for ${what}`);
}

async function rpcError(p: Promise<unknown>): Promise<LockRpcError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  assert.instance(e, LockRpcError);
  return e as LockRpcError;
}

test('given two QEMU pids of one VM, when the old one\'s own connection closes, then only the locks that pid took are released', async () => {
  const dir = tmpdir('vmlockd-vo-');
  const ls = path.join(dir, 'files');
  const s = await serve(dir);
  const qemu1 = await RemoteClient.spawn(s.socket);
  const qemu2 = await RemoteClient.spawn(s.socket);
  const lv = await LockClient.connect(s.socket);
  try {
    await lv.createLockspace(ls);
    // Each QEMU registers its own pid on its own connection and keeps it (the lock token).
    assert.equal(await qemu1.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
    assert.equal(await qemu1.do({ op: 'restrict' }), { ok: true });
    // libvirtd, on one connection, acquires for the old QEMU, then for the new one.
    await lv.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: qemu1.pid });
    await lv.acquire(ls, 'old-disk', { autocreate: true });
    await lv.acquire(ls, 'both', { shared: true, autocreate: true });
    assert.equal(await qemu2.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
    assert.equal(await qemu2.do({ op: 'restrict' }), { ok: true });
    await lv.register({ uuid: UUID_A, name: 'vm-a', id: 2, pid: qemu2.pid });
    await lv.acquire(ls, 'new-disk', { autocreate: true });
    await lv.acquire(ls, 'both', { shared: true, autocreate: true });
    // virtlockd: a pid that did not take a lock does not hold it.
    const notMine = await rpcError(lv.release(ls, 'old-disk'));
    assert.equal([notMine.code, notMine.domain, notMine.message], [1, 51, `internal error: owner ${qemu2.pid} does not hold the resource lock`]);

    // The old QEMU's connection closes (its inheriting child exits): only what pid 1 took goes.
    assert.equal(await qemu1.do({ op: 'close' }), { ok: true });
    await until('OwnerGone for the old QEMU', () => audit(s.daemon, 'OwnerGone').length > 0);
    const gone = audit(s.daemon, 'OwnerGone').map((f) => [f.payload.owner.uuid, f.payload.pid, f.payload.released]);
    assert.equal(gone, [[UUID_A, qemu1.pid, 1]]);
    assert.equal(locks(s.daemon), [
      ['both', 'shared', UUID_A],
      ['new-disk', 'exclusive', UUID_A],
    ]);
    // Another VM is still kept off the newer QEMU's disk.
    const other = await LockClient.connect(s.socket);
    await other.register({ uuid: UUID_B, name: 'vm-b', id: 3, pid: 4343 });
    const busy = await rpcError(other.acquire(ls, 'new-disk', { autocreate: true }));
    assert.equal([busy.code, busy.domain], [87, 51]);
    await other.close();
    // And the newer QEMU's own releases still find its locks.
    await lv.release(ls, 'new-disk');
    await lv.release(ls, 'both');
    assert.equal(locks(s.daemon), []);
    await lv.close();
  } finally {
    await qemu1.kill();
    await qemu2.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given a VM that held nothing when vmlockd restarted, when it re-acquires and its QEMU then exits, then its lease is released', async () => {
  const dir = tmpdir('vmlockd-vo-');
  const ls = path.join(dir, 'files');
  let s = await serve(dir);
  const qemu = await RemoteClient.spawn(s.socket);
  try {
    assert.equal(await qemu.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
    assert.equal(await qemu.do({ op: 'restrict' }), { ok: true });
    const lv = await LockClient.connect(s.socket);
    await lv.createLockspace(ls);
    await lv.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: qemu.pid });
    await lv.acquire(ls, 'disk0', { autocreate: true });
    // virsh suspend: libvirtd releases everything; the VM holds nothing.
    await lv.release(ls, 'disk0');
    await lv.close();
    await s.daemon.kill('SIGKILL');
    s = await serve(dir);
    // virsh resume after the restart: libvirtd registers the QEMU pid and acquires again.
    const lv2 = await LockClient.connect(s.socket);
    await lv2.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: qemu.pid });
    await lv2.acquire(ls, 'disk0', { autocreate: true });
    await lv2.close();
    assert.equal(locks(s.daemon), [['disk0', 'exclusive', UUID_A]]);
    await sleep(2500);
    assert.equal(locks(s.daemon), [['disk0', 'exclusive', UUID_A]], 'held while its QEMU runs');
    // QEMU dies: no connection of its own is open any more, so only the pid watch can see it.
    await qemu.kill();
    await until('the dead QEMU\'s lease to be released', () => locks(s.daemon).length === 0);
    const gone = audit(s.daemon, 'OwnerGone').map((f) => [f.payload.owner.uuid, f.payload.pid, f.payload.alive, f.payload.released]);
    assert.equal(gone, [[UUID_A, qemu.pid, false, 1]]);
  } finally {
    await qemu.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given an owner whose own connection closed, when libvirtd\'s hot-plug acquire for it lands afterwards, then it is refused and no lock is left', async () => {
  const dir = tmpdir('vmlockd-vo-');
  const ls = path.join(dir, 'files');
  const s = await serve(dir);
  const qemu = await RemoteClient.spawn(s.socket);
  try {
    assert.equal(await qemu.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
    assert.equal(await qemu.do({ op: 'restrict' }), { ok: true });
    const lv = await LockClient.connect(s.socket);
    await lv.createLockspace(ls);
    await lv.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: qemu.pid });
    await lv.acquire(ls, 'disk0', { autocreate: true });
    assert.equal(await qemu.do({ op: 'close' }), { ok: true });
    await until('the close rule', () => audit(s.daemon, 'OwnerGone').length > 0);
    const e = await rpcError(lv.acquire(ls, 'hotplug', { autocreate: true }));
    assert.equal([e.code, e.domain], [1, 51]);
    assert.match(e.message, `owner ${qemu.pid} (VM vm-a, uuid ${UUID_A}) has gone`);
    assert.equal(locks(s.daemon), []);
    await lv.close();
    // A new QEMU that reuses nothing but registers its own connection again is an owner again.
    const qemu2 = await RemoteClient.spawn(s.socket);
    try {
      assert.equal(await qemu2.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
      assert.equal(await qemu2.do({ op: 'acquire', path: ls, name: 'disk0', autocreate: true }), { ok: true });
      assert.equal(locks(s.daemon), [['disk0', 'exclusive', UUID_A]]);
    } finally {
      await qemu2.kill();
    }
  } finally {
    await qemu.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
