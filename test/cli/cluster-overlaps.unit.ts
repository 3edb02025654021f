import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { claimsOf, hostGaps, overlaps, type Claim } from '../../src/cli/cluster-overlaps.js';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { toRow } from '../../src/engine/journal-port.js';
import type { StoredFact } from '../../src/journal/journal.js';
import { F, T, VM } from '../helpers/lock-facts.js';

/** Facts as one host's journal stores them: seq 1.., the host's name. */
function stored(host: string, facts: NewFact[]): StoredFact[] {
  return facts.map((f, i) => {
    const r = toRow(f);
    return { ...r, seq: i + 1, host, resource: r.resource ?? null, disk: r.disk ?? null, owner: r.owner ?? null, ownerName: r.ownerName ?? null };
  });
}

const span = (c: Claim | { from: string; to?: string }) => `${c.from}..${c.to ?? 'open'}`;

test('claims: a grant until its release; a LeaseLost ends it; a restart in between does not', () => {
  const c = claimsOf('hv-a', [
    { facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), F.other(T(2)), F.reacquired(T(3), VM.alpha, '/d/1'), F.released(T(4), VM.alpha, '/d/1'), F.acquired(T(5), VM.beta, '/d/1'), F.lost(T(7), VM.beta, '/d/1', { host: 'hv-b' })]) },
  ]);
  assert.equal(c.map((x) => `${x.owner.name} ${span(x)} ${x.end}`), [`alpha ${T(1)}..${T(4)} released`, `beta ${T(5)}..${T(7)} lost`]);
});

test('claims: a claim still open at the end of the facts stays open', () => {
  const c = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1', 'shared')]) }]);
  assert.equal(c.map((x) => `${x.mode} ${span(x)} ${x.end ?? '-'}`), [`shared ${T(1)}..open -`]);
});

test('claims: a new journal of the host (state directory lost) ends a claim at its start unless it re-takes it', () => {
  const c = claimsOf('hv-a', [
    { journal: 'j1', facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), F.acquired(T(1), VM.beta, '/d/2')]) },
    { journal: 'j2', facts: stored('hv-a', [F.other(T(5)), F.reacquired(T(5), VM.beta, '/d/2')]) },
  ]);
  assert.equal(c.map((x) => `${x.owner.name} ${span(x)} ${x.end ?? '-'}`), [`alpha ${T(1)}..${T(5)} journal-replaced`, `beta ${T(1)}..open -`]);
});

test('overlaps: the restart gap (A held, A daemon down, B granted, A restarted and lost it) is one interval, B grant to A loss', () => {
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), F.other(T(4)), F.lost(T(4), VM.alpha, '/d/1', { host: 'hv-b', since: T(2) })]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(T(2), VM.beta, '/d/1')]) }]);
  const o = overlaps([...a, ...b]);
  assert.equal(o.map((x) => `${x.disk} ${span(x)} ${x.a.host}/${x.a.owner.name} ${x.b.host}/${x.b.owner.name}`), [`/d/1 ${T(2)}..${T(4)} hv-a/alpha hv-b/beta`]);
});

test('overlaps: a clean hand-over, shared holders, the same host and different disks are none', () => {
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), F.released(T(2), VM.alpha, '/d/1'), F.acquired(T(3), VM.alpha, '/d/s', 'shared'), F.acquired(T(3), VM.gamma, '/d/9')]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(T(2), VM.beta, '/d/1'), F.acquired(T(3), VM.beta, '/d/s', 'shared')]) }]);
  const same = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(5), VM.beta, '/d/9')]) }]);
  assert.equal(overlaps([...a, ...b, ...same]), []);
});

test('overlaps: open claims overlap without an end; shared against exclusive conflicts', () => {
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1', 'shared')]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(T(3), VM.beta, '/d/1'), F.released(T(6), VM.beta, '/d/1')]) }]);
  const c = claimsOf('hv-c', [{ facts: stored('hv-c', [F.acquired(T(8), VM.gamma, '/d/1')]) }]);
  assert.equal(overlaps([...a, ...b, ...c]).map((x) => `${span(x)} ${x.a.host} ${x.b.host}`), [`${T(3)}..${T(6)} hv-a hv-b`, `${T(8)}..open hv-a hv-c`]);
});

