// The start's proof that a disk was not this host's alone while vmlockd was down (locker.ts
// gapIntruder, decision 0020): which findings of a re-take (the lock file's size, exclusive record,
// inode) against what the takes journaled (generation, headGeneration, lockIno) are an intrusion,
// and which are not.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeExclusive, decodeShared, encodeExclusive, encodeShared, isOwnHost, shortHost, type ExclusiveRecord } from '../../src/engine/holder-record.js';
import { gapIntruder, takeSeen, u64, type LeaseSeen } from '../../src/engine/locker.js';

const VM1 = { uuid: '11111111-1111-4111-8111-111111111111', name: 'web1' };
const VM2 = { uuid: '22222222-2222-4222-8222-222222222222', name: 'intruder' };
const rec = (o: Partial<ExclusiveRecord>): ExclusiveRecord => ({ v: 1, mode: 'free', gen: 8, host: 'hv-b', pid: 42, since: '2026-11-30T17:00:00.000Z', disk: '/images/a.img', vm: VM2, ...o });
const ours = (o: Partial<ExclusiveRecord> = {}): ExclusiveRecord => rec({ mode: 'exclusive', gen: 7, host: 'hv-a', vm: VM1, ...o });
const file = (head: ExclusiveRecord | undefined, o: Partial<LeaseSeen> = {}): LeaseSeen => ({ size: 17408, ino: '4242', ...(head ? { head } : {}), ...o });
const held = [{ owner: VM1, generation: 7, lockIno: '4242' }];
const sharedHeld = [{ owner: VM1, headGeneration: 7, lockIno: '4242' }];

test('held exclusive: another host granted another VM a generation above ours, and released it: the intruder, named', () => {
  const r = gapIntruder(file(rec({})), 'hv-a', 'exclusive', held);
  assert.equal(r?.holder, { host: 'hv-b', mode: 'exclusive', since: '2026-11-30T17:00:00.000Z', generation: 8, pid: 42, owner: VM2 });
  assert.match(r!.reason, 'generation 8) and released since: if this VM ran on meanwhile');
  assert.is(gapIntruder(file(rec({ mode: 'exclusive', gen: 12 })), 'hv-a', 'exclusive', held)?.holder.generation, 12);
});

test('held exclusive: a shared take closed our dead record (took: shared): the shared intruder, named', () => {
  const r = gapIntruder(file(rec({ gen: 7, took: 'shared' })), 'hv-a', 'exclusive', held);
  assert.is(r?.holder.mode, 'shared');
  assert.is(r?.holder.host, 'hv-b');
  assert.equal(r?.holder.owner, VM2);
  assert.match(r!.reason, 'taken shared by another owner while vmlockd was down (host hv-b, VM intruder)');
});

test('held exclusive: another host\'s record at or below our generation, an erased record, an empty file: replaced or reset', () => {
  for (const gen of [7, 3, 1]) {
    const r = gapIntruder(file(rec({ gen })), 'hv-a', 'exclusive', held);
    assert.is(r?.holder.host, 'hv-b', `generation ${gen}`);
    assert.match(r!.reason, 'replaced or reset');
  }
  assert.match(gapIntruder(file(undefined), 'hv-a', 'exclusive', held)!.reason, 'erased');
  assert.match(gapIntruder(file(undefined, { size: 0 }), 'hv-a', 'exclusive', held)!.reason, 'removed');
  assert.match(gapIntruder(file(ours({ gen: 5 })), 'hv-a', 'exclusive', held)!.reason, 'below the journaled 7');
  assert.match(gapIntruder(null, 'hv-a', 'exclusive', held)!.reason, "no longer holds vmlockd's records");
  // Another host's record at our very generation is not "below" it (review24a F4: a changed host_id reads so).
  const same = gapIntruder(file(rec({ mode: 'exclusive', gen: 7 })), 'hv-a', 'exclusive', held)!.reason;
  assert.not.match(same, 'below');
  assert.match(same, 'names host hv-b at generation 7, not this host (hv-a)');
  assert.match(same, 'host_id changed');
  assert.match(gapIntruder(file(rec({ gen: 3 })), 'hv-a', 'exclusive', held)!.reason, 'below the journaled 7');
});

