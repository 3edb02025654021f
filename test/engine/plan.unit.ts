import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { plan } from '../../src/engine/plan.js';
import { VM_EVENT_TYPES, type VmEvent, type VmEventType } from '../../src/engine/types.js';
import { AT, vm1 } from '../helpers/fixtures.js';

const disks = [
  { path: '/images/a.qcow2', readonly: false, shareable: false },
  { path: '/images/shared.img', readonly: false, shareable: true },
  { path: '/images/cd.iso', readonly: true, shareable: false },
];
const event = (type: VmEventType): VmEvent => ({ type, vm: vm1, disks, at: AT, source: 'test' });

for (const type of ['started', 'resumed', 'migrated_in', 'disk_attached'] as const) {
  test(`given a ${type} event, when planned, then it acquires the writable disks (shareable ones shared) and skips read-only ones`, () => {
    assert.equal(plan(event(type)), [
      {
        kind: 'acquire',
        owner: vm1,
        disks: [
          { path: '/images/a.qcow2', mode: 'exclusive' },
          { path: '/images/shared.img', mode: 'shared' },
        ],
        at: AT,
        source: 'test',
      },
    ]);
  });
}

for (const type of ['stopped', 'crashed', 'migrated_out'] as const) {
  test(`given a ${type} event, when planned, then it releases everything the VM holds, whatever disks it lists`, () => {
    assert.equal(plan(event(type)), [{ kind: 'release', owner: vm1, at: AT, source: 'test' }]);
    assert.equal(plan({ ...event(type), disks: [] }), [{ kind: 'release', owner: vm1, at: AT, source: 'test' }]);
  });
}

test('given a disk_detached event, when planned, then it releases exactly the listed disks', () => {
  assert.equal(plan(event('disk_detached')), [
    { kind: 'release', owner: vm1, paths: ['/images/a.qcow2', '/images/shared.img', '/images/cd.iso'], at: AT, source: 'test' },
  ]);
});

for (const type of ['suspended', 'defined', 'undefined'] as const) {
  test(`given a ${type} event, when planned, then no lock changes (a plain pause keeps the locks)`, () => {
    assert.equal(plan(event(type)), [{ kind: 'observe', owner: vm1, event: type, at: AT, source: 'test' }]);
  });
}

test('every event type is planned without throwing (the switch is exhaustive)', () => {
  for (const t of VM_EVENT_TYPES) assert.ok(Array.isArray(plan(event(t))));
});

test('plan is pure: the same event gives equal commands twice and is not modified', () => {
  const e = event('started');
  const copy = JSON.parse(JSON.stringify(e));
  assert.equal(plan(e), plan(e));
  assert.equal(e, copy);
});

test.run();
