// The locker on a disk locked in place and renamed under its lock (review27 F5), with real files and
// real OFD locks: the check judges the held description (a second description of the same inode,
// through /proc/self/fd), never the old path; a loss found on a renamed disk is re-taken on the disk
// itself, never on the file its old path names now; and a take never locks a file whose identity is
// not the resolved one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diskIdentity } from '../../src/engine/resolve.js';
import { Locker } from '../../src/engine/locker.js';
import { native } from '../../src/engine/native.js';
import type { ResourceRef } from '../../src/engine/types.js';
import { UUID1, tmpdir } from '../helpers/daemon.js';

/** Whether anything holds byte 0 of `file`, seen from a fresh description. */
function locked(file: string): boolean {
  const fd = fs.openSync(file, fs.constants.O_RDONLY);
  try {
    return native.ofdGetLk(fd, 'write', 0, 1) !== null;
  } finally {
    fs.closeSync(fd);
  }
}

function setup(oneCall = true) {
  const dir = tmpdir('vmlockd-locker-direct-renamed-');
  const disk = path.join(dir, 'a.img');
  const moved = path.join(dir, 'a-moved.img');
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
  const ref: ResourceRef = { id: disk, name: disk, lockspace: '', kind: 'direct', canonical: disk, inode: diskIdentity(disk)! };
  const locker = new Locker('h1', { native, oneCall });
  const p = locker.prepare([{ kind: 'lock', how: 'take', disk: { path: disk, mode: 'exclusive', resource: ref }, owner: { uuid: UUID1, name: 'vm1' } }], { at: new Date().toISOString(), source: 'api' });
  assert.is(p.outcome.status, 'ok');
  p.commit();
  return { disk, moved, ref, locker };
}

const vms = () => [{ uuid: UUID1, name: 'vm1', since: new Date().toISOString() }];

for (const replaced of [false, true]) {
  test(`verify: a renamed disk${replaced ? ' (a new file at its old path)' : ''} checks out through its description, as renamed`, () => {
    const { disk, moved, ref, locker } = setup();
    fs.renameSync(disk, moved);
    if (replaced) fs.writeFileSync(disk, Buffer.alloc(1 << 16));
    const v = locker.verify();
    assert.is(v.length, 1);
    assert.is(v[0]!.resource, ref.id);
    assert.is(v[0]!.status, 'renamed', v[0]!.reason);
    assert.match(v[0]!.reason, replaced ? /is another file now/ : /no disk is at/);
    assert.ok(locked(moved), 'the disk is still locked');
    if (replaced) assert.not.ok(locked(disk), 'the new file at the old path is not locked');
    // A re-take of a lock that still holds keeps it, on the disk itself.
    const r = locker.retake(ref, 'exclusive', vms(), new Date().toISOString());
    assert.ok(r.ok && r.kept, JSON.stringify(r));
    assert.ok(locked(moved));
    if (replaced) assert.not.ok(locked(disk));
    // Back under its name: nothing to say any more.
    if (replaced) fs.unlinkSync(disk);
    fs.renameSync(moved, disk);
    assert.equal(locker.verify(), []);
    locker.closeAll();
  });
}

for (const oneCall of [true, false]) {
  test(`a loss found on a renamed disk is re-taken on the disk itself, not on the new file at its old path (${oneCall ? 'native take' : 'one call at a time'})`, () => {
    const { disk, moved, ref, locker } = setup(oneCall);
    fs.renameSync(disk, moved);
    fs.writeFileSync(disk, Buffer.alloc(1 << 16));
    // The filesystem dropped the lock behind the holder's back (a cluster filesystem can).
    const [held] = locker.descriptors();
    native.ofdSetLk(held!.fd, 'unlock', 0, 0);
    assert.not.ok(locked(moved));
    const v = locker.verify();
    assert.is(v.length, 1);
    assert.is(v[0]!.status, 'lost');
    assert.match(v[0]!.reason, /nothing holds/);
    assert.match(v[0]!.reason, /is another file now/);
    const r = locker.retake(ref, 'exclusive', vms(), new Date().toISOString());
    assert.ok(r.ok && !r.kept, JSON.stringify(r));
    assert.ok(locked(moved), 'the renamed disk is locked again');
    assert.not.ok(locked(disk), 'the new file at the old path is not locked');
    assert.is(locker.verify()[0]?.status, 'renamed');
    locker.closeAll();
    assert.not.ok(locked(moved));
  });
}

test('a pending re-take (no description left) of a renamed disk neither takes nor names the holder of the new file at its old path', () => {
  const dir = tmpdir('vmlockd-locker-direct-pending-');
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
  const ref: ResourceRef = { id: disk, name: disk, lockspace: '', kind: 'direct', canonical: disk, inode: diskIdentity(disk)! };
  fs.renameSync(disk, path.join(dir, 'a-moved.img'));
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
  // Another owner locks the new file at the old path.
  const theirs = fs.openSync(disk, fs.constants.O_RDWR);
  try {
    assert.ok(native.ofdSetLk(theirs, 'write', 0, 1));
    const locker = new Locker('h1');
    const r = locker.retake(ref, 'exclusive', vms(), new Date().toISOString());
    assert.not.ok(r.ok);
    // An error (retried, no conflict with an owner of another disk), not a holder.
    assert.ok(!r.ok && r.error !== undefined && /is another file now/.test(r.error), JSON.stringify(r));
    assert.is(locker.size, 0);
  } finally {
    fs.closeSync(theirs);
  }
});

test('a take never locks a file whose identity is not the resolved one (the disk was replaced meanwhile)', () => {
  const dir = tmpdir('vmlockd-locker-direct-replaced-');
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
  const ref: ResourceRef = { id: disk, name: disk, lockspace: '', kind: 'direct', canonical: disk, inode: diskIdentity(disk)! };
  fs.renameSync(disk, path.join(dir, 'a-moved.img'));
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
  const locker = new Locker('h1');
  assert.throws(
    () => locker.prepare([{ kind: 'lock', how: 'take', disk: { path: disk, mode: 'exclusive', resource: ref }, owner: { uuid: UUID1, name: 'vm1' } }], { at: new Date().toISOString(), source: 'api' }),
    /renamed or replaced/,
  );
  assert.is(locker.size, 0);
  assert.not.ok(locked(disk));
});

test.run();
