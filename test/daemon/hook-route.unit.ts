// The daemon's half of the qemu hook: which hook call becomes which command, and the memory of
// incoming migrations across hook processes. Fake engine (real decide/evolve), no I/O.
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HookRoute } from '../../src/daemon/hook-route.js';
import { BadInputError } from '../../src/engine/errors.js';
import { FakeContext } from '../helpers/fake-source.js';

const XML = readFileSync(new URL('../events/fixtures/qemu-session-running.xml', import.meta.url), 'utf8');
const UUID = 'b05b77c4-296e-405c-8196-3c19ad33cbf1';
const ROOT = '/tmp/lvsess/home/root.qcow2';
const HOT = '/tmp/lvsess/home/hot.img';

function setup(rules = { autoDiskLeases: true, requireLeaseForDisks: false }) {
  const ctx = new FakeContext('hostA');
  let now = Date.parse('2026-11-25T21:00:00Z');
  const timers: Array<{ fn: () => void; ms: number; cancelled: boolean }> = [];
  const logs: string[] = [];
  const route = new HookRoute({
    submit: (c) => ctx.submit(c),
    host: () => 'hostA',
    now: () => now,
    volPath: async () => null,
    incomingTtlMs: 60_000,
    handOverTtlMs: 10_000,
    leaseRules: () => rules,
    log: (level, msg) => logs.push(`${level} ${msg}`),
    later: (fn, ms) => {
      const t = { fn, ms, cancelled: false };
      timers.push(t);
      return () => (t.cancelled = true);
    },
  });
  const call = (op: string, subop: string, xml = XML) => route.handle({ name: 'tcg1', op, subop, extra: '-', xml });
  /** Run the pending timer (the last one scheduled and not cancelled) and let its attempt finish. */
  const tick = async (): Promise<boolean> => {
    const t = [...timers].reverse().find((x) => !x.cancelled);
    if (!t) return false;
    t.cancelled = true;
    now += t.ms;
    t.fn();
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    return true;
  };
  return { ctx, route, call, timers, logs, tick, advance: (ms: number) => (now += ms) };
}

test('given prepare begin, then every disk is acquired with source "hook"', async () => {
  const { ctx, call } = setup();
  const r = await call('prepare', 'begin');
  assert.is(r.status, 'ok');
  assert.is(r.action, 'acquire');
  assert.equal(r.vm, { uuid: UUID, name: 'tcg1' });
  assert.is(ctx.commands[0]!.kind, 'acquire');
  assert.is(ctx.commands[0]!.source, 'hook');
  assert.equal(ctx.held(UUID), [HOT, ROOT]);
});

test('given require_lease_for_disks = 1 and no <lease>, then prepare begin fails with the lockd plugin\'s message and takes nothing', async () => {
  const { ctx, call } = setup({ autoDiskLeases: false, requireLeaseForDisks: true });
  const r = await call('prepare', 'begin');
  assert.is(r.status, 'error');
  assert.is(r.status === 'error' && r.code, 'VMLOCKD_ERR_CONFIG');
  assert.match(r.status === 'error' ? r.message : '', 'Read/write, exclusive access, disks were present, but no leases specified');
  assert.is(ctx.commands.length, 0);
});

test('given auto_disk_leases = 0 without require_lease_for_disks, then disks take no automatic lock', async () => {
  const { ctx, call } = setup({ autoDiskLeases: false, requireLeaseForDisks: false });
  const r = await call('prepare', 'begin');
  assert.is(r.status, 'ok');
  assert.equal(ctx.held(UUID), []);
});

test('given one disk held by another VM, then prepare begin is refused and takes nothing (all or nothing)', async () => {
  const { ctx, call } = setup();
  ctx.foreign.set(HOT, { host: 'hostB', owner: { uuid: '22222222-2222-4222-8222-222222222222', name: 'vm2' }, mode: 'exclusive' });
  const r = await call('prepare', 'begin');
  assert.is(r.status, 'refused');
  assert.equal(ctx.held(UUID), []);
});

