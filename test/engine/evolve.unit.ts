import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { evolve, fromSnapshot, heldBy, initialState, toSnapshot } from '../../src/engine/state.js';
import { AT, acquired, given, ref, released, vm1, vm2 } from '../helpers/fixtures.js';

test('given nothing, when LockAcquired, then the resource is held by that owner in that mode', () => {
  const s = given(acquired(vm1, '/img/a'));
  const r = s.resources.get(ref('/img/a').id)!;
  assert.is(r.mode, 'exclusive');
  assert.equal([...r.holders.keys()], [vm1.uuid]);
  assert.is(r.holders.get(vm1.uuid)!.since, AT);
  assert.ok(s.owners.has(vm1.uuid));
});

test('given two shared holders, when one releases, then the other still holds it; when both release, it is gone', () => {
  let s = given(acquired(vm1, '/img/a', 'shared'), acquired(vm2, '/img/a', 'shared'), released(vm1, '/img/a'));
  assert.equal([...s.resources.get(ref('/img/a').id)!.holders.keys()], [vm2.uuid]);
  s = evolve(s, released(vm2, '/img/a'));
  assert.is(s.resources.size, 0);
});

test('a join carries what the shared holding\'s take saw, so it outlives the taker leaving (review24a F1)', () => {
  const took = { ...acquired(vm1, '/img/a', 'shared') } as NewFact & { payload: object };
  const take = { ...took, payload: { ...took.payload, lockIno: '77', headGeneration: 2 } } as NewFact;
  const s = given(take, acquired(vm2, '/img/a', 'shared'), released(vm1, '/img/a'));
  const h = s.resources.get(ref('/img/a').id)!.holders.get(vm2.uuid)!;
  assert.is(h.lockIno, '77');
  assert.is(h.headGeneration, 2);
  // A fresh take after everyone left says only what it saw.
  const again = given(take, released(vm1, '/img/a'), acquired(vm2, '/img/a', 'shared'));
  assert.is(again.resources.get(ref('/img/a').id)!.holders.get(vm2.uuid)!.lockIno, undefined);
});

test('given a held lock, when LeaseLost, then it is no longer held', () => {
  const r = ref('/img/a');
  const lost = fact('LeaseLost', AT, { resource: r.id, name: r.name, lockspace: r.lockspace, kind: r.kind, disk: r.canonical, path: '/img/a', owner: vm1, mode: 'exclusive', holder: {}, reason: 'test' });
  assert.is(given(acquired(vm1, '/img/a'), lost).resources.size, 0);
});

test('facts that change no lock leave the lock table alone', () => {
  const before = given(acquired(vm1, '/img/a'));
  const r = ref('/img/b');
  const noChange: NewFact[] = [
    fact('DaemonStarted', AT, { pid: 1, version: 'x', lockspace: '/ls', held: 0 }),
    fact('DaemonStopped', AT, { pid: 1, reason: 'SIGTERM', held: 1 }),
    fact('InputRejected', AT, { source: 'jsonl', code: 'VMLOCKD_ERR_BAD_INPUT', message: 'x' }),
    fact('CommandFailed', AT, { source: 'api', code: 'VMLOCKD_ERR_IO', message: 'x', command: 'acquire' }),
    fact('LockRefused', AT, { resource: r.id, name: r.name, lockspace: r.lockspace, kind: r.kind, disk: r.canonical, path: '/img/b', owner: vm2, mode: 'exclusive', source: 't', holder: {}, message: 'm' }),
    fact('Reacquired', AT, { resource: ref('/img/a').id, name: 'x', lockspace: '/ls', kind: 'file', disk: '/img/a', path: '/img/a', owner: vm1, mode: 'exclusive' }),
  ];
  const after = noChange.reduce(evolve, given(acquired(vm1, '/img/a')));
  assert.equal(toSnapshot(after), toSnapshot(before));
});

test('given an inode on the fact, the alias index maps it to the resource until released', () => {
  const f = acquired(vm1, '/img/a');
  const withInode = { ...f, payload: { ...f.payload, inode: '1:2' } } as NewFact;
  const s = given(withInode);
  assert.equal([...s.byInode.get('1:2')!], [ref('/img/a').id]);
  evolve(s, released(vm1, '/img/a'));
  assert.is(s.byInode.size, 0);
});

test('given two resources recorded with one inode, releasing one keeps the other indexed', () => {
  const a = acquired(vm1, '/img/a');
  const b = acquired(vm2, '/img/b');
  const s = given({ ...a, payload: { ...a.payload, inode: '1:2' } } as NewFact, { ...b, payload: { ...b.payload, inode: '1:2' } } as NewFact);
  evolve(s, released(vm1, '/img/a'));
  assert.equal([...s.byInode.get('1:2')!], [ref('/img/b').id]);
  const snap = fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(s))));
  assert.equal([...snap.byInode.get('1:2')!], [ref('/img/b').id]);
});

