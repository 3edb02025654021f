// Live reload of libvirt_uri: the follower keeps one event stream on the configured URI.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LibvirtFollower, registerLibvirt } from '../../src/daemon/libvirt-source.js';
import type { Daemon } from '../../src/daemon/daemon.js';
import type { Conflict } from '../../src/watchers/verifier.js';
import type { VirshSource } from '../../src/events/virsh-stream.js';
import type { Config } from '../../src/watchers/config.js';
import { FakeContext } from '../helpers/fake-source.js';

test('given libvirt_uri set, changed, emptied and set again, then streams start and stop to match, one at a time', async () => {
  let config = { libvirtUri: 'test+unix:///default', onConflict: 'report' } as Config;
  const events: string[] = [];
  let policySeen: (() => string) | undefined;
  const follower = new LibvirtFollower(new FakeContext(), () => config, {
    pollMs: 60_000,
    start: (_ctx, opts) => {
      events.push(`start ${opts.uri}`);
      policySeen = opts.onConflict;
      return { stop: async () => void events.push(`stop ${opts.uri}`) } as VirshSource;
    },
  });
  await follower.sync();
  assert.is(follower.uri, 'test+unix:///default');
  config = { ...config, onConflict: 'suspend' };
  assert.is(policySeen!(), 'suspend', 'on_conflict is read live, not captured');
  await follower.sync();
  config = { ...config, libvirtUri: 'qemu:///system' };
  void follower.sync();
  await follower.sync();
  config = { ...config, libvirtUri: null };
  await follower.sync();
  assert.is(follower.uri, undefined);
  config = { ...config, libvirtUri: 'qemu:///system' };
  await follower.sync();
  await follower.stop();
  assert.equal(events, ['start test+unix:///default', 'stop test+unix:///default', 'start qemu:///system', 'stop qemu:///system', 'start qemu:///system', 'stop qemu:///system']);
});

test('given a lock the verifier found lost to another owner, then on_conflict is applied to each owner that lost it', async () => {
  const applied: Array<[string, string]> = [];
  const daemon = { config: { libvirtUri: 'qemu:///system', onConflict: 'suspend' } as Config, sourceStarters: [], conflictHandlers: [] } as unknown as Daemon;
  registerLibvirt(daemon, {
    pollMs: 60_000,
    start: () => ({ stop: async () => {}, handler: { applyConflictPolicy: async (o: { uuid: string }, m: string) => void applied.push([o.uuid, m]) } }) as unknown as VirshSource,
  });
  const running = await daemon.sourceStarters[0]!(new FakeContext(), daemon);
  const conflict: Conflict = {
    resource: '/ls/x',
    disk: '/images/a.qcow2',
    owners: [{ uuid: 'u1', name: 'web1' }, { uuid: 'u2' }],
    holder: { host: 'hv2', owner: { uuid: 'u9', name: 'intruder' }, mode: 'exclusive' },
  };
  for (const h of daemon.conflictHandlers) h(conflict);
  await running.stop();
  assert.equal(applied.map(([u]) => u), ['u1', 'u2']);
  assert.match(applied[0]![1], 'lock on disk /images/a.qcow2 lost; it is now held by VM intruder on host hv2');
});

test('given no libvirt_uri, then no stream starts', async () => {
  let started = 0;
  const follower = new LibvirtFollower(new FakeContext(), () => ({ libvirtUri: null }) as Config, { start: () => (started++, {} as VirshSource) });
  await follower.sync();
  await follower.stop();
  assert.is(started, 0);
});

test.run();
