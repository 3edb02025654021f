import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decide } from '../../src/engine/decide.js';
import type { ResolvedCommand, ResolvedDisk } from '../../src/engine/types.js';
import { AT, HOST, acquired, disk, given, vm1, vm2, vm3 } from '../helpers/fixtures.js';
import { fact } from '../../src/engine/facts.js';

const seen = (...owners: (typeof vm1)[]) => owners.map((o) => fact('OwnerSeen', AT, { owner: o, source: 'test' }));
const acquire = (owner: typeof vm1, ...resolved: ResolvedDisk[]): ResolvedCommand => ({ kind: 'acquire', owner, disks: resolved.map((d) => ({ path: d.path, mode: d.mode })), resolved, at: AT, source: 'test' });
const check = (owner: typeof vm1, ...resolved: ResolvedDisk[]): ResolvedCommand => ({ kind: 'check', owner, disks: resolved.map((d) => ({ path: d.path, mode: d.mode })), resolved, at: AT, source: 'test' });
const release = (owner: typeof vm1, ...resolved: ResolvedDisk[]): ResolvedCommand =>
  resolved.length ? { kind: 'release', owner, paths: resolved.map((d) => d.path), resolved, at: AT, source: 'test' } : { kind: 'release', owner, at: AT, source: 'test' };

test('given nothing held, when a new VM acquires two disks, then it is seen and both are taken from the kernel', () => {
  const a = disk('/img/a'), b = disk('/img/b', 'shared');
  assert.equal(decide(acquire(vm1, a, b), given(), HOST), [
    { kind: 'see', owner: vm1 },
    { kind: 'lock', disk: a, owner: vm1, how: 'take' },
    { kind: 'lock', disk: b, owner: vm1, how: 'take' },
  ]);
});

test('given vm1 holds a exclusively, when vm2 acquires a and b, then only a refusal naming vm1 on this host comes out (all or nothing)', () => {
  const state = given(...seen(vm1, vm2), acquired(vm1, '/img/a'));
  const a = disk('/img/a'), b = disk('/img/b');
  assert.equal(decide(acquire(vm2, b, a), state, HOST), [
    { kind: 'refuse', disk: a, owner: vm2, holder: { host: HOST, owner: vm1, mode: 'exclusive', since: AT } },
  ]);
});

test('given vm1 holds a shared, when vm2 asks shared, then it joins without a second kernel lock', () => {
  const state = given(...seen(vm1, vm2), acquired(vm1, '/img/a', 'shared'));
  const a = disk('/img/a', 'shared');
  assert.equal(decide(acquire(vm2, a), state, HOST), [{ kind: 'lock', disk: a, owner: vm2, how: 'join' }]);
});

test('given vm1 and vm2 hold a shared, when vm3 asks exclusive, then it is refused', () => {
  const state = given(...seen(vm1, vm2, vm3), acquired(vm1, '/img/a', 'shared'), acquired(vm2, '/img/a', 'shared'));
  const out = decide(acquire(vm3, disk('/img/a')), state, HOST);
  assert.is(out.length, 1);
  assert.is(out[0]!.kind, 'refuse');
});

test('given vm1 holds a exclusively, when vm2 asks shared, then it is refused', () => {
  const state = given(...seen(vm1, vm2), acquired(vm1, '/img/a'));
  assert.is(decide(acquire(vm2, disk('/img/a', 'shared')), state, HOST)[0]!.kind, 'refuse');
});

test('given vm1 holds a, when vm1 asks for a again, then it is already held (idempotent, no kernel call)', () => {
  const state = given(...seen(vm1), acquired(vm1, '/img/a'));
  const a = disk('/img/a');
  assert.equal(decide(acquire(vm1, a), state, HOST), [{ kind: 'already', disk: a, owner: vm1 }]);
  const s = disk('/img/a', 'shared');
  assert.equal(decide(acquire(vm1, s), state, HOST), [{ kind: 'already', disk: s, owner: vm1 }]);
});