test('a snapshot round trip gives the same state, and folding the rest after it equals folding everything', () => {
  const facts = [acquired(vm1, '/img/a'), acquired(vm2, '/img/b', 'shared'), acquired(vm1, '/img/b', 'shared'), released(vm2, '/img/b'), acquired(vm2, '/img/c')];
  const all = given(...facts);
  const half = given(...facts.slice(0, 2));
  const resumed = facts.slice(2).reduce(evolve, fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(half)))));
  assert.equal(toSnapshot(resumed), toSnapshot(all));
  assert.equal(heldBy(all, vm1.uuid).map((r) => r.ref.canonical), ['/img/a', '/img/b']);
});

test('a stored fact advances seq', () => {
  const s = evolve(initialState(), { ...acquired(vm1, '/img/a'), seq: 7, host: 'h' } as never);
  assert.is(s.seq, 7);
});

test('a snapshot of an unknown shape is refused with a clear message', () => {
  assert.throws(() => fromSnapshot({ v: 99 }), /unknown shape/);
});

test('a disk held without an identity is unidentified until IdentityLearned; then it is indexed by it, once, and a snapshot keeps it (review25a F1)', () => {
  const r = ref('/img/a');
  const learnt = (inode: string) =>
    fact('IdentityLearned', AT, { resource: r.id, name: r.name, lockspace: r.lockspace, kind: r.kind, disk: r.canonical, path: '/img/a', inode, owner: vm1, mode: 'exclusive', source: 'test' });
  let s = given(acquired(vm1, '/img/a'));
  assert.equal([...s.unidentified], [r.id]);
  s = evolve(s, learnt('1:2:3'));
  assert.equal([...s.unidentified], []);
  assert.is(s.resources.get(r.id)!.ref.inode, '1:2:3');
  assert.equal([...s.byInode.get('1:2:3')!], [r.id]);
  assert.equal([...s.resources.get(r.id)!.holders.keys()], [vm1.uuid]);
  // Learnt once: a later file at the path is another disk.
  s = evolve(s, learnt('1:9:9'));
  assert.is(s.resources.get(r.id)!.ref.inode, '1:2:3');
  assert.not.ok(s.byInode.has('1:9:9'));
  const snap = fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(s))));
  assert.equal([...snap.byInode.get('1:2:3')!], [r.id]);
  assert.equal([...snap.unidentified], []);
  // Released: unindexed. Unidentified and released: gone from the set too.
  assert.is(evolve(s, released(vm1, '/img/a')).byInode.size, 0);
  assert.equal([...given(acquired(vm1, '/img/a'), released(vm1, '/img/a')).unidentified], []);
  // A lock file named by the requester (its "disk" is the lock file itself) has no disk to learn.
  const named = fact('LockAcquired', AT, { resource: '/ls/x', name: 'x', lockspace: '/ls', kind: 'file', disk: '/ls/x', path: '/ls/x', owner: vm1, mode: 'exclusive', source: 'virtlockd' });
  assert.equal([...given(named).unidentified], []);
});

test('LibvirtVouched: kept for an owner while it holds locks, forgotten at its last release, carried by a snapshot (decision 0025)', () => {
  const libvirt = { uri: 'qemu:///system', host: 'hv1' };
  const vouched = fact('LibvirtVouched', AT, { owner: vm1, libvirt, source: 'virsh' });
  // An owner holding nothing: nothing to vouch for, nothing kept.
  assert.is(given(vouched).vouchedBy.size, 0);
  const s = given(acquired(vm1, '/img/a'), acquired(vm1, '/img/b'), vouched);
  assert.equal(s.vouchedBy.get(vm1.uuid), libvirt);
  assert.equal(fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(s)))).vouchedBy.get(vm1.uuid), libvirt);
  evolve(s, released(vm1, '/img/a'));
  assert.equal(s.vouchedBy.get(vm1.uuid), libvirt, 'still holds /img/b');
  evolve(s, released(vm1, '/img/b'));
  assert.is(s.vouchedBy.size, 0);
  // A later take of the same VM starts unvouched.
  assert.is(evolve(s, acquired(vm1, '/img/a')).vouchedBy.size, 0);
  // A snapshot written before decision 0025 has no vouchedBy.
  const old = toSnapshot(given(acquired(vm2, '/img/c'))) as { vouchedBy?: unknown };
  assert.is(old.vouchedBy, undefined);
  assert.is(fromSnapshot(JSON.parse(JSON.stringify(old))).vouchedBy.size, 0);
});

test.run();