test('given release end, then everything the VM holds is released', async () => {
  const { ctx, call } = setup();
  await call('prepare', 'begin');
  const r = await call('release', 'end');
  assert.is(r.status, 'ok');
  assert.is(ctx.commands[1]!.kind, 'release');
  assert.equal(ctx.held(UUID), []);
});

test('given calls with no lock meaning, then no command is submitted and no XML is needed', async () => {
  const { ctx, route } = setup();
  for (const [op, subop] of [['start', 'begin'], ['started', 'begin'], ['stopped', 'end'], ['reconnect', 'begin'], ['attach', 'begin']] as const) {
    const r = await route.handle({ name: 'tcg1', op, subop });
    assert.is(r.action, 'noop');
  }
  assert.equal(ctx.commands, []);
});

test('given restore begin, then the disks are checked, not taken; a holder with the same uuid elsewhere still refuses', async () => {
  const { ctx, call } = setup();
  const ok = await call('restore', 'begin');
  assert.is(ok.status, 'ok');
  assert.is(ctx.commands[0]!.kind, 'check');
  assert.equal(ctx.held(UUID), []);
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: UUID, name: 'tcg1' }, mode: 'exclusive' });
  assert.is((await call('restore', 'begin')).status, 'refused');
});

test('given migrate begin then prepare begin (a migration destination), then the source holding the disks passes and the destination takes them once the source lets go', async () => {
  const { ctx, route, call, tick, logs } = setup();
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: UUID, name: 'tcg1' }, mode: 'exclusive' });
  const m = await call('migrate', 'begin');
  assert.is(m.status, 'ok');
  assert.match(m.note ?? '', /migration source \(host hostB\)/);
  assert.ok(route.isIncoming(UUID));
  const p = await call('prepare', 'begin');
  assert.is(p.status, 'ok');
  assert.is(p.action, 'check');
  assert.match(p.note ?? '', /this host takes the disks as soon as the source lets go/);
  assert.equal(ctx.held(UUID), []);
  assert.not.ok(route.isIncoming(UUID), 'the prepare consumed the memory');
  assert.ok(route.isHandingOver(UUID));
  // The source still holds: the attempt is refused and retried.
  assert.ok(await tick());
  assert.equal(ctx.held(UUID), []);
  // The source lets go (its release end): the next attempt takes the disks, with the hook alone.
  ctx.foreign.delete(ROOT);
  assert.ok(await tick());
  assert.equal(ctx.held(UUID), [HOT, ROOT]);
  assert.not.ok(route.isHandingOver(UUID));
  assert.ok(logs.some((l) => /migration hand-over done/.test(l)));
  assert.not.ok(await tick(), 'nothing more scheduled');
});

test('17.4: given a leftover accepted migrate begin and the memory used once, then a later ordinary start on this host acquires (refused while the VM runs elsewhere)', async () => {
  const { ctx, route, call, tick } = setup();
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: UUID, name: 'tcg1' }, mode: 'exclusive' });
  await call('migrate', 'begin');
  await call('prepare', 'begin');
  await call('release', 'end'); // the incoming migration failed here
  assert.not.ok(route.isHandingOver(UUID), 'release end cancels the hand-over');
  assert.not.ok(await tick());
  const again = await call('prepare', 'begin');
  assert.is(again.status, 'refused');
  assert.is(again.action, 'acquire');
});

test('17.4: given migrate begin refused (another VM holds the disk), then nothing is remembered and a later start is an ordinary acquire', async () => {
  const { ctx, route, call } = setup();
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: '22222222-2222-4222-8222-222222222222', name: 'vm2' }, mode: 'exclusive' });
  assert.is((await call('migrate', 'begin')).status, 'refused');
  assert.not.ok(route.isIncoming(UUID));
  ctx.foreign.delete(ROOT);
  const p = await call('prepare', 'begin');
  assert.is(p.action, 'acquire');
  assert.equal(ctx.held(UUID), [HOT, ROOT]);
});

