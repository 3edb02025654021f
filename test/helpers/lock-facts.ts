// Engine-shaped lock facts as journal rows, for journal and audit tests that need no daemon.
import { fact, type NewFact } from '../../src/engine/facts.js';
import { toRow } from '../../src/engine/journal-port.js';
import type { HolderInfo, Mode } from '../../src/engine/types.js';
import type { FactRow } from '../../src/journal/journal.js';

export const T = (minute: number, second = 0) => `2026-11-25T10:${String(minute).padStart(2, '0')}:${String(second).padStart(2, '0')}.000Z`;

export const VM = {
  alpha: { uuid: 'aaaaaaaa-0000-4000-8000-000000000001', name: 'alpha' },
  beta: { uuid: 'bbbbbbbb-0000-4000-8000-000000000002', name: 'beta' },
  gamma: { uuid: 'cccccccc-0000-4000-8000-000000000003', name: 'gamma' },
} as const;

function fields(disk: string) {
  const name = disk.replace(/\W/g, '');
  return { resource: `/ls/${name}`, name, lockspace: '/ls', kind: 'file' as const, disk, path: disk };
}

type Vm = (typeof VM)[keyof typeof VM];

export const F = {
  acquired: (at: string, vm: Vm, disk: string, mode: Mode = 'exclusive', generation?: number): NewFact =>
    fact('LockAcquired', at, { ...fields(disk), owner: vm, mode, source: 'test', ...(generation !== undefined ? { generation } : {}) }),
  reacquired: (at: string, vm: Vm, disk: string, mode: Mode = 'exclusive', generation?: number): NewFact =>
    fact('Reacquired', at, { ...fields(disk), owner: vm, mode, ...(generation !== undefined ? { generation } : {}) }),
  released: (at: string, vm: Vm, disk: string): NewFact => fact('LockReleased', at, { ...fields(disk), owner: vm, source: 'test', reason: 'stopped' }),
  refused: (at: string, vm: Vm, disk: string, holder: HolderInfo): NewFact =>
    fact('LockRefused', at, { ...fields(disk), owner: vm, mode: 'exclusive', source: 'test', holder, message: 'held' }),
  lost: (at: string, vm: Vm, disk: string, holder: HolderInfo): NewFact =>
    fact('LeaseLost', at, { ...fields(disk), owner: vm, mode: 'exclusive', holder, reason: 'taken while down' }),
  other: (at: string): NewFact => fact('DaemonStarted', at, { pid: 1, version: 't', lockspace: '/ls', held: 0 }),
};

export function rows(facts: NewFact[]): FactRow[] {
  return facts.map(toRow);
}
