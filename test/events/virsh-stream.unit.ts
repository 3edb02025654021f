// The virsh event source's mapping (recorded virsh lines and real dumpxml output -> lock commands),
// its conflict policy, reconciliation, and the process supervisor's restart backoff (fake spawn).
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact } from '../../src/engine/facts.js';
import type { Command } from '../../src/engine/types.js';
import { LibvirtEventHandler, isActiveState, superviseVirshEvents, type ChildLike, type ConflictPolicy } from '../../src/events/virsh-stream.js';
import { FakeContext, FakeVirsh } from '../helpers/fake-source.js';

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const TCG_XML = fixture('qemu-session-running.xml');
const TCG_UUID = 'b05b77c4-296e-405c-8196-3c19ad33cbf1';
const ROOT = '/tmp/lvsess/home/root.qcow2';
const HOT = '/tmp/lvsess/home/hot.img';

function setup(opts: { policy?: () => ConflictPolicy; retries?: number[] } = {}) {
  const ctx = new FakeContext('hostA');
  // This host's qemu:///system: the libvirt the hook serves (decision 0025).
  const virsh = new FakeVirsh().on('uri', 'qemu:///system\n').on('hostname', 'hv-a\n');
  const timers: Array<{ fn: () => void; ms: number }> = [];
  const handler = new LibvirtEventHandler({
    uri: 'qemu:///system',
    localHost: 'hv-a',
    ctx,
    virsh: virsh.run,
    onConflict: opts.policy ?? (() => 'report'),
    now: () => new Date('2026-11-25T21:30:00.000Z'),
    later: (fn, ms) => {
      timers.push({ fn, ms });
      return () => {};
    },
    handOverRetriesMs: opts.retries ?? [100, 200],
  });
  return { ctx, virsh, handler, timers };
}

function summary(cmds: Command[]): string[] {
  return cmds.map((c) => {
    switch (c.kind) {
      case 'acquire':
      case 'check':
        return `${c.kind} ${c.source} ${c.disks.map((d) => `${d.path}:${d.mode}`).join(',')}`;
      case 'release':
        return `release ${c.source} ${c.paths ? c.paths.join(',') : '(all)'}`;
      case 'observe':
        return `observe ${c.event}`;
      case 'hand-over':
        return `hand-over ${c.step}`;
    }
  });
}

async function feed(handler: LibvirtEventHandler, lines: string[]): Promise<void> {
  for (const l of lines) handler.line(l);
  await handler.idle();
}

test('given the recorded qemu event stream, when replayed, then start/resume acquire, hot-unplug and stop release, pause keeps', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML).on('domuuid tcg1', TCG_UUID + '\n');
  const lines = fixture('virsh-events-qemu-session.stdout').split('\n');
  // Up to and including the first Stopped Destroyed.
  const firstStop = lines.findIndex((l) => l.endsWith('Stopped Destroyed'));
  await feed(handler, lines.slice(0, firstStop + 1));
  assert.equal(summary(ctx.commands), [
    `acquire virsh ${ROOT}:exclusive,${HOT}:exclusive`, // Resumed Unpaused (arrives before Started Booted)
    `acquire virsh ${ROOT}:exclusive,${HOT}:exclusive`, // Started Booted: already held
    `acquire virsh ${ROOT}:exclusive,${HOT}:exclusive`, // Resumed Unpaused after Suspended Paused
    `acquire virsh ${HOT}:exclusive`, // device-added scsi0-0-0-1
    `release virsh ${HOT}`, // device-removed scsi0-0-0-1 (the alias from the last dumpxml)
    'release virsh (all)', // Stopped Destroyed
  ]);
  assert.equal(ctx.held(TCG_UUID), []);
  const lockFacts = ctx.facts.filter((f) => f.kind === 'LockAcquired' || f.kind === 'LockReleased').map((f) => `${f.kind} ${(f.payload as { path: string }).path}`);
  assert.equal(lockFacts, [`LockAcquired ${ROOT}`, `LockAcquired ${HOT}`, `LockReleased ${HOT}`, `LockReleased ${ROOT}`]);

  // The rest: start, hot-plug, destroy, undefine.
  virsh.fail('domuuid tcg1');
  await feed(handler, lines.slice(firstStop + 1));
  assert.equal(summary(ctx.commands).slice(6), [
    `acquire virsh ${ROOT}:exclusive,${HOT}:exclusive`,
    `acquire virsh ${ROOT}:exclusive,${HOT}:exclusive`,
    `acquire virsh ${HOT}:exclusive`,
    'release virsh (all)', // uuid from the last dumpxml: domuuid no longer answers
  ]);
  assert.equal(ctx.held(TCG_UUID), []);
  assert.equal(ctx.rejected, []);
});

test('given a garbled line among good ones, then it is journaled as InputRejected with the raw line and the stream goes on', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML);
  await feed(handler, [
    "2026-11-25 21:23:34.186+0000: event 'lifecycle' for domain 'tcg1': Exploded Badly",
    'complete nonsense',
    "2026-11-25 21:23:34.199+0000: event 'lifecycle' for domain 'tcg1': Started Booted",
  ]);
  assert.is(ctx.rejected.length, 2);
  assert.is(ctx.rejected[0]!.source, 'virsh');
  assert.is(ctx.rejected[0]!.raw, "2026-11-25 21:23:34.186+0000: event 'lifecycle' for domain 'tcg1': Exploded Badly");
  assert.match(ctx.rejected[0]!.message, /unknown lifecycle word "Exploded"/);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
});

