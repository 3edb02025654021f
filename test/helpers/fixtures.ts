// Small builders shared by the engine's unit tests.
import type { NewFact } from '../../src/engine/facts.js';
import { fact } from '../../src/engine/facts.js';
import { initialState, evolve, type State } from '../../src/engine/state.js';
import type { Mode, Owner, ResolvedDisk, ResourceRef } from '../../src/engine/types.js';


export const AT = '2026-11-25T10:00:00.000Z';
export const HOST = 'hv1';
export const vm1: Owner = { uuid: '11111111-1111-1111-1111-111111111111', name: 'web1' };
export const vm2: Owner = { uuid: '22222222-2222-2222-2222-222222222222', name: 'web2' };
export const vm3: Owner = { uuid: '33333333-3333-3333-3333-333333333333', name: 'db1' };

export function ref(disk: string): ResourceRef {
  return { id: `/ls/${disk.replace(/\W/g, '_')}`, name: disk.replace(/\W/g, '_'), lockspace: '/ls', kind: 'file', canonical: disk };
}

export function disk(path: string, mode: Mode = 'exclusive'): ResolvedDisk {
  return { path, mode, resource: ref(path) };
}

export function acquired(owner: Owner, path: string, mode: Mode = 'exclusive'): NewFact {
  const r = ref(path);
  return fact('LockAcquired', AT, {
    resource: r.id,
    name: r.name,
    lockspace: r.lockspace,
    kind: r.kind,
    disk: r.canonical,
    path,
    owner,
    mode,
    source: 'test',
  });
}

export function released(owner: Owner, path: string): NewFact {
  const r = ref(path);
  return fact('LockReleased', AT, { resource: r.id, name: r.name, lockspace: r.lockspace, kind: r.kind, disk: r.canonical, path, owner, source: 'test', reason: 'test' });
}

/** given(facts): the state those facts fold to. */
export function given(...facts: NewFact[]): State {
  return facts.reduce(evolve, initialState());
}
