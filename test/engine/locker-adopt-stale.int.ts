// Adoption of handed-back descriptors when the store kept a released lock's description (review26a: a
// lost FDSTOREREMOVE; test/daemon/systemd-fdstore-remove.int.ts shows it under real systemd). systemd
// keeps every descriptor it is given under its name (several may share one) and hands them back in
// an order that a daemon-reload reverses. Real lock files and OFD locks, the real locker; "systemd"
// keeps dup'd copies (the same open file descriptions) per name, and FDSTOREREMOVE drops them all.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Locker, inspectLockFile } from '../../src/engine/locker.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import type { Intent, Owner, ResolvedDisk } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';
import { TestStore } from '../helpers/descriptor-store.js';
import { lockedByAnyone } from '../helpers/kernel-locks.js';

const vm1: Owner = { uuid: '00000001-0000-4000-8000-000000000000', name: 'vm1' };


function setup(mode: 'exclusive' | 'shared' = 'exclusive') {
  const dir = tmpdir('vmlockd-adopt-stale-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'img'));
  const file = path.join(dir, 'img', 'X.qcow2');
  fs.writeFileSync(file, '');
  const disk: ResolvedDisk = resolveDisk({ path: file, mode }, { fileLockspaceDir: lockspace }, initialState());
  const at = () => new Date().toISOString();
  const state: State = initialState();
  const run = (l: Locker, intents: Intent[]) => {
    const p = l.prepare(intents, { at: at(), source: 'test' });
    assert.is(p.outcome.status, 'ok', JSON.stringify(p.outcome));
    p.commit();
    for (const f of p.facts) evolve(state, f);
  };
  const take = (l: Locker) => run(l, [{ kind: 'lock', disk, owner: vm1, how: 'take' }]);
  const release = (l: Locker) => run(l, [{ kind: 'unlock', resource: disk.resource, path: file, owner: vm1, how: 'drop' }]);
  return { lockspace, disk, state, at, take, release };
}

/** x taken, released with its FDSTOREREMOVE lost, taken again; then the daemon dies (the store keeps both). */
function staleAndLive(mode: 'exclusive' | 'shared' = 'exclusive') {
  const t = setup(mode);
  const store = new TestStore();
  const a = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
  t.take(a);
  store.deaf = true;
  t.release(a);
  store.deaf = false;
  t.take(a);
  a.closeAll();
  assert.is(store.fds.length, 2);
  assert.ok(lockedByAnyone(t.disk.resource.id), 'the store keeps the live description and its lock');
  return { t, store };
}

for (const order of ['newest', 'oldest'] as const) {
  test(`two descriptors under one name, the released one handed back ${order === 'oldest' ? 'first (after a daemon-reload)' : 'last'}: the live one is adopted, no loss, the lock stays`, () => {
    const { t, store } = staleAndLive();
    const a2 = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
    try {
      const adoption = a2.adopt(t.state, store.passed(order), t.at(), 'adopted');
      assert.equal(adoption.lost, [], `a loss for a lock held throughout: ${JSON.stringify(adoption.lost)}`);
      assert.is(adoption.adopted, 1, JSON.stringify(adoption.dropped));
      assert.ok(a2.isHeld(t.disk.resource.id));
      const again = a2.reacquire(t.state, t.at());
      assert.equal(again.facts, [], 'nothing left to re-take');
      // systemd ends with one descriptor of x, the live one: the daemon dies again and the lock holds.
      assert.is(store.fds.length, 1, `the store holds ${store.fds.length} descriptors of x`);
      a2.closeAll();
      assert.ok(lockedByAnyone(t.disk.resource.id), 'the lock was dropped');
    } finally {
      a2.closeAll();
      store.clear();
    }
  });
}

test('shared: the released description handed back first: the live one is adopted, its record slot stays backed (who names this host)', () => {
  const { t, store } = staleAndLive('shared');
  const a2 = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
  try {
    const adoption = a2.adopt(t.state, store.passed('oldest'), t.at(), 'adopted');
    assert.equal(adoption.lost, []);
    assert.is(adoption.adopted, 1);
    assert.is(store.fds.length, 1);
    const seen = inspectLockFile(t.disk.resource.id);
    assert.is(seen.state, 'shared');
    assert.equal(seen.holders.map((h) => h.host), ['hv-a'], `the shared holder is not named: ${JSON.stringify(seen)}`);
    assert.equal(a2.verify(), []);
  } finally {
    a2.closeAll();
    store.clear();
  }
});

test('only the released description handed back (the live one never reached the store): not adopted; the re-take checks the gap', () => {
  const { t, store } = staleAndLive();
  // The live description's store copy is gone (its FDSTORE never went out): only the released one is left.
  fs.closeSync(store.fds[1]!.fd);
  store.fds.splice(1, 1);
  assert.not.ok(lockedByAnyone(t.disk.resource.id));
  const a2 = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
  try {
    const adoption = a2.adopt(t.state, store.passed('newest'), t.at(), 'adopted');
    assert.is(adoption.adopted, 0, 'a description that held no lock was adopted as if it had held it throughout');
    assert.match(adoption.dropped.map((d) => d.reason).join('; '), /holds no lock/);
    const again = a2.reacquire(t.state, t.at());
    assert.equal(again.facts.map((f) => f.kind), ['Reacquired']);
    assert.ok(lockedByAnyone(t.disk.resource.id));
  } finally {
    a2.closeAll();
    store.clear();
  }
});

test.run();