test('given the event time on the line, then the command carries it', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML);
  await feed(handler, ["2026-11-25 21:23:34.199+0000: event 'lifecycle' for domain 'tcg1': Started Booted"]);
  assert.is(ctx.commands[0]!.at, '2026-11-25T21:23:34.199Z');
});

test('given a Started event for a domain that is no longer running, then nothing is acquired', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML.replace("<domain type='qemu' id='2'>", "<domain type='qemu'>"));
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted"]);
  assert.equal(ctx.commands, []);
});

test('given migration events, then Started Migrated files the hand-over request (no lock yet), Resumed Migrated acquires and ends the wait; the source keeps through Suspended Migrated/Post-copy and releases at Stopped Migrated', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML).on('domuuid tcg1', TCG_UUID).on(`domstate ${TCG_UUID}`, 'paused\n');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Migrated"]);
  assert.equal(summary(ctx.commands), ['hand-over wait']);
  assert.equal(ctx.held(TCG_UUID), []);
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Resumed Migrated"]);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Suspended Paused", "event 'lifecycle' for domain 'tcg1': Suspended I/O Error"]);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  // The source pauses for the hand-over: it keeps its locks until the migration is over here.
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Suspended Migrated", "event 'lifecycle' for domain 'tcg1': Suspended Post-copy"]);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  virsh.on(`domstate ${TCG_UUID}`, 'shut off\n');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Stopped Migrated"]);
  assert.equal(ctx.held(TCG_UUID), []);
  assert.equal(summary(ctx.commands).map((s) => s.split(' ').slice(0, 2).join(' ')), ['hand-over wait', 'acquire virsh', 'hand-over end', 'release virsh']);
  assert.equal(ctx.commands.filter((c) => c.kind === 'hand-over').map((c) => c.kind === 'hand-over' && c.outcome), [false, 'taken'].map((o) => o || undefined));
});

test('given an incoming migration that fails here (Stopped Failed, domstate shut off), then its wait ends as gone; one that never resumes ends at the bound', async () => {
  const { ctx, virsh, handler, timers } = setup();
  virsh.on('dumpxml tcg1', TCG_XML).on('domuuid tcg1', TCG_UUID).on(`domstate ${TCG_UUID}`, 'shut off\n');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Migrated", "event 'lifecycle' for domain 'tcg1': Stopped Failed"]);
  const ends = ctx.commands.filter((c) => c.kind === 'hand-over' && c.step === 'end');
  assert.equal(ends.map((c) => c.kind === 'hand-over' && c.outcome), ['gone']);
  // Again, and this time nothing follows: the bound's timer ends it.
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Migrated"]);
  timers[timers.length - 1]!.fn();
  await handler.idle();
  const all = ctx.commands.filter((c) => c.kind === 'hand-over' && c.step === 'end');
  assert.equal(all.map((c) => c.kind === 'hand-over' && c.outcome), ['gone', 'timeout']);
});

test('given Undefined of a domain that still runs (now transient), then its locks stay; once gone, they go', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML).on(`domstate ${TCG_UUID}`, 'running\n').on('domuuid tcg1', TCG_UUID);
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted", "event 'lifecycle' for domain 'tcg1': Undefined Removed"]);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  virsh.fail(`domstate ${TCG_UUID}`, `error: failed to get domain '${TCG_UUID}'`).fail('domuuid tcg1');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Undefined Removed"]);
  assert.equal(ctx.held(TCG_UUID), []);
});

test('given a volume disk, a lease and read-only/shareable disks, then vol-path resolves the volume and modes follow the XML', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml vm-all-disks', fixture('all-disks-running.xml')).on('vol-path --pool vmpool data.qcow2', fixture('vol-path.txt'));
  await feed(handler, ["event 'lifecycle' for domain 'vm-all-disks': Started Booted"]);
  const cmd = ctx.commands[0]!;
  assert.is(cmd.kind, 'acquire');
  const disks = cmd.kind === 'acquire' ? cmd.disks : [];
  const byPath = Object.fromEntries(disks.map((d) => [d.path, d.mode]));
  assert.is(byPath['/var/lib/libvirt/images/root.qcow2'], 'exclusive');
  assert.is(byPath['/var/lib/vmlockd-test/pool/data.qcow2'], 'exclusive');
  assert.is(byPath['/var/lib/libvirt/images/cluster-shared.img'], 'shared');
  assert.is(byPath['/var/lib/libvirt/images/base-ro.img'], undefined);
  const lease = disks.find((d) => d.named);
  assert.equal(lease?.named, { lockspace: '/var/lib/libvirt/lockd/leases/somearea', name: 'somekey', create: true });
  assert.ok(virsh.calls.includes('vol-path --pool vmpool data.qcow2'));
  assert.ok(ctx.logs.some((l) => /not protected by a lock: network disk \(nbd/.test(l.msg)));
});

test('given a disk held by another VM on another host, when the VM starts, then the conflict is journaled with both owners and reported', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML);
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: '22222222-2222-4222-8222-222222222222', name: 'other' }, mode: 'exclusive' });
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted"]);
  const refused = ctx.facts.find((f) => f.kind === 'LockRefused');
  assert.ok(refused);
  const p = refused!.payload as { owner: { uuid: string }; holder: { host: string; owner: { name: string } }; source: string };
  assert.is(p.owner.uuid, TCG_UUID);
  assert.is(p.holder.host, 'hostB');
  assert.is(p.holder.owner.name, 'other');
  assert.is(p.source, 'virsh');
  assert.ok(ctx.logs.some((l) => l.level === 'error' && /CONFLICT: VM tcg1 .* running without its disk lock: disk \/tmp\/lvsess\/home\/root.qcow2 is held .* on host hostB/.test(l.msg)));
  assert.not.ok(virsh.calls.some((c) => c.startsWith('suspend')));
});

