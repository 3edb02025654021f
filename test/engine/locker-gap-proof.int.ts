// review26a F3: a re-take that finds the proof of a gap intrusion (decision 0020) must not write this
// host's record over it, nor hand the descriptor to the store, before the LeaseLost is journaled
// (Locker.recordRetakes(), called by the start once its facts are in the journal). Real lock files,
// real OFD locks, the real locker; "a SIGKILL" is the start's locker closing every descriptor without
// a release (what the kernel does for a killed process), and "systemd's store" keeps dup'd copies of
// the descriptions it is handed (the same open file descriptions, as systemd's store does).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { NewFact } from '../../src/engine/facts.js';
import { Locker, type DescriptorStore, type PassedFd } from '../../src/engine/locker.js';
import { native } from '../../src/engine/native.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import type { Intent, Mode, Owner, ResourceRef } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';

const vm1: Owner = { uuid: '00000001-0000-4000-8000-000000000000', name: 'vm1' };
const vm2: Owner = { uuid: '00000002-0000-4000-8000-000000000000', name: 'vm2' };

/** systemd's descriptor store: a dup'd copy of each description it is handed. */
class Store implements DescriptorStore {
  readonly fds = new Map<string, number>();
  store(name: string, fd: number): void {
    this.remove(name);
    this.fds.set(name, native.dupFd(fd));
  }
  remove(name: string): void {
    const fd = this.fds.get(name);
    if (fd !== undefined) fs.closeSync(fd);
    this.fds.delete(name);
  }
  /** What the next start is handed (LISTEN_FDS); the store keeps its copies. */
  passed(): PassedFd[] {
    return [...this.fds].map(([name, fd]) => ({ name, fd: native.dupFd(fd) }));
  }
}