/** The source's release of a migration: the disk reserved for `vm` on `host` (decision 0009). */
const handedOver = (at: string, vm: (typeof VM)[keyof typeof VM], disk: string, host: string): NewFact => {
  const r = F.released(at, vm, disk);
  return fact('LockReleased', at, { ...(r.payload as object), handedTo: { host, owner: vm, until: at } } as never);
};
const ms = (t: string, delta: number) => new Date(Date.parse(t) + delta).toISOString();

test('overlaps: a migration hand-over with the destination clock 300 ms (or 2 min) behind is none; without handedTo the same times are an overlap', () => {
  for (const skew of [300, 120_000]) {
    const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), handedOver(T(5), VM.alpha, '/d/1', 'hv-b')]) }]);
    const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(ms(T(5), 50 - skew), VM.alpha, '/d/1'), F.released(T(9), VM.alpha, '/d/1')]) }]);
    assert.equal(overlaps([...a, ...b]), [], `skew ${skew} ms`);
  }
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), F.released(T(5), VM.alpha, '/d/1')]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(ms(T(5), -250), VM.alpha, '/d/1')]) }]);
  assert.equal(overlaps([...a, ...b]).map((x) => `${span(x)} ${x.a.host} ${x.b.host}`), [`${ms(T(5), -250)}..${T(5)} hv-a hv-b`]);
});

test('overlaps: a hand-over excuses only its own pair: a third host holding meanwhile, or another VM on the destination, is still found', () => {
  const a = claimsOf('hv-a', [{ facts: stored('hv-a', [F.acquired(T(1), VM.alpha, '/d/1'), handedOver(T(5), VM.alpha, '/d/1', 'hv-b')]) }]);
  const b = claimsOf('hv-b', [{ facts: stored('hv-b', [F.acquired(T(3), VM.beta, '/d/1'), F.released(T(4), VM.beta, '/d/1'), F.acquired(ms(T(5), -300), VM.alpha, '/d/1')]) }]);
  const c = claimsOf('hv-c', [{ facts: stored('hv-c', [F.acquired(T(2), VM.gamma, '/d/1'), F.released(T(3, 30), VM.gamma, '/d/1')]) }]);
  assert.equal(overlaps([...a, ...b, ...c]).map((x) => `${span(x)} ${x.a.host}/${x.a.owner.name} ${x.b.host}/${x.b.owner.name}`), [
    `${T(2)}..${T(3, 30)} hv-a/alpha hv-c/gamma`,
    `${T(3)}..${T(4)} hv-a/alpha hv-b/beta`,
    `${T(3)}..${T(3, 30)} hv-c/gamma hv-b/beta`,
  ]);
});

test('gaps: a clean stop until the next start, a crash from the last fact to the restart, a dead host from its last fact', () => {
  const g = hostGaps(
    'hv-a',
    [
      { kind: 'DaemonStarted', at: T(0) },
      { kind: 'DaemonStopped', at: T(2) },
      { kind: 'DaemonStarted', at: T(3), prevAt: T(2) },
      { kind: 'DaemonStarted', at: T(6), prevAt: T(4) },
    ],
    { at: T(7), kind: 'LockAcquired' },
    false,
  );
  assert.equal(g.map((x) => `${x.how} ${span(x)}`), [`stopped ${T(2)}..${T(3)}`, `crash ${T(4)}..${T(6)}`, `crash ${T(7)}..open`]);
  assert.equal(hostGaps('hv-a', [{ kind: 'DaemonStarted', at: T(0) }], { at: T(7), kind: 'LockAcquired' }, true), [], 'alive: no gap');
  assert.equal(hostGaps('hv-a', [{ kind: 'DaemonStarted', at: T(0) }, { kind: 'DaemonStopped', at: T(7) }], { at: T(7), kind: 'DaemonStopped' }, false).map((x) => `${x.how} ${span(x)}`), [`stopped ${T(7)}..open`]);
});

test.run();