test('given on_conflict changes between two conflicts, then the policy is read each time: report, then suspend (journaled)', async () => {
  let policy: ConflictPolicy = 'report';
  const { ctx, virsh, handler } = setup({ policy: () => policy });
  virsh.on('dumpxml tcg1', TCG_XML).on(`suspend ${TCG_UUID}`, 'Domain tcg1 suspended\n');
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: '22222222-2222-4222-8222-222222222222', name: 'other' }, mode: 'exclusive' });
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted"]);
  assert.not.ok(virsh.calls.includes(`suspend ${TCG_UUID}`));
  policy = 'suspend';
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Resumed Unpaused"]);
  assert.ok(virsh.calls.includes(`suspend ${TCG_UUID}`));
  const said = ctx.facts.filter((f) => f.kind === 'ConflictAction' && (f.payload as { result: string }).result === 'done');
  assert.is(said.length, 1);
  assert.match((said[0]!.payload as { message: string }).message, /on host hostB/);
});

test('given on_conflict suspend and virsh suspend fails, then the failure is journaled and logged', async () => {
  const { ctx, virsh, handler } = setup({ policy: () => 'suspend' });
  virsh.on('dumpxml tcg1', TCG_XML).fail(`suspend ${TCG_UUID}`, 'error: Requested operation is not valid: domain is not running');
  ctx.foreign.set(HOT, { host: 'hostB', mode: 'exclusive' });
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted"]);
  const said = ctx.facts.find((f) => f.kind === 'ConflictAction' && (f.payload as { result: string }).result === 'failed');
  assert.ok(said);
  assert.match((said!.payload as { error: string }).error, 'domain is not running');
  assert.ok(ctx.logs.some((l) => l.level === 'error' && /could not suspend VM tcg1/.test(l.msg)));
});

test('given the same VM still holds the disk on the migration source, then the acquire is retried, not called a conflict', async () => {
  const { ctx, virsh, handler, timers } = setup({ policy: () => 'suspend' });
  // The retry reads the domain again, by uuid.
  virsh.on('dumpxml tcg1', TCG_XML).on(`dumpxml ${TCG_UUID}`, TCG_XML);
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: TCG_UUID, name: 'tcg1' }, mode: 'exclusive' });
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Resumed Migrated"]);
  assert.is(timers.length, 1);
  assert.is(timers[0]!.ms, 100);
  // The source host releases; the retry takes the disks.
  ctx.foreign.delete(ROOT);
  timers[0]!.fn();
  await handler.idle();
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  assert.not.ok(virsh.calls.some((c) => c.startsWith('suspend')));
  assert.not.ok(ctx.logs.some((l) => /CONFLICT/.test(l.msg)));
});

test('17.4: given the same VM holds the disk on another host and this one BOOTS (not a migration), then it is a conflict at once, not a hand-over', async () => {
  const { ctx, virsh, handler, timers } = setup();
  virsh.on('dumpxml tcg1', TCG_XML);
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: TCG_UUID, name: 'tcg1' }, mode: 'exclusive' });
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted"]);
  assert.is(timers.length, 0);
  assert.ok(ctx.logs.some((l) => /CONFLICT: VM tcg1/.test(l.msg)));
});

test('given the source never releases, when the retries run out, then it is a conflict', async () => {
  const { ctx, virsh, handler, timers } = setup({ retries: [100] });
  // The retry reads the domain again, by uuid.
  virsh.on('dumpxml tcg1', TCG_XML).on(`dumpxml ${TCG_UUID}`, TCG_XML);
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: TCG_UUID, name: 'tcg1' }, mode: 'exclusive' });
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Resumed Migrated"]);
  timers[0]!.fn();
  await handler.idle();
  assert.is(timers.length, 1);
  assert.ok(ctx.logs.some((l) => /CONFLICT/.test(l.msg)));
});

test('given device-removed of an alias never seen, then the held disk the current XML no longer lists is released', async () => {
  const { ctx, virsh, handler } = setup();
  const uuid = TCG_UUID;
  // Held from before (e.g. by the hook), but this handler never saw the alias.
  await ctx.submit({ kind: 'acquire', owner: { uuid, name: 'tcg1' }, disks: [{ path: ROOT, mode: 'exclusive' }, { path: HOT, mode: 'exclusive' }], at: '2026-11-25T21:00:00.000Z', source: 'hook' });
  const withoutHot = TCG_XML.replace(/<disk type='file' device='disk'>\s*<driver[^>]*>\s*<source file='\/tmp\/lvsess\/home\/hot.img'[\s\S]*?<\/disk>/, '');
  assert.is.not(withoutHot, TCG_XML);
  virsh.on('dumpxml ' + uuid, withoutHot).on('domuuid tcg1', uuid);
  await feed(handler, ["event 'device-removed' for domain 'tcg1': scsi0-0-0-1"]);
  assert.equal(ctx.held(uuid), [ROOT]);
});

