// src/daemon/direct-gap.ts: which re-takes are direct locks with an unproven gap, and the start's line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { directAdoptedWarning, directGapWarning, directNote, directRetaken } from '../../src/daemon/direct-gap.js';
import type { NewFact } from '../../src/engine/facts.js';

const T = '2026-12-01T00:00:00.000Z';
function re(kind: 'direct' | 'file', resource: string, extra: Record<string, unknown> = {}): NewFact {
  return { kind: 'Reacquired', at: T, payload: { resource, name: resource, lockspace: '', kind, disk: `/d${resource}`, path: `/d${resource}`, owner: { uuid: 'u' }, mode: 'exclusive', ...extra } } as unknown as NewFact;
}

test('counts each direct resource re-taken once; never a file lockspace lock, an adopted one or a LeaseLost', () => {
  const facts: NewFact[] = [
    re('direct', '/a'),
    re('direct', '/a', { owner: { uuid: 'v' }, mode: 'shared' }),
    re('file', '/f'),
    re('direct', '/b', { how: 'adopted' }),
    re('direct', '/c', { how: 'taken-over' }),
    { kind: 'LeaseLost', at: T, payload: { resource: '/d', kind: 'direct', disk: '/dd' } } as unknown as NewFact,
    re('direct', '/e'),
  ];
  assert.equal(directRetaken(facts), ['/d/a', '/d/e']);
  assert.equal(directRetaken([]), []);
});

test('the warning names the count and at most three disks; none without a direct re-take', () => {
  assert.is(directGapWarning([]), undefined);
  const one = directGapWarning(['/img/vm1.img'])!;
  assert.match(one, /^re-took 1 direct lock\(s\) after a gap: continuity unproven \(\/img\/vm1\.img\)\. /);
  assert.match(one, 'cannot be told');
  const five = directGapWarning(['/1', '/2', '/3', '/4', '/5'])!;
  assert.match(five, 're-took 5 direct lock(s) after a gap: continuity unproven (/1, /2, /3 and 2 more)');
  assert.not.match(five, '/4');
  assert.is(directNote(2), '2 direct lock(s) re-taken after a gap: continuity unproven');
});

test('review27c F3: adopted shared direct locks that may be a released description\'s have their own line and note', () => {
  assert.is(directAdoptedWarning([]), undefined);
  const one = directAdoptedWarning(['/img/vm1.img'])!;
  assert.match(one, /^adopted 1 direct shared lock\(s\) through a descriptor that cannot be shown to have held its lock throughout: continuity unproven \(\/img\/vm1\.img\)\. /);
  assert.match(one, 'cannot be told');
  assert.match(one, 'The lock is held now');
  assert.match(directAdoptedWarning(['/1', '/2', '/3', '/4'])!, '(/1, /2, /3 and 1 more)');
  assert.is(directNote(2, 0), '2 direct lock(s) re-taken after a gap: continuity unproven');
  assert.is(directNote(1, 1), '1 direct shared lock(s) adopted through a descriptor that may have been released: continuity unproven');
  assert.match(directNote(3, 1), /^3 direct lock\(s\) re-taken after a gap or adopted .*\(1\): continuity unproven$/);
});

test.run();
