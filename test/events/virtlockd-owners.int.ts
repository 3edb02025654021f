// The virtlockd protocol server's owner rules against a real daemon and real client processes: the
// close rule is keyed by the owner pid that took each lock, owners are watched by pid after a
// restart even when they held nothing at that moment, and an acquire for an owner already gone
// never leaves a lock behind (issue 16, items 11 and 12, and the hot-plug race).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { tmpdir } from '../helpers/daemon.js';
import { UUID_A, UUID_B, audit, locks, rpcError, serve, sleep, until } from '../helpers/protocol-serve.js';
import { RemoteClient } from '../helpers/remote-client.js';

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

/** POST a JSON body to the control API over its Unix socket. */
function post(socketPath: string, route: string, body: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ socketPath, path: route, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

test('given a control API acquire whose body says source virtlockd and an old at, then the daemon labels it api and stamps its own time, so no protocol close rule frees it', async () => {
  const dir = tmpdir('vmlockd-vo-');
  const s = await serve(dir);
  const qemu = await RemoteClient.spawn(s.socket);
  try {
    const disk = path.join(dir, 'images', 'web.img');
    mkdirSync(path.dirname(disk));
    writeFileSync(disk, '');
    const before = Date.now();
    const r = await post(path.join(dir, 'vmlockd.sock'), '/v1/acquire', {
      vm: { uuid: UUID_A, name: 'vm-a' },
      disks: [{ path: disk, readonly: false, shareable: false }],
      source: 'virtlockd',
      at: '2001-01-01T00:00:00.000Z',
    });
    assert.is(r.status, 200, JSON.stringify(r.body));
    const acquired = audit(s.daemon, 'LockAcquired');
    assert.equal(acquired.map((f) => f.payload.source), ['api']);
    const at = Date.parse((acquired[0] as unknown as { at: string }).at);
    assert.ok(at >= before - 5000, `journaled at the daemon's time, not the body's: ${(acquired[0] as unknown as { at: string }).at}`);
    // A protocol owner of the same VM comes and goes: the API's lock is not the protocol's to free.
    assert.equal(await qemu.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
    assert.equal(await qemu.do({ op: 'close' }), { ok: true });
    await until('the close rule', () => audit(s.daemon, 'OwnerGone').length > 0);
    assert.equal(locks(s.daemon).map((l) => [l[1], l[2]]), [['exclusive', UUID_A]], 'still held');
  } finally {
    await qemu.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given a protocol lease the verifier re-took after its lock file was removed, when the owner\'s own connection closes, then it is released', async () => {
  const dir = tmpdir('vmlockd-vo-');
  const ls = path.join(dir, 'files');
  const s = await serve(dir, ['--verify-interval', '1']);
  const qemu = await RemoteClient.spawn(s.socket);
  try {
    assert.equal(await qemu.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
    assert.equal(await qemu.do({ op: 'createLockspace', path: ls }), { ok: true });
    assert.equal(await qemu.do({ op: 'acquire', path: ls, name: 'disk0', autocreate: true }), { ok: true });
    rmSync(path.join(ls, 'disk0'));
    await until('the verifier to re-take the lease', () => audit(s.daemon, 'Reacquired').length > 0, 30_000);
    assert.equal(locks(s.daemon), [['disk0', 'exclusive', UUID_A]]);
    assert.equal(await qemu.do({ op: 'close' }), { ok: true });
    await until('the re-taken lease to be released by the close rule', () => locks(s.daemon).length === 0);
    assert.equal(audit(s.daemon, 'OwnerGone').map((f) => f.payload.released), [1]);
  } finally {
    await qemu.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given hot-plug acquires on libvirtd\'s connection racing the close of QEMU\'s own connection, then no lock survives any of them', async () => {
  const dir = tmpdir('vmlockd-vo-');
  const ls = path.join(dir, 'files');
  const s = await serve(dir);
  // libvirtd in its own process; this test process plays QEMU (its own connection registers its pid).
  const lv = await RemoteClient.spawn(s.socket);
  try {
    assert.equal(await lv.do({ op: 'createLockspace', path: ls }), { ok: true });
    const outcomes = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const own = await LockClient.connect(s.socket);
      await own.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: process.pid });
      assert.equal(await lv.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: process.pid }), { ok: true });
      const acquire = lv.do({ op: 'acquire', path: ls, name: `hot${i}`, autocreate: true });
      if (i % 4 !== 0) await sleep(i % 4);
      await own.close();
      const r = await acquire;
      outcomes.add(r.ok ? 'granted before the close' : r.message.includes('has gone') ? 'refused or given back' : r.message);
      await until(`the close rule of round ${i}`, () => audit(s.daemon, 'OwnerGone').length === i + 1);
      await until(`round ${i} to leave no lock`, () => locks(s.daemon).length === 0, 10_000);
    }
    for (const o of outcomes) assert.ok(o === 'granted before the close' || o === 'refused or given back', o);
  } finally {
    await lv.kill();
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