test('given state from before a reconnect, when reconciling, then running VMs get their locks and stopped ones lose only libvirt-taken locks', async () => {
  const { ctx, virsh, handler } = setup();
  const gone = '33333333-3333-4333-8333-333333333333';
  const apiOwned = '44444444-4444-4444-8444-444444444444';
  const fresh = '55555555-5555-4555-8555-555555555555';
  const before = '2026-11-25T21:00:00.000Z';
  await ctx.submit({ kind: 'acquire', owner: { uuid: gone, name: 'gone' }, disks: [{ path: '/img/gone.qcow2', mode: 'exclusive' }], at: before, source: 'hook' });
  await ctx.submit({ kind: 'acquire', owner: { uuid: apiOwned, name: 'api' }, disks: [{ path: '/img/api.qcow2', mode: 'exclusive' }], at: before, source: 'api' });
  // Taken by the hook after the listing began: a VM starting right now.
  await ctx.submit({ kind: 'acquire', owner: { uuid: fresh, name: 'fresh' }, disks: [{ path: '/img/fresh.qcow2', mode: 'exclusive' }], at: '2026-11-25T21:30:01.000Z', source: 'hook' });
  virsh
    .on('list --all --uuid --name', `${TCG_UUID} tcg1\n${gone} gone\n\n`)
    .on('list --uuid', `${TCG_UUID}\n\n`)
    .on(`dumpxml ${TCG_UUID}`, TCG_XML)
    .on(`domstate ${gone}`, 'shut off\n');
  const n = ctx.commands.length;
  await handler.reconcile();
  assert.equal(summary(ctx.commands.slice(n)), [`acquire virsh-reconcile ${ROOT}:exclusive,${HOT}:exclusive`, 'release virsh-reconcile /img/gone.qcow2']);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  assert.equal(ctx.held(gone), []);
  assert.equal(ctx.held(apiOwned), ['/img/api.qcow2']);
  assert.equal(ctx.held(fresh), ['/img/fresh.qcow2']);
  assert.ok(ctx.logs.some((l) => /reconciled: 1 active domain\(s\), 2 lock\(s\) taken, 1 released/.test(l.msg)));
});

test('given a VM listed as stopped that runs by the time of the re-check, then reconcile keeps its locks', async () => {
  const { ctx, virsh, handler } = setup();
  const vm = '66666666-6666-4666-8666-666666666666';
  await ctx.submit({ kind: 'acquire', owner: { uuid: vm }, disks: [{ path: '/img/r.qcow2', mode: 'exclusive' }], at: '2026-11-25T21:00:00.000Z', source: 'virsh' });
  virsh.on('list --all --uuid --name', `${vm} r\n`).on('list --uuid', '\n').on(`domstate ${vm}`, 'running\n');
  await handler.reconcile();
  assert.equal(ctx.held(vm), ['/img/r.qcow2']);
});

test('given libvirtd unreachable, when reconciling, then the failure is logged and nothing changes', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.fail('list --all --uuid --name', 'error: failed to connect to the hypervisor');
  await handler.reconcile();
  assert.equal(ctx.commands, []);
  assert.ok(ctx.logs.some((l) => l.level === 'error' && /failed to connect to the hypervisor/.test(l.msg)));
});

test('isActiveState: running, paused and crashed (QEMU kept, on_crash=preserve) own their disks; shut off does not', () => {
  assert.ok(isActiveState('running\n'));
  assert.ok(isActiveState('paused\n'));
  assert.ok(isActiveState('in shutdown\n'));
  assert.ok(isActiveState('crashed\n'));
  assert.not.ok(isActiveState('shut off\n'));
  assert.not.ok(isActiveState(''));
});

// -- issue 17: releases only for an incarnation libvirt says is gone; unknown is not "not wanted" --

const ALL_XML = fixture('all-disks-running.xml');
const ALL_UUID = '0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01';
const VOL = fixture('vol-path.txt').trim();

test('given Crashed Crashloaded (crash kernel loaded, QEMU runs), then the locks stay; Crashed Panicked with on_crash=restart too; gone: released', async () => {
  const { ctx, virsh, handler } = setup();
  virsh.on('dumpxml tcg1', TCG_XML).on('domuuid tcg1', TCG_UUID).on(`domstate ${TCG_UUID}`, 'running\n');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted", "event 'lifecycle' for domain 'tcg1': Crashed Crashloaded"]);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  assert.ok(ctx.logs.some((l) => /Crashed Crashloaded for VM tcg1 .* libvirt says it is running: .* it keeps its locks/.test(l.msg)));
  // on_crash=restart: libvirt resets the guest in place; domstate says running again.
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Crashed Panicked"]);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  // on_crash=preserve: the crashed domain's QEMU is kept.
  virsh.on(`domstate ${TCG_UUID}`, 'crashed\n');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Crashed Panicked"]);
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  // on_crash=destroy: shut off.
  virsh.on(`domstate ${TCG_UUID}`, 'shut off\n');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Crashed Panicked"]);
  assert.equal(ctx.held(TCG_UUID), []);
});

test('given a late Stopped of an earlier run while libvirt says the domain runs, then the new run keeps the lock the hook took', async () => {
  const { ctx, virsh, handler } = setup();
  await ctx.submit({ kind: 'acquire', owner: { uuid: TCG_UUID, name: 'tcg1' }, disks: [{ path: ROOT, mode: 'exclusive' }], at: '2026-11-25T21:29:00.000Z', source: 'hook' });
  virsh.on('domuuid tcg1', TCG_UUID).on(`domstate ${TCG_UUID}`, 'running\n');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Stopped Destroyed"]);
  assert.equal(ctx.held(TCG_UUID), [ROOT]);
  assert.not.ok(ctx.commands.some((c) => c.kind === 'release'));
});

