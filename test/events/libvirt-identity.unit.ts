// Which libvirt a URI reaches, and whose "gone" may release a VM's locks (decision 0025).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { LibvirtRef } from '../../src/engine/facts.js';
import { hostUuidOf, identityKey, isHookLibvirt, judgeGone, sameLibvirt, type GoneCase } from '../../src/events/libvirt-identity.js';

const at = (uri: string, host = 'hv-a', hostUuid?: string): LibvirtRef => ({ uri, host, ...(hostUuid ? { hostUuid } : {}) });

test('one libvirt: the transport, the authority, a trailing slash, the FQDN and the host UUID do not matter', () => {
  const sys = at('qemu:///system', 'hv-a', '11111111-2222-3333-4444-555555555555');
  assert.ok(sameLibvirt(sys, at('qemu+ssh://root@hv-a.example.org/system', 'hv-a.example.org')));
  assert.ok(sameLibvirt(sys, at('qemu+unix:///system', 'HV-A')));
  assert.ok(sameLibvirt(sys, at('qemu:///system/', 'hv-a', '99999999-2222-3333-4444-555555555555')));
  assert.is(identityKey(sys), 'qemu:///system@hv-a');
});

test('another libvirt: session vs system, another driver, another host, another test file, another socket', () => {
  const sys = at('qemu:///system');
  assert.not.ok(sameLibvirt(sys, at('qemu:///session')));
  assert.not.ok(sameLibvirt(sys, at('test+unix:///default')));
  assert.not.ok(sameLibvirt(sys, at('qemu+ssh://hv-b/system', 'hv-b')));
  assert.not.ok(sameLibvirt(at('test:///tmp/a.xml'), at('test:///tmp/b.xml')));
  assert.not.ok(sameLibvirt(sys, at('qemu:///system?socket=/run/other.sock')));
});

test('the hook serves this host\'s qemu:///system, by whatever transport it is reached', () => {
  assert.ok(isHookLibvirt(at('qemu:///system', 'hv-a.example.org'), 'hv-a'));
  assert.ok(isHookLibvirt(at('qemu+tcp://localhost/system', 'hv-a'), 'hv-a'));
  assert.not.ok(isHookLibvirt(at('qemu:///session'), 'hv-a'));
  assert.not.ok(isHookLibvirt(at('test:///default'), 'hv-a'));
  assert.not.ok(isHookLibvirt(at('qemu+ssh://hv-b/system', 'hv-b'), 'hv-a'));
});

test('judgeGone: only the libvirt that answers for the VM releases its locks', () => {
  const base: GoneCase = { seenRunning: false, recorded: undefined, current: at('qemu:///system'), hookLocks: false, localHost: 'hv-a' };
  // Seen running by this stream, in this process: as before.
  assert.equal(judgeGone({ ...base, seenRunning: true, current: undefined }), { release: true });
  // The journaled vouch is this libvirt: a VM that stopped while the daemon was down.
  assert.equal(judgeGone({ ...base, recorded: at('qemu+ssh://hv-a/system') }), { release: true });
  // A restart with a wrong libvirt_uri.
  assert.equal(judgeGone({ ...base, recorded: at('qemu:///system'), current: at('qemu:///session') }), { release: false, reason: 'other-libvirt' });
  // The hook's locks: this host's qemu:///system answers for them, nothing else does.
  assert.equal(judgeGone({ ...base, hookLocks: true }), { release: true });
  assert.equal(judgeGone({ ...base, hookLocks: true, current: at('qemu:///session') }), { release: false, reason: 'not-hook-libvirt' });
  assert.equal(judgeGone({ ...base, hookLocks: true, recorded: at('test:///default'), current: at('qemu:///system') }), { release: true });
  // Event-stream locks nobody vouched for (a journal from before LibvirtVouched): kept.
  assert.equal(judgeGone(base), { release: false, reason: 'unvouched' });
  // Which libvirt this is could not be learnt.
  assert.equal(judgeGone({ ...base, hookLocks: true, recorded: at('qemu:///system'), current: undefined }), { release: false, reason: 'unknown-libvirt' });
});

test('host names (review26d F1): two FQDNs must be equal; a name that names no machine counts only for local connections', () => {
  // Two data centres' node1, reached by a typo'd remote libvirt_uri: another libvirt.
  const dc1 = at('qemu:///system', 'node1.dc1.example.org');
  const dc2 = at('qemu+ssh://root@node1.dc2.example.org/system', 'node1.dc2.example.org');
  assert.not.ok(sameLibvirt(dc1, dc2));
  assert.equal(judgeGone({ seenRunning: false, recorded: dc1, current: dc2, hookLocks: false, localHost: 'node1.dc1.example.org' }), { release: false, reason: 'other-libvirt' });
  // A short name still matches its FQDN.
  assert.ok(sameLibvirt(at('qemu:///system', 'node1'), dc1));
  // Every machine left at the distribution's default name: only a local connection is this host's.
  const remoteLocalhost = at('qemu+ssh://root@10.0.0.7/system', 'localhost.localdomain');
  assert.not.ok(isHookLibvirt(remoteLocalhost, 'localhost.localdomain'));
  assert.equal(judgeGone({ seenRunning: false, recorded: undefined, current: remoteLocalhost, hookLocks: true, localHost: 'localhost.localdomain' }), { release: false, reason: 'not-hook-libvirt' });
  assert.not.ok(sameLibvirt(at('qemu:///system', 'localhost.localdomain'), remoteLocalhost));
  assert.ok(sameLibvirt(at('qemu:///system', 'localhost.localdomain'), at('qemu+ssh://root@localhost/system', 'localhost.localdomain')));
  assert.ok(isHookLibvirt(at('qemu:///system', 'localhost.localdomain'), 'localhost.localdomain'));
  assert.ok(isHookLibvirt(at('qemu+tcp://127.0.0.1:16509/system', 'localhost'), 'localhost'));
  assert.not.ok(sameLibvirt(at('qemu:///system', ''), at('qemu:///system', '')));
});

test('hostUuidOf: the capabilities\' <host><uuid>, none for a driver without one', () => {
  assert.is(hostUuidOf("<capabilities>\n\n  <host>\n    <uuid>B5F421FF-10DD-4F72-BFA5-6728B60B3DE4</uuid>\n    <cpu>"), 'b5f421ff-10dd-4f72-bfa5-6728b60b3de4');
  assert.is(hostUuidOf('<capabilities>\n  <host>\n    <cpu><arch>i686</arch>'), undefined);
});

test.run();