test('either mode: another inode than the take journaled: replaced, naming what the new file says', () => {
  const r = gapIntruder(file(ours(), { ino: '99' }), 'hv-a', 'exclusive', held);
  assert.match(r!.reason, 'replaced while vmlockd was down (inode 99, the take\'s was 4242)');
  assert.equal(r!.holder, {});
  assert.is(gapIntruder(file(rec({ gen: 2 }), { ino: '99' }), 'hv-a', 'shared', sharedHeld)?.holder.host, 'hv-b');
  // A 64-bit GlusterFS inode compares as the decimal string it is journaled as.
  assert.is(gapIntruder(file(ours(), { ino: '18446744073709551615' }), 'hv-a', 'exclusive', [{ generation: 7, lockIno: '18446744073709551615' }]), undefined);
});

test('held shared: an exclusive grant of another host in the gap (its generation above the one our take saw): the intruder', () => {
  const r = gapIntruder(file(rec({ gen: 8 })), 'hv-a', 'shared', sharedHeld);
  assert.equal(r?.holder, { host: 'hv-b', mode: 'exclusive', since: '2026-11-30T17:00:00.000Z', generation: 8, pid: 42, owner: VM2 });
  assert.match(r!.reason, 'taken exclusive by another owner');
  // A file never held exclusive: our take saw generation 0.
  assert.is(gapIntruder(file(rec({ gen: 1 })), 'hv-a', 'shared', [{ headGeneration: 0 }])?.holder.host, 'hv-b');
  // Below what our take saw: the file was replaced or reset.
  assert.match(gapIntruder(file(rec({ gen: 2 })), 'hv-a', 'shared', sharedHeld)!.reason, 'replaced or reset');
  assert.match(gapIntruder(file(undefined, { size: 0 }), 'hv-a', 'shared', [{ headGeneration: 0 }])!.reason, 'removed');
});

test('held shared: the record rewritten at the very generation the take saw (a reset file granted again): cannot be told, named (review24a F3)', () => {
  const stamped = [{ owner: VM1, headGeneration: 7, headStamp: 'hv-c@2026-11-30T16:00:00.000Z', lockIno: '4242' }];
  const r = gapIntruder(file(rec({ gen: 7 })), 'hv-a', 'shared', stamped);
  assert.is(r?.holder.host, 'hv-b');
  assert.match(r!.reason, 'rewritten while vmlockd was down (it names host hv-b since 2026-11-30T17:00:00.000Z at generation 7; the take saw hv-c@2026-11-30T16:00:00.000Z)');
  assert.match(r!.reason, 'cannot be told');
  // The record gone where the take saw one at generation 0 (a free record, gen 0, never happens: an erased one is "below").
  assert.match(gapIntruder(file(undefined), 'hv-a', 'shared', [{ headGeneration: 0, headStamp: 'hv-b@2026-11-30T17:00:00.000Z', lockIno: '4242' }])!.reason, 'it is gone');
  // Unchanged, another shared taker's closing write, a take that closed the record itself (no stamp): none.
  assert.is(gapIntruder(file(rec({ gen: 7 })), 'hv-a', 'shared', [{ headGeneration: 7, headStamp: 'hv-b@2026-11-30T17:00:00.000Z', lockIno: '4242' }]), undefined);
  assert.is(gapIntruder(file(rec({ gen: 7, took: 'shared', host: 'hv-d' })), 'hv-a', 'shared', stamped), undefined);
  assert.is(gapIntruder(file(rec({ gen: 7 })), 'hv-a', 'shared', sharedHeld), undefined);
  assert.is(gapIntruder(file(undefined), 'hv-a', 'shared', [{ headGeneration: 0, headStamp: '' }]), undefined);
});

test('no proof, no alarm: nothing changed, our own record, a shared neighbour, a journal without the fields, a disk locked in place', () => {
  assert.is(gapIntruder(file(ours()), 'hv-a', 'exclusive', held), undefined);
  assert.is(gapIntruder(file(ours({ gen: 9 })), 'hv-a', 'exclusive', held), undefined, 'a generation the journal lost');
  assert.is(gapIntruder(file(ours({ mode: 'free' })), 'hv-a', 'exclusive', held), undefined);
  // Held shared: the record unchanged, or closed by another shared taker (same generation).
  assert.is(gapIntruder(file(rec({ gen: 7 })), 'hv-a', 'shared', sharedHeld), undefined);
  assert.is(gapIntruder(file(rec({ gen: 7, took: 'shared' })), 'hv-a', 'shared', sharedHeld), undefined);
  assert.is(gapIntruder(file(undefined), 'hv-a', 'shared', [{ headGeneration: 0, lockIno: '4242' }]), undefined);
  assert.is(gapIntruder(file(ours({ gen: 9 })), 'hv-a', 'shared', sharedHeld), undefined, 'our own grant');
  // A journal from before these fields: only an exclusive generation proves anything.
  assert.is(gapIntruder(file(rec({ gen: 3 })), 'hv-a', 'shared', [{}]), undefined);
  assert.is(gapIntruder(file(rec({})), 'hv-a', 'exclusive', [{}]), undefined);
  assert.is(gapIntruder(file(undefined, { size: 0, ino: '1' }), 'hv-a', 'exclusive', [{}]), undefined);
  assert.is(gapIntruder(undefined, 'hv-a', 'exclusive', held), undefined);
  assert.is(gapIntruder(null, 'hv-a', 'shared', [{ lockIno: '4242' }]), undefined);
  // No inode known now (a native build before it): the other checks still run.
  assert.is(gapIntruder(file(ours(), { ino: undefined }), 'hv-a', 'exclusive', held), undefined);
});