test('given a transient name reused by another uuid, when the old run\'s Stopped arrives, then the old uuid\'s lock goes and the new one\'s stays', async () => {
  const { ctx, virsh, handler } = setup();
  const oldUuid = '77777777-7777-4777-8777-777777777777';
  await ctx.submit({ kind: 'acquire', owner: { uuid: oldUuid, name: 'web' }, disks: [{ path: '/img/old.qcow2', mode: 'exclusive' }], at: '2026-11-25T21:00:00.000Z', source: 'hook' });
  await ctx.submit({ kind: 'acquire', owner: { uuid: TCG_UUID, name: 'web' }, disks: [{ path: ROOT, mode: 'exclusive' }], at: '2026-11-25T21:29:00.000Z', source: 'hook' });
  virsh.on('domuuid web', TCG_UUID).on(`domstate ${TCG_UUID}`, 'running\n').fail(`domstate ${oldUuid}`, `error: failed to get domain '${oldUuid}'`);
  await feed(handler, ["event 'lifecycle' for domain 'web': Stopped Destroyed"]);
  assert.equal(ctx.held(oldUuid), []);
  assert.equal(ctx.held(TCG_UUID), [ROOT]);
});

test('given libvirt cannot answer domstate, then Stopped and Undefined keep the locks, say so, and schedule a reconcile', async () => {
  const { ctx, virsh, handler, timers } = setup();
  await ctx.submit({ kind: 'acquire', owner: { uuid: TCG_UUID, name: 'tcg1' }, disks: [{ path: ROOT, mode: 'exclusive' }], at: '2026-11-25T21:00:00.000Z', source: 'virsh' });
  virsh.on('domuuid tcg1', TCG_UUID).fail(`domstate ${TCG_UUID}`, 'error: failed to connect to the hypervisor');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Undefined Removed", "event 'lifecycle' for domain 'tcg1': Stopped Destroyed"]);
  assert.equal(ctx.held(TCG_UUID), [ROOT]);
  assert.ok(ctx.logs.some((l) => l.level === 'warning' && /Undefined Removed for VM tcg1 .*domstate failed \(error: failed to connect to the hypervisor\): keeping its locks/.test(l.msg)));
  assert.is(timers.length, 1, 'one reconcile scheduled');
});

test('given vol-path fails during a reconcile, then the held volume lock is kept (unknown, not unwanted) and a retry releases nothing it still wants', async () => {
  const { ctx, virsh, handler, timers } = setup();
  await ctx.submit({ kind: 'acquire', owner: { uuid: ALL_UUID, name: 'vm-all-disks' }, disks: [{ path: VOL, mode: 'exclusive' }], at: '2026-11-25T21:00:00.000Z', source: 'hook' });
  virsh
    .on('list --all --uuid --name', `${ALL_UUID} vm-all-disks\n`)
    .on('list --uuid', `${ALL_UUID}\n`)
    .on(`dumpxml ${ALL_UUID}`, ALL_XML)
    .fail('vol-path --pool vmpool data.qcow2', "error: failed to get pool 'vmpool'\nerror: Storage pool not found: no storage pool with matching name 'vmpool'");
  await handler.reconcile();
  assert.ok(ctx.held(ALL_UUID).includes(VOL), 'the volume lock stays');
  assert.not.ok(ctx.commands.some((c) => c.kind === 'release'));
  assert.ok(ctx.logs.some((l) => l.level === 'warning' && /vdc .*could not be resolved.*keeping its 1 other held lock\(s\)/.test(l.msg)));
  assert.ok(ctx.logs.some((l) => /the locks of 1 VM\(s\) kept as unknown/.test(l.msg)));
  assert.ok(timers.length >= 1);
  const retry = timers[timers.length - 1]!;
  assert.is(retry.ms, 2000);
  // The pool is back: the retry resolves the volume and keeps it.
  virsh.on('vol-path --pool vmpool data.qcow2', VOL + '\n');
  retry.fn();
  await handler.idle();
  assert.ok(ctx.held(ALL_UUID).includes(VOL));
  assert.not.ok(ctx.commands.some((c) => c.kind === 'release'));
  assert.is(timers[timers.length - 1]!.ms, 5 * 60_000, 'a complete reconcile schedules the periodic one');
});

test('given device-removed of an unknown alias while a volume cannot be resolved, then nothing is released', async () => {
  const { ctx, virsh, handler } = setup();
  await ctx.submit({ kind: 'acquire', owner: { uuid: ALL_UUID, name: 'vm-all-disks' }, disks: [{ path: VOL, mode: 'exclusive' }], at: '2026-11-25T21:00:00.000Z', source: 'hook' });
  virsh.on('domuuid vm-all-disks', ALL_UUID).on(`dumpxml ${ALL_UUID}`, ALL_XML).fail('vol-path --pool vmpool data.qcow2', 'error: failed to get pool');
  await feed(handler, ["event 'device-removed' for domain 'vm-all-disks': virtio-disk9"]);
  assert.equal(ctx.held(ALL_UUID), [VOL]);
  assert.ok(ctx.logs.some((l) => /device-removed virtio-disk9 .*cannot be resolved now.*keeping its locks/.test(l.msg)));
});

