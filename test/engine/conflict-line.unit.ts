// The CONFLICT line's fields (src/engine/conflict-line.ts): the same from every source.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { conflictFields, refusalConflicts, withRefusalSeqs } from '../../src/engine/conflict-line.js';
import type { Fact } from '../../src/engine/facts.js';
import type { Refusal } from '../../src/engine/locker.js';

const web1 = { uuid: '11111111-1111-4111-8111-111111111111', name: 'web1' };
const web2 = { uuid: '22222222-2222-4222-8222-222222222222', name: 'web2' };

function refusal(disk: string, holder: Refusal['holder']): Refusal {
  return { path: disk, disk, resource: `/ls/${disk.slice(1)}`, name: disk.slice(1), mode: 'exclusive', holder, message: `disk ${disk} is held` };
}

function refused(r: Refusal, seq: number): Fact {
  return { seq, host: 'h1', kind: 'LockRefused', at: '2026-01-01T00:00:00.000Z', payload: { resource: r.resource, name: r.name, lockspace: '/ls', kind: 'file', disk: r.disk, path: r.path, owner: web1, mode: 'exclusive', source: 'hook', holder: r.holder, message: r.message } } as Fact;
}

test('given a holder with a VM and a host, then the fields name disk, vm, holder, holderHost and seq; unknown parts are left out', () => {
  assert.equal(conflictFields('/d', [web1], { owner: web2, host: 'h2' }, 7), { event: 'Conflict', disk: '/d', vm: 'web1', holder: 'web2', holderHost: 'h2', seq: 7 });
  assert.equal(conflictFields('/d', [{ uuid: web1.uuid }, web2], {}, undefined), { event: 'Conflict', disk: '/d', vm: `${web1.uuid}, web2` });
});

test('given a refused outcome and the command\'s stored facts, then each refusal gets its LockRefused seq; a refusal journaled quietly gets none', () => {
  const a = refusal('/a', { owner: web1, host: 'src' });
  const b = refusal('/b', { owner: web2, host: 'h3' });
  const out = withRefusalSeqs({ status: 'refused', message: 'x', refusals: [a, b] }, [{ seq: 4, host: 'h1', kind: 'OwnerSeen', at: '2026-01-01T00:00:00.000Z', payload: { owner: web1, source: 'hook' } } as Fact, refused(b, 5)]);
  assert.equal(out.refusals.map((r) => r.seq), [undefined, 5]);
  const ok = { status: 'ok' as const };
  assert.is(withRefusalSeqs(ok, [refused(b, 6)]), ok);
});

test('given refusals by the VM itself on another host (a migration source) and by another VM, then only the other VM\'s is a conflict line; given only the former, each is', () => {
  const a = { ...refusal('/a', { owner: web1, host: 'src' }), seq: 3 };
  const b = { ...refusal('/b', { owner: web2, host: 'h3' }), seq: 4 };
  assert.equal(refusalConflicts(web1, [a, b], 'dst').map((c) => c.fields), [{ event: 'Conflict', disk: '/b', vm: 'web1', holder: 'web2', holderHost: 'h3', seq: 4 }]);
  assert.equal(refusalConflicts(web1, [a], 'dst').map((c) => [c.fields.disk, c.fields.holder, c.message]), [['/a', 'web1', 'disk /a is held']]);
});

test.run();