function setup() {
  const dir = tmpdir('vmlockd-gap-proof-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'img'));
  const disk = path.join(dir, 'img', 'D.qcow2');
  fs.writeFileSync(disk, '');
  const at = () => new Date().toISOString();
  const resolved = (mode: Mode) => resolveDisk({ path: disk, mode }, { fileLockspaceDir: lockspace }, initialState());
  const take = (locker: Locker, owner: Owner, mode: Mode): { ref: ResourceRef; facts: NewFact[] } => {
    const d = resolved(mode);
    const p = locker.prepare([{ kind: 'lock', disk: d, owner, how: 'take' } as Intent], { at: at(), source: 'test' });
    assert.is(p.outcome.status, 'ok', JSON.stringify(p.outcome));
    p.commit();
    return { ref: d.resource, facts: p.facts };
  };
  const release = (locker: Locker, ref: ResourceRef, owner: Owner) => {
    const p = locker.prepare([{ kind: 'unlock', resource: ref, path: disk, owner, how: 'drop' } as Intent], { at: at(), source: 'test' });
    p.commit();
  };
  const head = (ref: ResourceRef) => {
    const b = fs.readFileSync(ref.id).subarray(0, 512);
    return JSON.parse(b.toString('utf8').replace(/\0/g, '').trim()) as { host: string; gen: number; mode: string; took?: string };
  };
  /** The lock file's exclusive record, as text. */
  const recordText = (ref: ResourceRef) => fs.readFileSync(ref.id).subarray(0, 512).toString('utf8').replace(/\0/g, '').trim();
  const lockedByOther = (ref: ResourceRef) => {
    const fd = fs.openSync(ref.id, fs.constants.O_RDONLY);
    try {
      return native.ofdGetLk(fd, 'write', 0, 1) !== null;
    } finally {
      fs.closeSync(fd);
    }
  };
  return { lockspace, at, take, release, head, recordText, lockedByOther };
}

const lostOf = (facts: readonly NewFact[]) => facts.filter((f) => f.kind === 'LeaseLost');

// Each intrusion whose proof this host's own record would replace (the review's list).
const cases: Array<{ name: string; held: Mode; intrude: (t: ReturnType<typeof setup>, b: Locker) => void }> = [
  {
    name: 'held exclusive; another host took it exclusive and released it',
    held: 'exclusive',
    intrude: (t, b) => t.release(b, t.take(b, vm2, 'exclusive').ref, vm2),
  },
  {
    name: 'held exclusive; another host took it shared (closing the record) and released it',
    held: 'exclusive',
    intrude: (t, b) => t.release(b, t.take(b, vm2, 'shared').ref, vm2),
  },
  {
    name: 'held shared; another host took it exclusive and died holding it (its record left "exclusive")',
    held: 'shared',
    intrude: (t, b) => {
      t.take(b, vm2, 'exclusive');
      b.closeAll();
    },
  },
];

for (const c of cases) {
  test(`${c.name}: the proof outlives a SIGKILL before the LeaseLost is journaled, and an adoption of the store's descriptor`, () => {
    const t = setup();
    const store = new Store();
    const a = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
    const { ref, facts } = t.take(a, vm1, c.held);
    const state: State = initialState();
    for (const f of facts) evolve(state, f);
    // A is SIGKILLed: its descriptions go (the store's copy too: a start without systemd).
    a.closeAll();
    store.remove([...store.fds.keys()][0]!);
    const b = new Locker('hv-b', { fileLockspaceDir: t.lockspace });
    c.intrude(t, b);
    const proof = t.recordText(ref);
    assert.is.not(t.head(ref).host, 'hv-a');

    // A starts: the re-take finds the intrusion, holds the lock, and leaves the proof alone.
    const a2 = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
    const first = a2.reacquire(state, t.at());
    assert.is(lostOf(first.facts).length, 1, JSON.stringify(first.facts));
    assert.ok(t.lockedByOther(ref), 'the re-take holds the lock');
    assert.ok(a2.isHeld(ref.id));
    assert.equal(t.recordText(ref), proof, 'the lock file still holds the intruder\'s record');
    assert.is(store.fds.size, 0, 'the descriptor is not in the store before the LeaseLost is journaled');
    assert.is(a2.keptProofCount, 1);

    // SIGKILL before the facts are journaled; the next start (adopting whatever the store kept) still finds it.
    a2.closeAll();
    const a3 = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
    const adoption = a3.adopt(state, store.passed(), t.at(), 'adopted');
    assert.is(adoption.adopted, 0);
    const second = a3.reacquire(state, t.at());
    assert.is(lostOf(second.facts).length, 1, `the next start reports the intrusion again: ${JSON.stringify(second.facts)}`);

    // This time the facts are journaled; then the record is this host's and the store holds the lock.
    for (const f of second.facts) evolve(state, f);
    assert.is(a3.recordRetakes(), 1);
    assert.is(a3.keptProofCount, 0);
    assert.is(store.fds.size, 1);
    if (c.held === 'exclusive') {
      assert.is(t.head(ref).host, 'hv-a');
      assert.is(t.head(ref).mode, 'exclusive');
    }
    assert.equal(a3.verify(), []);
    // A plain restart after that (no store): its own record, nothing to report.
    a3.closeAll();
    store.remove([...store.fds.keys()][0]!);
    const a4 = new Locker('hv-a', { fileLockspaceDir: t.lockspace, store });
    const third = a4.reacquire(state, t.at());
    assert.equal(lostOf(third.facts), [], JSON.stringify(third.facts));
    assert.is(a4.keptProofCount, 0);
    assert.is(store.fds.size, 1, 'a re-take without an intrusion goes to the store at once');
    a4.closeAll();
    for (const name of [...store.fds.keys()]) store.remove(name);
  });
}

test('a release of a re-taken lock whose record was never written leaves the proof in the lock file', () => {
  const t = setup();
  const a = new Locker('hv-a', { fileLockspaceDir: t.lockspace });
  const { ref, facts } = t.take(a, vm1, 'exclusive');
  const state: State = initialState();
  for (const f of facts) evolve(state, f);
  a.closeAll();
  const b = new Locker('hv-b', { fileLockspaceDir: t.lockspace });
  t.release(b, t.take(b, vm2, 'exclusive').ref, vm2);
  const proof = t.recordText(ref);
  const a2 = new Locker('hv-a', { fileLockspaceDir: t.lockspace });
  assert.is(lostOf(a2.reacquire(state, t.at()).facts).length, 1);
  t.release(a2, ref, vm1);
  assert.not.ok(t.lockedByOther(ref));
  assert.equal(t.recordText(ref), proof);
  assert.is(a2.recordRetakes(), 0);
});

test.run();
