// (found by review 15b) a LockReleased.handedTo excuses ANY claim of the named VM on the named host, the nearest by
// clock, even one that provably is not the take (it ended before the release, or the destination never
// took the disk after the release). A real overlap is then hidden from `audit --cluster --overlaps`.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { claimsOf, overlaps, type Claim } from '../../src/cli/cluster-overlaps.js';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { toRow } from '../../src/engine/journal-port.js';
import type { StoredFact } from '../../src/journal/journal.js';
import { F, T, VM } from '../helpers/lock-facts.js';

function stored(host: string, facts: NewFact[]): StoredFact[] {
  return facts.map((f, i) => {
    const r = toRow(f);
    return { ...r, seq: i + 1, host, resource: r.resource ?? null, disk: r.disk ?? null, owner: r.owner ?? null, ownerName: r.ownerName ?? null };
  });
}
const span = (c: Claim | { from: string; to?: string }) => `${c.from}..${c.to ?? 'open'}`;
const handedOver = (at: string, vm: (typeof VM)[keyof typeof VM], disk: string, host: string): NewFact => {
  const r = F.released(at, vm, disk);
  return fact('LockReleased', at, { ...(r.payload as object), handedTo: { host, owner: vm, until: at } } as never);
};

test('stale handedTo: B held alpha T3..T5 while A held it T1..T9 (restart gap), the migration at T9 failed (B never took it): the overlap T3..T5 is still reported', () => {
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), handedOver(T(9), VM.alpha, '/d/1', 'hv-b')]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(T(3), VM.alpha, '/d/1'), F.released(T(5), VM.alpha, '/d/1')]) }]);
  // B's claim ENDED four minutes before A's release: it cannot be the take of that release.
  assert.equal(overlaps([...a, ...b]).map((x) => `${span(x)} ${x.a.host} ${x.b.host}`), [`${T(3)}..${T(5)} hv-a hv-b`]);
});

test('handedTo to B while B already held since long before (no take after the release): 8 minutes of overlap are reported', () => {
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), handedOver(T(10), VM.alpha, '/d/1', 'hv-b')]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(T(2), VM.alpha, '/d/1')]) }]);
  assert.equal(overlaps([...a, ...b]).map((x) => `${span(x)} ${x.a.host} ${x.b.host}`), [`${T(2)}..${T(10)} hv-a hv-b`]);
});

test('two hand-overs to the same take: A and C both release handedTo B/alpha; B took it once: only one of them can be the hand-over', () => {
  // A and C both held alpha's disk T1..T5 (a real overlap A/C is reported separately); both released
  // naming B. B's single claim from T5+10 s is excused against BOTH, although at most one release preceded it.
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), handedOver(T(6), VM.alpha, '/d/1', 'hv-b')]) }]);
  const c = claimsOf('hv-c', [{ facts: stored('hv-c', [F.acquired(T(1, 30), VM.alpha, '/d/1'), handedOver(T(8), VM.alpha, '/d/1', 'hv-b')]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(T(5), VM.alpha, '/d/1')]) }]);
  const o = overlaps([...a, ...b, ...c]).map((x) => `${span(x)} ${x.a.host} ${x.b.host}`);
  // B (from T5) and C (until T8) both held for 3 minutes; B's grant precedes C's release by 3 minutes and
  // also precedes A's by 1 minute: the facts cannot make both hand-overs true.
  assert.ok(o.some((s) => s.includes('hv-b') && s.includes('hv-c')) || o.some((s) => s.includes('hv-a') && s.includes('hv-b')), `only A/C found: ${o.join(' ; ')}`);
});

test.run();