test('given auto_disk_leases = 0, then Started and reconcile lock only the <lease>, as the hook does', async () => {
  const ctxOpts = setup();
  const { ctx, virsh } = ctxOpts;
  const handler = new LibvirtEventHandler({ uri: 'qemu:///system', ctx, virsh: virsh.run, onConflict: () => 'report', leaseRules: () => ({ autoDiskLeases: false, requireLeaseForDisks: false }), later: () => () => {} });
  virsh.on('dumpxml vm-all-disks', ALL_XML).on('vol-path --pool vmpool data.qcow2', VOL);
  await feed(handler, ["event 'lifecycle' for domain 'vm-all-disks': Started Booted"]);
  const acq = ctx.commands.filter((c) => c.kind === 'acquire');
  assert.is(acq.length, 1);
  assert.equal(acq[0]!.kind === 'acquire' && acq[0]!.disks.map((d) => d.path), ['/var/lib/libvirt/lockd/leases/somearea/somekey']);
  assert.not.ok(ctx.logs.some((l) => /vdc is not protected/.test(l.msg)));
  virsh.on('list --all --uuid --name', `${ALL_UUID} vm-all-disks\n`).on('list --uuid', `${ALL_UUID}\n`).on(`dumpxml ${ALL_UUID}`, ALL_XML);
  await handler.reconcile();
  assert.equal(ctx.held(ALL_UUID), ['/var/lib/libvirt/lockd/leases/somearea/somekey']);
});

