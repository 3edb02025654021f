// review27c F3 (MEDIUM): in direct mode (the lock on the disk itself, `--lockspace ""`) a released
// shared description handed back (systemd's store, `serve --takeover`) was adopted with no gap check
// and not counted as unproven: another host's read lock keeps nobodyHolds() false, the re-assert is
// granted, and a disk carries no record for adoptedGap(). Another host may have held the disk
// exclusively between the release and the adoption; the start said nothing (direct-gap.ts skips
// adoptions). Now such an adoption is kept (the lock is held: never dropped) and reported in
// Adoption.unproven, which the start counts as directUnproven with a warning. A description the
// kernel lists as holding its read lock (/proc/self/fdinfo) is proven: no false alarm.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Locker, ofdHeldBy } from '../../src/engine/locker.js';
import { native } from '../../src/engine/native.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import type { Intent, Owner, ResolvedDisk } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';
import { TestStore } from '../helpers/descriptor-store.js';

const vm1: Owner = { uuid: '00000001-0000-4000-8000-000000000000', name: 'vm1' };
const vmB: Owner = { uuid: '00000002-0000-4000-8000-000000000000', name: 'vmB' };

function scenario(released: boolean) {
  const dir = tmpdir('vmlockd-r27c-direct-adopt-');
  const file = path.join(dir, 'X.img');
  fs.writeFileSync(file, 'image');
  const rules = { fileLockspaceDir: null };
  const shared: ResolvedDisk = resolveDisk({ path: file, mode: 'shared' }, rules, initialState());
  const excl: ResolvedDisk = resolveDisk({ path: file, mode: 'exclusive' }, rules, initialState());
  assert.is(shared.resource.kind, 'direct');
  const at = () => new Date().toISOString();
  const stateA: State = initialState();
  const stateB: State = initialState();
  const run = (l: Locker, state: State, intents: Intent[]) => {
    const p = l.prepare(intents, { at: at(), source: 'test' });
    assert.is(p.outcome.status, 'ok', JSON.stringify(p.outcome));
    p.commit();
    for (const f of p.facts) evolve(state, f);
  };
  const store = new TestStore();
  const a = new Locker('hv-a', { fileLockspaceDir: null, store });
  run(a, stateA, [{ kind: 'lock', disk: shared, owner: vm1, how: 'take' }]);
  if (released) {
    // vm1 releases (its FDSTOREREMOVE lost) and takes the disk again; that take's FDSTORE never
    // reaches the store: only the released description is left there.
    store.deaf = true;
    run(a, stateA, [{ kind: 'unlock', resource: shared.resource, path: file, owner: vm1, how: 'drop' }]);
    run(a, stateA, [{ kind: 'lock', disk: shared, owner: vm1, how: 'take' }]);
    store.deaf = false;
    a.closeAll();
    assert.is(store.fds.length, 2);
    fs.closeSync(store.fds[1]!.fd);
    store.fds.splice(1, 1);
  } else {
    a.closeAll();
  }
  const b = new Locker('hv-b', { fileLockspaceDir: null });
  if (released) {
    // While hv-a is down: hv-b takes the disk exclusive (writes it), releases, then takes it shared.
    run(b, stateB, [{ kind: 'lock', disk: excl, owner: vmB, how: 'take' }]);
    run(b, stateB, [{ kind: 'unlock', resource: excl.resource, path: file, owner: vmB, how: 'drop' }]);
  }
  run(b, stateB, [{ kind: 'lock', disk: shared, owner: vmB, how: 'take' }]);
  const a2 = new Locker('hv-a', { fileLockspaceDir: null, store });
  const adoption = a2.adopt(stateA, store.passed(), at(), 'adopted');
  const again = a2.reacquire(stateA, at());
  const cleanup = () => {
    a2.closeAll();
    b.closeAll();
    store.clear();
  };
  return { adoption, again, a2, file, cleanup };
}

test('fdinfo: a description lists its own OFD lock, another description of the file does not', () => {
  const dir = tmpdir('vmlockd-fdinfo-');
  const file = path.join(dir, 'x.img');
  fs.writeFileSync(file, 'x');
  const one = fs.openSync(file, 'r');
  const two = fs.openSync(file, 'r');
  try {
    assert.ok(native.ofdSetLk(one, 'read', 0, 1));
    assert.is(ofdHeldBy(one), true);
    assert.is(ofdHeldBy(two), false);
    assert.ok(native.ofdSetLk(two, 'read', 0, 1));
    assert.is(ofdHeldBy(two), true);
    native.ofdSetLk(one, 'unlock', 0, 0);
    assert.is(ofdHeldBy(one), false);
  } finally {
    fs.closeSync(one);
    fs.closeSync(two);
  }
});

test('a released shared direct description adopted while another host holds the disk shared: held, and counted as unproven', () => {
  const r = scenario(true);
  try {
    assert.is(r.adoption.adopted, 1, JSON.stringify(r.adoption));
    assert.equal(r.adoption.unproven, [r.file], `the adoption says nothing of the gap: ${JSON.stringify(r.adoption)}`);
    // Held (never dropped): the description now holds its read lock.
    assert.is(ofdHeldBy(r.a2.descriptors()[0]!.fd), true);
    assert.equal(r.again.facts, []);
  } finally {
    r.cleanup();
  }
});

test('control: a shared direct description that held its lock throughout is adopted with no doubt', () => {
  const r = scenario(false);
  try {
    assert.is(r.adoption.adopted, 1, JSON.stringify(r.adoption));
    assert.is(r.adoption.unproven, undefined, JSON.stringify(r.adoption));
  } finally {
    r.cleanup();
  }
});

// The same doubt at run time: the verifier re-asserted a shared direct lock whose description had lost
// its read lock (another host's read lock keeps the disk "held"), taking it again with no LeaseLost.
// Where the kernel listed the description's lock when it was taken, its going is a loss now.
test('the verifier: a shared direct lock whose description lost its read lock while another host shares the disk is lost, then re-taken', () => {
  const dir = tmpdir('vmlockd-r27c-direct-verify-');
  const file = path.join(dir, 'X.img');
  fs.writeFileSync(file, 'image');
  const shared: ResolvedDisk = resolveDisk({ path: file, mode: 'shared' }, { fileLockspaceDir: null }, initialState());
  const ctx = { at: new Date().toISOString(), source: 'test' };
  const a = new Locker('hv-a', { fileLockspaceDir: null });
  const b = new Locker('hv-b', { fileLockspaceDir: null });
  try {
    a.prepare([{ kind: 'lock', disk: shared, owner: vm1, how: 'take' }], ctx).commit();
    b.prepare([{ kind: 'lock', disk: shared, owner: vmB, how: 'take' }], ctx).commit();
    assert.equal(a.verify(), []);
    // The lock goes from hv-a's description (a filesystem dropped it); hv-b still reads the disk.
    assert.ok(native.ofdSetLk(a.descriptors()[0]!.fd, 'unlock', 0, 0));
    const v = a.verify();
    assert.is(v.length, 1, `the loss is not seen: ${JSON.stringify(v)}`);
    assert.is(v[0]!.status, 'lost');
    assert.match(v[0]!.reason, /read\) lock is gone/);
    const r = a.retake(shared.resource, 'shared', [{ ...vm1, since: ctx.at }], ctx.at);
    assert.ok(r.ok && !r.kept, JSON.stringify(r));
    assert.is(ofdHeldBy(a.descriptors()[0]!.fd), true);
    assert.equal(a.verify(), []);
  } finally {
    a.closeAll();
    b.closeAll();
  }
});

test.run();
