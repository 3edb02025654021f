// review27b F1 (fixed by adopt()'s gap check on the adopted description, adoptedGap): adopt() must not re-assert a shared lock through a handed-back description that held no
// lock (a released lock's, its FDSTOREREMOVE lost) just because another host holds the disk shared now.
// nobodyHolds() (locker.ts) only catches the case where nobody holds byte 0; a read lock of another host
// makes it false, ofdSetLk(read) is granted, and the description is adopted "as held throughout", with
// no gap check: an exclusive holder that came between (wrote the disk) goes unrecorded, and the audit
// says Reacquired/adopted. Without the stale description the re-take's gap check records LeaseLost.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Locker } from '../../src/engine/locker.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import type { Intent, Owner, ResolvedDisk } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';
import { TestStore } from '../helpers/descriptor-store.js';

const vm1: Owner = { uuid: '00000001-0000-4000-8000-000000000000', name: 'vm1' };
const vmB: Owner = { uuid: '00000002-0000-4000-8000-000000000000', name: 'vmB' };


function scenario(withStale: boolean) {
  const dir = tmpdir('vmlockd-r27b-adopt-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'img'));
  const file = path.join(dir, 'img', 'X.qcow2');
  fs.writeFileSync(file, '');
  const shared: ResolvedDisk = resolveDisk({ path: file, mode: 'shared' }, { fileLockspaceDir: lockspace }, initialState());
  const excl: ResolvedDisk = resolveDisk({ path: file, mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
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
  const a = new Locker('hv-a', { fileLockspaceDir: lockspace, store });
  // hv-a: vm1 takes X shared, releases it (its FDSTOREREMOVE lost), takes it again (the new FDSTORE
  // never reaches the store: a full backlog, then the daemon is SIGKILLed).
  run(a, stateA, [{ kind: 'lock', disk: shared, owner: vm1, how: 'take' }]);
  store.deaf = true;
  run(a, stateA, [{ kind: 'unlock', resource: shared.resource, path: file, owner: vm1, how: 'drop' }]);
  run(a, stateA, [{ kind: 'lock', disk: shared, owner: vm1, how: 'take' }]);
  store.deaf = false;
  // The daemon dies: only the store's copies survive; the live description had none there.
  a.closeAll();
  assert.is(store.fds.length, 2);
  // The live description's FDSTORE never went out (its copy here is gone): only the released one is left.
  fs.closeSync(store.fds[1]!.fd);
  store.fds.splice(1, 1);
  if (!withStale) store.clear();
  // While hv-a is down: hv-b takes X exclusive (writes the disk), releases, then takes it shared.
  const b = new Locker('hv-b', { fileLockspaceDir: lockspace });
  run(b, stateB, [{ kind: 'lock', disk: excl, owner: vmB, how: 'take' }]);
  run(b, stateB, [{ kind: 'unlock', resource: excl.resource, path: file, owner: vmB, how: 'drop' }]);
  run(b, stateB, [{ kind: 'lock', disk: shared, owner: vmB, how: 'take' }]);
  // hv-a restarts.
  const a2 = new Locker('hv-a', { fileLockspaceDir: lockspace, store });
  const adoption = a2.adopt(stateA, store.passed(), at(), 'adopted');
  const again = a2.reacquire(stateA, at());
  const kinds = [...adoption.facts, ...again.facts].map((f) => f.kind);
  const cleanup = () => {
    a2.closeAll();
    b.closeAll();
    store.clear();
  };
  return { adoption, again, kinds, cleanup };
}

test('control: without the stale description, the re-take sees the exclusive holder that came between (LeaseLost)', () => {
  const r = scenario(false);
  try {
    assert.ok(r.kinds.includes('LeaseLost'), `facts: ${JSON.stringify(r.kinds)}`);
  } finally {
    r.cleanup();
  }
});

// Adopting it is allowed (a description may hold a shared lock without a record slot: past 32 hosts,
// review27c F1, closing it dropped a running VM's lock); what must not happen is an adoption "held
// throughout": the gap check on the adopted description (adoptedGap) records the holder that came between.
test('a released shared description handed back while another host holds the disk shared is not adopted as held throughout', () => {
  const r = scenario(true);
  try {
    assert.ok(r.kinds.includes('LeaseLost'), `the exclusive holder that came between is not recorded: ${JSON.stringify(r.kinds)}`);
  } finally {
    r.cleanup();
  }
});

test.run();
