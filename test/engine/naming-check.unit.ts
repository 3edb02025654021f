// The start-up naming check: held locks must keep the names the rules in force give their disks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { namingMismatchMessage, namingMismatches } from '../../src/engine/naming-check.js';
import { sha256Hex } from '../../src/engine/resolve.js';
import type { LockspaceKind } from '../../src/engine/types.js';
import { AT, given, vm1, vm2 } from '../helpers/fixtures.js';

function held(disk: string, kind: LockspaceKind, lockspace: string, source = 'api', name = kind === 'file' ? sha256Hex(disk) : disk): NewFact {
  const resource = kind === 'direct' ? disk : `${lockspace}/${name}`;
  return fact('LockAcquired', AT, { resource, name, lockspace, kind, disk, path: disk, owner: source === 'virtlockd' ? vm2 : vm1, mode: 'exclusive', source });
}

test('given locks held in one file lockspace, a start with the same one passes and another or direct mode is named', () => {
  const s = given(held('/img/a', 'file', '/ls1'));
  assert.equal(namingMismatches(s, { fileLockspaceDir: '/ls1' }), []);
  assert.equal(namingMismatches(s, { fileLockspaceDir: '/ls1/' }), [], 'a trailing slash names the same directory');
  assert.equal(namingMismatches(s, { fileLockspaceDir: '/ls2' }), [{ disk: '/img/a', held: 'file lockspace /ls1', now: 'file lockspace /ls2', flag: '--lockspace /ls1' }]);
  assert.match(namingMismatchMessage(s, { fileLockspaceDir: null })!, 'disk /img/a: held in file lockspace /ls1, this start names it in direct mode');
  assert.is(namingMismatchMessage(s, { fileLockspaceDir: '/ls1' }), null);
});

test('given direct-mode locks, a start with a file lockspace is refused', () => {
  const s = given(held('/img/a', 'direct', ''));
  assert.equal(namingMismatches(s, { fileLockspaceDir: null }), []);
  assert.match(namingMismatchMessage(s, { fileLockspaceDir: '/ls' })!, '(--lockspace "")');
});

test('given resources named by a virtlockd-protocol requester, their lockspace is the requester\'s and never a mismatch', () => {
  const s = given(held('/img/a', 'direct', '', 'virtlockd'), held('/var/lib/libvirt/lockd/files/abc', 'file', '/var/lib/libvirt/lockd/files', 'api', 'abc'));
  assert.equal(namingMismatches(s, { fileLockspaceDir: '/other' }), []);
});

test('given /dev disks, an LVM or SCSI lockspace, or the file fallback, all count as the rules in force; dropping the LVM dir does not', () => {
  const lv = given(held('/dev/vg/lv', 'lvm', '/lvm'));
  assert.equal(namingMismatches(lv, { fileLockspaceDir: '/ls', lvmLockspaceDir: '/lvm' }), []);
  assert.match(namingMismatchMessage(lv, { fileLockspaceDir: '/ls' })!, 'held in LVM lockspace /lvm, this start names it in file lockspace /ls');
  const fallback = given(held('/dev/sdb', 'file', '/ls'));
  assert.equal(namingMismatches(fallback, { fileLockspaceDir: '/ls', lvmLockspaceDir: '/lvm', scsiLockspaceDir: '/scsi' }), []);
});

test.run();