// review23c: the record cannot tell a migration from the same VM started again on another host (an
// HA restart, split brain), and a later grant to the same VM hides an earlier one to another VM.
test('the same VM granted on another host in the gap is named too: a migration and a split brain look alike', () => {
  assert.is(gapIntruder(file(rec({ vm: VM1 })), 'hv-a', 'exclusive', held)?.holder.owner?.uuid, VM1.uuid);
});

test('what a take journals: the inode, and for a shared take the generation it saw (0 for none)', () => {
  assert.equal(takeSeen('exclusive', file(rec({}))), { lockIno: '4242' });
  assert.equal(takeSeen('shared', file(rec({ gen: 5 }))), { lockIno: '4242', headGeneration: 5, headStamp: 'hv-b@2026-11-30T17:00:00.000Z' });
  assert.equal(takeSeen('shared', { size: 0 }), { headGeneration: 0, headStamp: '' });
  // A dead "exclusive" record the shared take closes itself: no stamp (the head is its own write now).
  assert.equal(takeSeen('shared', file(rec({ mode: 'exclusive', gen: 5 }))), { lockIno: '4242', headGeneration: 5 });
  assert.equal(takeSeen('shared', null), {});
  assert.equal(takeSeen('exclusive', undefined), {});
});

// A GlusterFS inode has bit 63 set (its GFID's UUID variant bits); Node's bigint stat gives it signed.
test('an inode or device as the native calls give it: unsigned decimal, whatever the sign Node gave it', () => {
  assert.is(u64(-5679174580035363352n), '12767569493674188264');
  assert.is(u64(2149787n), '2149787');
  assert.is(u64(-1n), '18446744073709551615');
});

test('our own record written short (a long host id beside a long path and VM name) is ours: no alarm; another id with the same prefix is not (review24a F2)', () => {
  const cases = [
    { host: 'hv01.dc1.example.com', disk: `/images/${'虚拟机磁盘'.repeat(17)}/${'数据'.repeat(40)}.img`, name: 'web-frontend-production-eu-central-01' },
    { host: 'hypervisor-0001.rack-0042.row-07.hall-3.datacenter-frankfurt.example.net', disk: `/${'d'.repeat(200)}/${'e'.repeat(200)}.img`, name: 'web1' },
    { host: '超級計算機'.repeat(51), disk: '/images/a.img', name: 'web1' },
  ];
  for (const c of cases) {
    const head = decodeExclusive(encodeExclusive({ v: 1, mode: 'exclusive', gen: 7, host: c.host, pid: 1, since: '2026-11-30T17:00:00.000Z', disk: c.disk, vm: { uuid: VM1.uuid, name: c.name } }))!;
    assert.ok(isOwnHost(head.host, c.host), `${c.host} -> ${head.host}`);
    assert.is(gapIntruder(file(head), c.host, 'exclusive', held), undefined, head.host);
    const twin = `${c.host.slice(0, 16)}-other${c.host.slice(16)}`;
    assert.not.ok(isOwnHost(head.host, twin), `${twin} reads ${head.host} as its own`);
    assert.ok(gapIntruder(file(head), twin, 'exclusive', held), twin);
    const slot = decodeShared(encodeShared({ v: 1, mode: 'shared', host: c.host, pid: 1, since: '2026-11-30T17:00:00.000Z', disk: c.disk, vms: [{ uuid: VM1.uuid, name: c.name, since: '2026-11-30T17:00:00.000Z' }] }))!;
    assert.ok(isOwnHost(slot.host, c.host), `${c.host} -> slot ${slot.host}`);
  }
  assert.is(shortHost('hv-a'), 'hv-a');
  assert.ok(Buffer.byteLength(shortHost('超級計算機'.repeat(51))) <= 57);
});

test.run();
