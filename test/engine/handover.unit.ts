// issue 17.5, the pure half of the migration hand-over's reservation (decision 0009): which release
// reserves a disk, which taker a reservation refuses, how decide turns a destination's wait into
// intents, and what the refusal says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decide } from '../../src/engine/decide.js';
import { fact } from '../../src/engine/facts.js';
import {
  RECORD_SIZE,
  decodeExclusive,
  decodeRequest,
  encodeExclusive,
  encodeRequest,
  isHandOverRefusal,
  reservationAgainst,
  reservationByRequest,
  reservationOnRelease,
  type ExclusiveRecord,
  type HandOverRequest,
} from '../../src/engine/holder-record.js';
import { refusalMessage } from '../../src/engine/messages.js';
import type { ResolvedCommand, ResolvedDisk } from '../../src/engine/types.js';
import { AT, HOST, acquired, disk, given, vm1, vm2 } from '../helpers/fixtures.js';

const T0 = Date.parse('2026-11-30T08:00:00.000Z');
const request: HandOverRequest = { v: 1, mode: 'handover', host: 'dst', pid: 7, since: AT, vm: vm1 };

function freeReservedFor(host: string, until = T0 + 60_000): ExclusiveRecord {
  return {
    v: 1,
    mode: 'free',
    gen: 4,
    host: 'src',
    pid: 1,
    since: AT,
    disk: '/img/a',
    vm: vm1,
    reserved: { host, vm: vm1, from: 'src', since: new Date(T0).toISOString(), until: new Date(until).toISOString() },
  };
}

test('given a destination waiting for the same VM on another host, when the source releases, then the free record reserves the disk for that host and VM until now + ttl', () => {
  assert.equal(reservationOnRelease(vm1, 'src', request, T0, 60_000), {
    host: 'dst',
    vm: vm1,
    from: 'src',
    since: '2026-11-30T08:00:00.000Z',
    until: '2026-11-30T08:01:00.000Z',
  });
});

test('given no standing request, a request for another VM, or one from this same host, when the holder releases, then nothing is reserved', () => {
  assert.is(reservationOnRelease(vm1, 'src', undefined, T0), undefined);
  assert.is(reservationOnRelease(vm2, 'src', request, T0), undefined);
  assert.is(reservationOnRelease(vm1, 'dst', request, T0), undefined);
  assert.is(reservationOnRelease(undefined, 'src', request, T0), undefined);
});

test('given a reservation for web1 on dst whose request still stands, then a third host and another VM on dst are refused, and web1 on dst is not', () => {
  const rec = freeReservedFor('dst');
  assert.equal(reservationAgainst(rec, { host: 'h3', uuid: vm2.uuid }, request, T0 + 1000)?.host, 'dst');
  assert.equal(reservationAgainst(rec, { host: 'dst', uuid: vm2.uuid }, request, T0 + 1000)?.host, 'dst');
  // The same VM elsewhere (the source taking it back, a second copy) is not the destination either.
  assert.equal(reservationAgainst(rec, { host: 'src', uuid: vm1.uuid }, request, T0 + 1000)?.host, 'dst');
  assert.is(reservationAgainst(rec, { host: 'dst', uuid: vm1.uuid }, request, T0 + 1000), undefined);
});

test("given an exclusive record of src whose holder died (no release, no reservation) and a standing request of dst for the same VM, then every taker but web1 on dst is refused as if reserved; no request, a request for another VM or from the holder's own host reserves nothing", () => {
  const rec: ExclusiveRecord = { v: 1, mode: 'exclusive', gen: 4, host: 'src', pid: 1, since: AT, disk: '/img/a', vm: vm1 };
  assert.equal(reservationByRequest(rec, { host: 'h3', uuid: vm2.uuid }, request, T0, 60_000), { host: 'dst', vm: vm1, from: 'src', since: '2026-11-30T08:00:00.000Z', until: '2026-11-30T08:01:00.000Z' });
  assert.equal(reservationByRequest(rec, { host: 'src', uuid: vm1.uuid }, request, T0)?.host, 'dst');
  assert.is(reservationByRequest(rec, { host: 'dst', uuid: vm1.uuid }, request, T0), undefined);
  assert.is(reservationByRequest(rec, { host: 'h3', uuid: vm2.uuid }, undefined, T0), undefined);
  assert.is(reservationByRequest(rec, { host: 'h3', uuid: vm2.uuid }, { ...request, vm: vm2 }, T0), undefined);
  assert.is(reservationByRequest(rec, { host: 'h3', uuid: vm2.uuid }, { ...request, host: 'src' }, T0), undefined);
  assert.is(reservationByRequest({ ...rec, mode: 'free' }, { host: 'h3', uuid: vm2.uuid }, request, T0), undefined);
});