test('given vm1 holds a shared with vm2, when vm1 asks to upgrade to exclusive, then it is refused naming vm2', () => {
  const state = given(...seen(vm1, vm2), acquired(vm1, '/img/a', 'shared'), acquired(vm2, '/img/a', 'shared'));
  const out = decide(acquire(vm1, disk('/img/a')), state, HOST);
  assert.equal(out.map((i) => i.kind), ['refuse']);
  assert.equal(out[0]!.kind === 'refuse' && out[0]!.holder.owner, vm2);
});

test('given one command names one resource twice, when decided, then it asks once in the stronger mode', () => {
  const a1 = disk('/img/a', 'shared'), a2 = disk('/img/a', 'exclusive');
  assert.equal(decide(acquire(vm1, a1, a2), given(...seen(vm1)), HOST), [{ kind: 'lock', disk: a2, owner: vm1, how: 'take' }]);
});

test('given vm1 holds a and b, when it releases everything, then both are dropped from the kernel', () => {
  const state = given(...seen(vm1), acquired(vm1, '/img/a'), acquired(vm1, '/img/b'));
  const out = decide(release(vm1), state, HOST);
  assert.equal(out.map((i) => i.kind === 'unlock' && [i.resource.canonical, i.how]), [['/img/a', 'drop'], ['/img/b', 'drop']]);
});

test('given vm1 and vm2 share a, when vm1 releases a, then the kernel lock stays for vm2', () => {
  const state = given(...seen(vm1, vm2), acquired(vm1, '/img/a', 'shared'), acquired(vm2, '/img/a', 'shared'));
  const out = decide(release(vm1, disk('/img/a')), state, HOST);
  assert.equal(out.map((i) => i.kind === 'unlock' && i.how), ['leave']);
});

test('given vm1 holds a and b, when it releases only b, then only b is unlocked', () => {
  const state = given(...seen(vm1), acquired(vm1, '/img/a'), acquired(vm1, '/img/b'));
  const out = decide(release(vm1, disk('/img/b')), state, HOST);
  assert.equal(out.map((i) => i.kind === 'unlock' && i.resource.canonical), ['/img/b']);
});

test('given vm2 holds nothing, when it releases a disk vm1 holds, then nothing happens (a VM releases only its own)', () => {
  const state = given(...seen(vm1, vm2), acquired(vm1, '/img/a'));
  assert.equal(decide(release(vm2, disk('/img/a')), state, HOST), []);
});

test('given nothing held locally, when vm1 checks a, then the locker is asked to probe, not lock', () => {
  const a = disk('/img/a');
  assert.equal(decide(check(vm1, a), given(...seen(vm1)), HOST), [{ kind: 'probe', disk: a, owner: vm1 }]);
});

test('given vm1 holds a, when vm2 checks a, then it is refused without any kernel call', () => {
  const state = given(...seen(vm1, vm2), acquired(vm1, '/img/a'));
  assert.equal(decide(check(vm2, disk('/img/a')), state, HOST).map((i) => i.kind), ['refuse']);
});

test('given a known owner, when it comes back under a new name, then it is seen again', () => {
  const state = given(...seen(vm1));
  const renamed = { ...vm1, name: 'web1-renamed' };
  assert.equal(decide({ kind: 'observe', owner: renamed, event: 'defined', at: AT, source: 'test' }, state, HOST), [{ kind: 'see', owner: renamed }]);
  assert.equal(decide({ kind: 'observe', owner: vm1, event: 'defined', at: AT, source: 'test' }, state, HOST), []);
});

test('decide is pure: it does not modify the state it is given', () => {
  const state = given(...seen(vm1), acquired(vm1, '/img/a'));
  const before = JSON.stringify([...state.resources.entries()].map(([k, v]) => [k, [...v.holders.entries()]]));
  decide(acquire(vm2, disk('/img/a')), state, HOST);
  decide(release(vm1), state, HOST);
  assert.is(JSON.stringify([...state.resources.entries()].map(([k, v]) => [k, [...v.holders.entries()]])), before);
});

test.run();
