// wait27 (MEDIUM): the verifier's re-take (Locker.retake) wrote this host's holder record into the
// lock file at once, while its LeaseLost and Reacquired could still wait for room (a full state
// directory: they wait in memory, decision 0026). A SIGKILL then left the file naming this host at a
// generation above the journal's, over the record of the host that held the disk while the lock was
// gone; the next start reads "our own record, facts lost with the journal" and records no loss.
// Invariant: a record on the lockspace never claims more than the journal can vouch for after a
// crash. Now the re-take writes nothing (what it found stays, keptProof) until recordRetakes(),
// which the daemon calls once those facts are durable; its descriptor goes to the store at once.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeExclusive } from '../../src/engine/holder-record.js';
import { Locker, fdName, type DescriptorStore } from '../../src/engine/locker.js';
import { native } from '../../src/engine/native.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import type { Intent, Mode, Owner } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';

const vm1: Owner = { uuid: '00000001-0000-4000-8000-000000000000', name: 'vm1' };
const vmB: Owner = { uuid: '00000002-0000-4000-8000-000000000000', name: 'vmB' };

class Store implements DescriptorStore {
  readonly names: string[] = [];
  store(name: string): void {
    this.names.push(name);
  }
  remove(name: string): void {
    for (let i = this.names.length - 1; i >= 0; i--) if (this.names[i] === name) this.names.splice(i, 1);
  }
}

function head(file: string) {
  const buf = Buffer.alloc(512);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, buf, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
  return decodeExclusive(buf);
}

function scenario(mode: Mode) {
  const dir = tmpdir('vmlockd-wait27-');
  const lockspace = path.join(dir, 'lockspace');
  const img = path.join(dir, 'X.img');
  fs.writeFileSync(img, '');
  const disk = resolveDisk({ path: img, mode }, { fileLockspaceDir: lockspace }, initialState());
  const excl = resolveDisk({ path: img, mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
  const at = () => new Date().toISOString();
  const stateA: State = initialState();
  const stateB: State = initialState();
  const run = (l: Locker, state: State, intents: Intent[]) => {
    const p = l.prepare(intents, { at: at(), source: 'test' });
    assert.is(p.outcome.status, 'ok', JSON.stringify(p.outcome));
    p.commit();
    for (const f of p.facts) evolve(state, f);
  };
  const store = new Store();
  const a = new Locker('hv-a', { fileLockspaceDir: lockspace, store });
  run(a, stateA, [{ kind: 'lock', disk, owner: vm1, how: 'take' }]);
  const file = disk.resource.id;
  // hv-a's lock goes (a cluster filesystem dropped it); hv-b takes the disk exclusive and lets it go.
  assert.ok(native.ofdSetLk(a.descriptors()[0]!.fd, 'unlock', 0, 0));
  const b = new Locker('hv-b', { fileLockspaceDir: lockspace });
  run(b, stateB, [{ kind: 'lock', disk: excl, owner: vmB, how: 'take' }]);
  run(b, stateB, [{ kind: 'unlock', resource: excl.resource, path: img, owner: vmB, how: 'drop' }]);
  const intruder = head(file);
  assert.is(intruder?.host, 'hv-b');
  // hv-a's verifier sees the loss and takes the lock again.
  const v = a.verify();
  assert.is(v.length, 1);
  assert.is(v[0]!.status, 'lost');
  const r = a.retake(disk.resource, mode, [{ ...vm1, since: at() }], at());
  assert.ok(r.ok && !r.kept, JSON.stringify(r));
  return { a, b, file, store, stateA, intruder, at, cleanup: () => (a.closeAll(), b.closeAll()) };
}

for (const mode of ['exclusive', 'shared'] as const) {
  test(`${mode}: the verifier's re-take leaves what it found until its facts are journaled; a crash before that is a LeaseLost at the next start`, () => {
    const s = scenario(mode);
    try {
      // Its facts wait (a full disk): the file still shows the intruder, not this host.
      assert.equal(head(s.file), s.intruder, `the re-take wrote its record before its facts were journaled: ${JSON.stringify(head(s.file))}`);
      assert.equal(s.store.names, [fdName(s.file)], 'the new descriptor is in the store at once');
      // SIGKILL now: the lock goes with the process (the store's copy aside); the next start re-takes
      // against the journal, which knows only vm1's first take.
      s.a.closeAll();
      const next = new Locker('hv-a', { fileLockspaceDir: path.dirname(s.file) });
      try {
        const again = next.reacquire(s.stateA, s.at());
        assert.ok(again.lost.length >= 1, `no LeaseLost after the crash: ${JSON.stringify(again.facts.map((f) => f.kind))}`);
      } finally {
        next.closeAll();
      }
    } finally {
      s.cleanup();
    }
  });

  test(`${mode}: once the facts are journaled, recordRetakes() writes this host's record, and stores nothing twice`, () => {
    const s = scenario(mode);
    try {
      assert.is(s.a.recordRetakes('start'), 0, 'the start\'s facts being journaled is not enough');
      assert.equal(head(s.file), s.intruder);
      assert.is(s.a.recordRetakes(), 1);
      const h = head(s.file)!;
      if (mode === 'exclusive') {
        assert.is(h.host, 'hv-a');
        assert.is(h.mode, 'exclusive');
        assert.ok(h.gen > s.intruder!.gen);
      } else {
        assert.is.not(h.mode, 'exclusive');
      }
      assert.equal(s.store.names, [fdName(s.file)]);
      assert.equal(s.a.verify(), []);
    } finally {
      s.cleanup();
    }
  });
}

test.run();