test('17.5: given an incoming migration whose disks are already free, then prepare begin takes them at once (before QEMU starts)', async () => {
  const { ctx, route, call } = setup();
  await call('migrate', 'begin');
  const p = await call('prepare', 'begin');
  assert.is(p.status, 'ok');
  assert.equal(ctx.held(UUID), [HOT, ROOT]);
  assert.not.ok(route.isHandingOver(UUID));
});

test('17.5: given the hand-over finds ANOTHER VM holding a disk, then it stops and says CONFLICT', async () => {
  const { ctx, route, call, tick, logs } = setup();
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: UUID, name: 'tcg1' }, mode: 'exclusive' });
  await call('migrate', 'begin');
  await call('prepare', 'begin');
  ctx.foreign.set(ROOT, { host: 'hostC', owner: { uuid: '22222222-2222-4222-8222-222222222222', name: 'intruder' }, mode: 'exclusive' });
  await tick();
  assert.not.ok(route.isHandingOver(UUID));
  assert.ok(logs.some((l) => /^error CONFLICT: VM tcg1 .* migrated in, but its disks are not this VM's/.test(l)));
  assert.equal(ctx.held(UUID), []);
});

test('17.5: given release end while a hand-over attempt is in flight and succeeds, then what it took is given back', async () => {
  const ctx = new FakeContext('hostA');
  let gate: () => void = () => {};
  let timer: () => void = () => {};
  let holdNext = false;
  const route = new HookRoute({
    submit: async (c) => {
      if (holdNext && c.kind === 'acquire') {
        holdNext = false;
        await new Promise<void>((r) => (gate = r));
      }
      return ctx.submit(c);
    },
    host: () => 'hostA',
    volPath: async () => null,
    later: (fn) => {
      timer = fn;
      return () => {};
    },
  });
  const call = (op: string, subop: string) => route.handle({ name: 'tcg1', op, subop, extra: '-', xml: XML });
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: UUID, name: 'tcg1' }, mode: 'exclusive' });
  await call('migrate', 'begin');
  await call('prepare', 'begin');
  ctx.foreign.delete(ROOT);
  holdNext = true;
  timer();
  await new Promise((r) => setImmediate(r));
  await call('release', 'end');
  gate();
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  assert.equal(ctx.held(UUID), []);
});

test('given migrate begin and the disk held by ANOTHER VM, then the migration is refused', async () => {
  const { ctx, call } = setup();
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: '22222222-2222-4222-8222-222222222222', name: 'vm2' }, mode: 'exclusive' });
  assert.is((await call('migrate', 'begin')).status, 'refused');
});

test('given migrate begin long ago (expired), then prepare begin acquires', async () => {
  const { ctx, call, advance } = setup();
  ctx.foreign.set(ROOT, { host: 'hostB', owner: { uuid: UUID, name: 'tcg1' }, mode: 'exclusive' });
  await call('migrate', 'begin');
  ctx.foreign.delete(ROOT);
  advance(61_000);
  const p = await call('prepare', 'begin');
  assert.is(p.action, 'acquire');
  assert.equal(ctx.held(UUID), [HOT, ROOT]);
});

test('given migrate begin then release end (migration failed), then the memory is dropped', async () => {
  const { route, call } = setup();
  await call('migrate', 'begin');
  await call('release', 'end');
  assert.not.ok(route.isIncoming(UUID));
});

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

test('given bad XML or missing fields, then a BadInputError names the problem', async () => {
  const { route, call } = setup();
  const bad = await rejection(call('prepare', 'begin', '<domain><name>x'));
  assert.instance(bad, BadInputError);
  assert.match(bad.message, /not well-formed/);
  assert.match((await rejection(route.handle({ name: 'x', op: 'prepare' }))).message, /subop must be a string/);
  assert.match((await rejection(route.handle({ driver: 'lxc', name: 'x', op: 'prepare', subop: 'begin' }))).message, /only the qemu hook/);
});

test.run();