test('given Started and dumpxml fails for another reason than "no such domain", then it is logged and a reconcile is scheduled', async () => {
  const { ctx, virsh, handler, timers } = setup();
  virsh.fail('dumpxml tcg1', 'error: Timed out during operation: cannot acquire state change lock');
  await feed(handler, ["event 'lifecycle' for domain 'tcg1': Started Booted"]);
  assert.ok(ctx.logs.some((l) => l.level === 'warning' && /cannot take the locks of VM tcg1: virsh dumpxml tcg1 failed \(error: Timed out/.test(l.msg)));
  assert.is(timers.length, 1);
  assert.is(timers[0]!.ms, 2000);
});

test('given a reconcile fails, then it is retried with backoff; once it succeeds, the periodic one follows', async () => {
  const { ctx, virsh, handler, timers } = setup();
  virsh.fail('list --all --uuid --name', 'error: failed to connect to the hypervisor');
  await handler.reconcile();
  assert.equal(timers.map((t) => t.ms), [2000]);
  timers[0]!.fn();
  await handler.idle();
  assert.equal(timers.map((t) => t.ms), [2000, 5000]);
  virsh.on('list --all --uuid --name', '\n').on('list --uuid', '\n');
  timers[1]!.fn();
  await handler.idle();
  assert.equal(timers.map((t) => t.ms), [2000, 5000, 300_000]);
  assert.ok(ctx.logs.some((l) => /reconciled: 0 active/.test(l.msg)));
});

test('given virsh (re)connected, then a reconcile runs now and once more 5 s later (a change before its registration shows there), then every 5 minutes', async () => {
  const { ctx, virsh, handler, timers } = setup();
  virsh.on('list --all --uuid --name', '\n').on('list --uuid', '\n');
  await handler.connected();
  assert.equal(timers.map((t) => t.ms), [5000]);
  // A VM started in the gap before the registration: no event, but the second listing has it.
  virsh.on('list --all --uuid --name', `${TCG_UUID} tcg1\n`).on('list --uuid', `${TCG_UUID}\n`).on(`dumpxml ${TCG_UUID}`, TCG_XML);
  timers[0]!.fn();
  await handler.idle();
  assert.equal(ctx.held(TCG_UUID), [HOT, ROOT]);
  assert.equal(timers.map((t) => t.ms), [5000, 300_000]);
});

// -- the supervisor -----------------------------------------------------------------------------

class FakeChild extends EventEmitter implements ChildLike {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  killed = false;
  kill(): boolean {
    this.killed = true;
    setImmediate(() => this.emit('exit', null, 'SIGTERM'));
    return true;
  }
  exitSoon(code: number, stderr?: string): void {
    if (stderr) this.stderr.write(stderr + '\n');
    setImmediate(() => this.emit('exit', code, null));
  }
}

test('given virsh keeps exiting, then it is restarted with doubling backoff up to the cap, reset after a healthy run, each restart logged', async () => {
  let clock = 0;
  const runFor = [0, 0, 0, 0, 0, 0, 70_000, 0, 0]; // simulated lifetime of each virsh run
  const children: FakeChild[] = [];
  const logs: string[] = [];
  const lines: string[] = [];
  let stopAfter: () => void = () => {};
  const sup = superviseVirshEvents({
    uri: 'test:///x',
    onLine: (l) => lines.push(l),
    onConnected: () => {},
    log: (_lvl, msg) => logs.push(msg),
    initialDelayMs: 500,
    maxDelayMs: 4000,
    healthyMs: 60_000,
    connectedAfterMs: 10_000,
    now: () => clock,
    sleep: async () => {},
    spawn: (cmd, args, env) => {
      assert.is(cmd, 'virsh');
      assert.equal(args, ['-c', 'test:///x', 'event', '--all', '--loop', '--timestamp']);
      assert.is(env.LC_ALL, 'C');
      const c = new FakeChild();
      const i = children.length;
      children.push(c);
      if (i >= runFor.length) {
        stopAfter();
        return c;
      }
      clock += runFor[i]!;
      c.stdout.write(`event 'lifecycle' for domain 'd${i}': Started Booted\n`);
      c.exitSoon(1, 'error: Disconnected from test:///x due to end of file');
      return c;
    },
  });
  await new Promise<void>((r) => (stopAfter = r));
  await sup.stop();
  assert.equal(sup.delays, [500, 1000, 2000, 4000, 4000, 4000, 500, 1000, 2000]);
  assert.is(sup.restarts, 9);
  assert.is(logs.length, 9);
  assert.match(logs[0]!, /exited \(code 1: error: Disconnected from test:\/\/\/x due to end of file\) after 0\.0 s; restart #1 in 0\.5 s/);
  assert.ok(lines.includes("event 'lifecycle' for domain 'd3': Started Booted"));
  assert.ok(children[children.length - 1]!.killed, 'stop() kills the running virsh');
});

test('given virsh stays up past connectedAfterMs, then onConnected fires once per run; a run that dies at once never reconciles', async () => {
  let connected = 0;
  const children: FakeChild[] = [];
  const sup = superviseVirshEvents({
    uri: 'test:///x',
    onLine: () => {},
    onConnected: () => connected++,
    log: () => {},
    connectedAfterMs: 20,
    sleep: async () => {},
    spawn: () => {
      const c = new FakeChild();
      if (children.length === 0) c.exitSoon(1, 'error: failed to connect to the hypervisor');
      children.push(c);
      return c;
    },
  });
  await new Promise((r) => setTimeout(r, 120));
  assert.is(children.length, 2);
  assert.is(connected, 1);
  await sup.stop();
});

test('given virsh cannot be run at all, then the spawn error is logged as a restart, not thrown', async () => {
  const logs: string[] = [];
  let n = 0;
  const sup = superviseVirshEvents({
    uri: 'test:///x',
    onLine: () => {},
    onConnected: () => {},
    log: (_l, m) => logs.push(m),
    sleep: async () => new Promise((r) => setTimeout(r, 5)),
    spawn: () => {
      n++;
      const c = new FakeChild();
      setImmediate(() => c.emit('error', Object.assign(new Error('spawn virsh ENOENT'), { code: 'ENOENT' })));
      return c;
    },
  });
  await new Promise((r) => setTimeout(r, 40));
  await sup.stop();
  assert.ok(n >= 2);
  assert.match(logs[0]!, /cannot run virsh: spawn virsh ENOENT/);
});

// -- decision 0025: a restart with a wrong libvirt_uri keeps the locks that libvirt does not answer for --

const GONE_VM = { uuid: '77777777-7777-4777-8777-777777777777', name: 'gone' };
const BEFORE = '2026-11-25T21:00:00.000Z';

/** A handler as the stream a daemon starts with, on `uri` reaching a libvirt that knows no domain. */
function restartedOn(ctx: FakeContext, uri: string, host = 'hv-a') {
  const virsh = new FakeVirsh().on('uri', `${uri}\n`).on('hostname', `${host}\n`).on('list --all --uuid --name', '\n').on('list --uuid', '\n');
  const handler = new LibvirtEventHandler({ uri, ctx, virsh: virsh.run, onConflict: () => 'report', later: () => () => {}, localHost: 'hv-a', now: () => new Date('2026-11-25T21:30:00.000Z') });
  return { virsh, handler };
}

test('a restart on another libvirt keeps the locks of a VM the journal says another libvirt vouched for; the vouching one releases them', async () => {
  const ctx = new FakeContext('hostA');
  await ctx.submit({ kind: 'acquire', owner: GONE_VM, disks: [{ path: '/img/gone.qcow2', mode: 'exclusive' }], at: BEFORE, source: 'virsh-reconcile' });
  ctx.record([fact('LibvirtVouched', BEFORE, { owner: GONE_VM, libvirt: { uri: 'qemu:///system', host: 'hv-a' }, source: 'virsh' })]);
  const wrong = restartedOn(ctx, 'qemu:///session');
  await wrong.handler.reconcile();
  assert.equal(ctx.held(GONE_VM.uuid), ['/img/gone.qcow2']);
  const warn = ctx.logs.find((l) => l.level === 'warning' && l.msg.includes(GONE_VM.uuid));
  assert.ok(warn, JSON.stringify(ctx.logs));
  assert.match(warn!.msg, 'answered for by libvirt qemu:///system on host hv-a, and this is qemu:///session on host hv-a');
  assert.match(warn!.msg, /keeping its locks/);
  const st = wrong.handler.status();
  assert.equal(st.connectedTo, { uri: 'qemu:///session', host: 'hv-a' });
  assert.equal(st.keptLocksOf.map((k) => [k.vm, k.reason, k.vouchedBy?.uri]), [[GONE_VM.uuid, 'other-libvirt', 'qemu:///system']]);
  // The libvirt that vouched, reached by another transport: the VM stopped while the daemon was down.
  const right = restartedOn(ctx, 'qemu+unix:///system', 'hv-a.example.org');
  await right.handler.reconcile();
  assert.equal(ctx.held(GONE_VM.uuid), []);
});

test('a restart on a libvirt the hook does not serve keeps the hook\'s locks of VMs it does not know', async () => {
  const ctx = new FakeContext('hostA');
  await ctx.submit({ kind: 'acquire', owner: GONE_VM, disks: [{ path: '/img/gone.qcow2', mode: 'exclusive' }], at: BEFORE, source: 'hook' });
  for (const [uri, host] of [['test+unix:///default', 'hv-a'], ['qemu:///session', 'hv-a'], ['qemu+ssh://hv-b/system', 'hv-b']] as const) {
    const wrong = restartedOn(ctx, uri, host);
    await wrong.handler.reconcile();
    assert.equal(ctx.held(GONE_VM.uuid), ['/img/gone.qcow2'], uri);
    assert.equal(wrong.handler.status().keptLocksOf.map((k) => k.reason), ['not-hook-libvirt']);
  }
  await restartedOn(ctx, 'qemu:///system').handler.reconcile();
  assert.equal(ctx.held(GONE_VM.uuid), []);
});

test('event-stream locks no libvirt vouched for (a journal from before LibvirtVouched) are kept; a listing of the VM running vouches for them once', async () => {
  const ctx = new FakeContext('hostA');
  await ctx.submit({ kind: 'acquire', owner: GONE_VM, disks: [{ path: '/img/gone.qcow2', mode: 'exclusive' }], at: BEFORE, source: 'virsh' });
  const r = restartedOn(ctx, 'qemu:///system');
  await r.handler.reconcile();
  assert.equal(ctx.held(GONE_VM.uuid), ['/img/gone.qcow2']);
  assert.equal(r.handler.status().keptLocksOf.map((k) => k.reason), ['unvouched']);
  assert.ok(ctx.logs.some((l) => l.level === 'warning' && /no libvirt has reported it running since its locks were taken/.test(l.msg)));

  // Running after all: listed, it is vouched for (once, not at every reconcile).
  r.virsh.on('list --all --uuid --name', `${GONE_VM.uuid} gone\n`).on('list --uuid', `${GONE_VM.uuid}\n`);
  r.virsh.on(`dumpxml ${GONE_VM.uuid}`, `<domain type='qemu' id='3'><name>gone</name><uuid>${GONE_VM.uuid}</uuid><devices><disk type='file' device='disk'><source file='/img/gone.qcow2'/><target dev='vda'/></disk></devices></domain>`);
  await r.handler.reconcile();
  await r.handler.reconcile();
  const vouches = ctx.facts.filter((f) => f.kind === 'LibvirtVouched');
  assert.equal(vouches.map((f) => f.payload), [{ owner: GONE_VM, libvirt: { uri: 'qemu:///system', host: 'hv-a' }, source: 'virsh' }]);
  assert.equal(r.handler.status().keptLocksOf, []);
  // It stops: the libvirt that vouched releases it, in a later process too.
  r.virsh.on('list --all --uuid --name', `${GONE_VM.uuid} gone\n`).on('list --uuid', '\n').on(`domstate ${GONE_VM.uuid}`, 'shut off\n');
  await restartedOn(ctx, 'qemu:///system').handler.reconcile();
  assert.equal(ctx.held(GONE_VM.uuid), []);
});

test('which libvirt this is cannot be learnt: a VM it says is gone keeps its locks and the reconcile is retried', async () => {
  const ctx = new FakeContext('hostA');
  await ctx.submit({ kind: 'acquire', owner: GONE_VM, disks: [{ path: '/img/gone.qcow2', mode: 'exclusive' }], at: BEFORE, source: 'hook' });
  const r = restartedOn(ctx, 'qemu:///system');
  r.virsh.fail('hostname', 'error: failed to get hostname');
  const timers: number[] = [];
  const handler = new LibvirtEventHandler({ uri: 'qemu:///system', ctx, virsh: r.virsh.run, onConflict: () => 'report', later: (_fn, ms) => (timers.push(ms), () => {}), localHost: 'hv-a' });
  await handler.reconcile();
  assert.equal(ctx.held(GONE_VM.uuid), ['/img/gone.qcow2']);
  assert.equal(handler.status().keptLocksOf.map((k) => k.reason), ['unknown-libvirt']);
  assert.is(handler.status().connectError, 'virsh hostname: error: failed to get hostname');
  assert.is(timers[timers.length - 1], 2000, 'retried like an incomplete reconcile');
});

test('a reconcile journals the vouches of all the VMs it lists running in one append', async () => {
  const ctx = new FakeContext('hostA');
  const vms = ['88888888-8888-4888-8888-888888888881', '88888888-8888-4888-8888-888888888882'];
  const r = restartedOn(ctx, 'qemu:///system');
  for (const [i, uuid] of vms.entries()) {
    await ctx.submit({ kind: 'acquire', owner: { uuid, name: `v${i}` }, disks: [{ path: `/img/v${i}.qcow2`, mode: 'exclusive' }], at: BEFORE, source: 'hook' });
    r.virsh.on(`dumpxml ${uuid}`, `<domain type='qemu' id='${i + 1}'><name>v${i}</name><uuid>${uuid}</uuid><devices><disk type='file' device='disk'><source file='/img/v${i}.qcow2'/><target dev='vda'/></disk></devices></domain>`);
  }
  r.virsh.on('list --all --uuid --name', vms.map((u, i) => `${u} v${i}`).join('\n') + '\n').on('list --uuid', vms.join('\n') + '\n');
  const appends: string[][] = [];
  const record = ctx.record.bind(ctx);
  ctx.record = (facts) => (appends.push(facts.map((f) => f.kind)), record(facts));
  await r.handler.reconcile();
  assert.equal(appends.filter((a) => a.includes('LibvirtVouched')), [['LibvirtVouched', 'LibvirtVouched']]);
  assert.equal([...ctx.st.vouchedBy.keys()].sort(), vms);
});

test.run();
