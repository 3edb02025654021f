// review28b (fix28b, a48ceb5/f30baf9): probes for a false loss from the verifier's /proc/self/fdinfo
// check of a shared direct lock (Locker.listed, ofdHeldBy) and for a false "unproven" adoption: the
// held descriptor numbered above 1024 among many other locked descriptions, a second local VM joining
// and the first leaving, the description dup'd into the store and the daemon's own copy closed and
// handed back, another host sharing the disk throughout. None of these may read as a loss.
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

const vm1: Owner = { uuid: '00000001-0000-4000-8000-00000000028b', name: 'vm1' };
const vm2: Owner = { uuid: '00000002-0000-4000-8000-00000000028b', name: 'vm2' };
const vmB: Owner = { uuid: '00000003-0000-4000-8000-00000000028b', name: 'vmB' };

test('a shared direct lock held through a descriptor above 1024, joined and left by local VMs, dup\'d to the store and adopted back, while another host shares it: never a loss, never unproven', () => {
  const dir = tmpdir('vmlockd-r28b-listed-');
  const filler: number[] = [];
  const others: string[] = [];
  const store = new TestStore();
  const state: State = initialState();
  const at = () => new Date().toISOString();
  let a: Locker | undefined;
  let a2: Locker | undefined;
  const b = new Locker('hv-b', { fileLockspaceDir: null });
  try {
    // 1,100 other images, each locked shared by a description of its own (many locks, fds over 1024).
    for (let i = 0; i < 1100; i++) {
      const f = path.join(dir, `other-${i}.img`);
      fs.writeFileSync(f, 'x');
      others.push(f);
      const fd = fs.openSync(f, 'r');
      assert.ok(native.ofdSetLk(fd, 'read', 0, 1));
      filler.push(fd);
    }
    const file = path.join(dir, 'X.img');
    fs.writeFileSync(file, 'image');
    const shared: ResolvedDisk = resolveDisk({ path: file, mode: 'shared' }, { fileLockspaceDir: null }, initialState());
    assert.is(shared.resource.kind, 'direct');
    a = new Locker('hv-a', { fileLockspaceDir: null, store });
    const run = (l: Locker, intents: Intent[]) => {
      const p = l.prepare(intents, { at: at(), source: 'test' });
      assert.is(p.outcome.status, 'ok', JSON.stringify(p.outcome));
      p.commit();
      if (l === a) for (const f of p.facts) evolve(state, f);
    };
    run(b, [{ kind: 'lock', disk: shared, owner: vmB, how: 'take' }]);
    run(a, [{ kind: 'lock', disk: shared, owner: vm1, how: 'take' }]);
    const fd = a.descriptors()[0]!.fd;
    assert.ok(fd > 1024, `the held descriptor is ${fd}`);
    assert.is(ofdHeldBy(fd), true);
    assert.equal(a.verify(), []);
    // A second local VM joins (the same description), the first leaves.
    run(a, [{ kind: 'lock', disk: shared, owner: vm2, how: 'join' }]);
    assert.equal(a.verify(), []);
    run(a, [{ kind: 'unlock', resource: shared.resource, path: file, owner: vm1, how: 'leave' }]);
    assert.equal(a.verify(), [], 'a local VM leaving a shared direct disk is no loss');
    assert.is(ofdHeldBy(fd), true);
    // The daemon stops (closes its copy); the store's dup is handed back and adopted.
    a.closeAll();
    a = undefined;
    a2 = new Locker('hv-a', { fileLockspaceDir: null, store });
    const adoption = a2.adopt(state, store.passed(), at(), 'adopted');
    assert.is(adoption.adopted, 1, JSON.stringify(adoption));
    assert.is(adoption.unproven, undefined, `a description that held its lock throughout is not unproven: ${JSON.stringify(adoption)}`);
    assert.equal(a2.reacquire(state, at()).facts, []);
    assert.equal(a2.verify(), [], 'the adopted description is no loss');
    // The other host leaves and comes back: still no loss.
    b.closeAll();
    assert.equal(a2.verify(), []);
  } finally {
    a?.closeAll();
    a2?.closeAll();
    b.closeAll();
    store.clear();
    for (const fd of filler) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