test('given a reservation, when its request no longer stands (destination dead or done), names another host or VM, or its time ran out, then it refuses nobody', () => {
  const rec = freeReservedFor('dst');
  const taker = { host: 'h3', uuid: vm2.uuid };
  assert.is(reservationAgainst(rec, taker, undefined, T0 + 1000), undefined, 'no request lock: the destination died or withdrew');
  assert.is(reservationAgainst(rec, taker, { ...request, host: 'other' }, T0 + 1000), undefined);
  assert.is(reservationAgainst(rec, taker, { ...request, vm: vm2 }, T0 + 1000), undefined);
  assert.is(reservationAgainst(rec, taker, request, T0 + 60_000), undefined, 'expired');
  assert.is(reservationAgainst({ ...rec, mode: 'exclusive' }, taker, request, T0 + 1000), undefined, 'only a free record reserves');
  assert.is(reservationAgainst(undefined, taker, request, T0 + 1000), undefined);
});

test('given a reservation and a request, when encoded and decoded, then they come back; a long name still leaves the reservation in one record', () => {
  const rec = freeReservedFor('dst');
  assert.equal(decodeExclusive(encodeExclusive(rec)), rec);
  assert.equal(decodeRequest(encodeRequest(request)), request);
  const long = 'x'.repeat(3000);
  const big = encodeExclusive({ ...rec, disk: long, host: long, reserved: { ...rec.reserved!, host: 'dst', from: long, vm: { uuid: vm1.uuid, name: long } } });
  assert.is(big.length, RECORD_SIZE);
  const back = decodeExclusive(big)!;
  assert.is(back.reserved?.host, 'dst');
  assert.is(back.reserved?.vm.uuid, vm1.uuid);
  assert.is(back.reserved?.until, rec.reserved!.until);
  // A reservation in an exclusive (held) record, or garbage, is no reservation.
  assert.is(decodeExclusive(encodeExclusive({ ...rec, mode: 'exclusive' }))?.reserved, undefined);
  assert.is(decodeRequest(encodeExclusive(rec)), undefined);
});

test('given a reservation refusal, then the message names the disk, the VM, the destination, the source and the bound', () => {
  const m = refusalMessage('/img/a', { host: 'dst', owner: vm1, mode: 'exclusive', since: AT, reservation: { from: 'src', since: AT, until: '2026-11-25T10:01:00.000Z' } });
  assert.is(
    m,
    `disk /img/a is reserved for VM web1 (uuid ${vm1.uuid}) on host dst: a live migration hands it over from host src (released ${AT}); nobody else may take it until that host takes it or stops waiting, at the latest 2026-11-25T10:01:00.000Z`,
  );
});

test('given a waiting destination (web1 on dst), then the refusals it waits through are web1 held on another host and web1 reserved for dst; anything else is a conflict', () => {
  const res = { from: 'src', since: AT, until: AT };
  assert.ok(isHandOverRefusal({ host: 'src', owner: vm1, mode: 'exclusive' }, vm1, 'dst'));
  assert.ok(isHandOverRefusal({ host: 'dst', owner: vm1, mode: 'exclusive', reservation: res }, vm1, 'dst'));
  assert.not.ok(isHandOverRefusal({ host: 'dst', owner: vm1, mode: 'exclusive' }, vm1, 'dst'), 'held on this host: a local conflict');
  assert.not.ok(isHandOverRefusal({ host: 'h4', owner: vm1, mode: 'exclusive', reservation: res }, vm1, 'dst'), 'reserved for another destination');
  assert.not.ok(isHandOverRefusal({ host: 'src', owner: vm2, mode: 'exclusive' }, vm1, 'dst'), 'another VM');
  assert.not.ok(isHandOverRefusal({ mode: 'exclusive' }, vm1, 'dst'), 'no record (virtlockd)');
});

const handOver = (step: 'wait' | 'end', ...resolved: ResolvedDisk[]): ResolvedCommand => ({
  kind: 'hand-over',
  step,
  owner: vm1,
  disks: resolved.map((d) => ({ path: d.path, mode: d.mode })),
  resolved,
  from: 'src',
  ...(step === 'end' ? { outcome: 'taken' as const, detail: 'done' } : {}),
  at: AT,
  source: 'hook',
});

test('given a destination that starts waiting, then decide asks for the exclusive disks it does not hold (one await), not the shared ones or one it holds already', () => {
  const state = given(fact('OwnerSeen', AT, { owner: vm1, source: 'test' }), acquired(vm1, '/img/held'));
  const a = disk('/img/a'), s = disk('/img/s', 'shared'), h = disk('/img/held');
  assert.equal(decide(handOver('wait', a, s, h, disk('/img/a')), state, HOST), [{ kind: 'await', disks: [a], owner: vm1, from: 'src' }]);
});

test('given a destination whose wait ends, then decide withdraws every disk, with the outcome', () => {
  const state = given(fact('OwnerSeen', AT, { owner: vm1, source: 'test' }));
  const a = disk('/img/a'), s = disk('/img/s', 'shared');
  assert.equal(decide(handOver('end', a, s), state, HOST), [{ kind: 'withdraw', disks: [a, s], owner: vm1, outcome: 'taken', detail: 'done' }]);
});

test.run();
