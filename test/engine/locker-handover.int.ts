// issue 17.5: the locker's side of the migration hand-over on real files and real OFD locks. Three
// Locker instances stand for three hosts (each holds its own open file descriptions, which conflict
// with each other as other hosts' would); their clocks are given, so the reservation's time bound
// is tested without waiting for it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HANDOVER_OFFSET, LEASE_SPAN, RECORD_SIZE, RESERVATION_TTL_MS, decodeExclusive } from '../../src/engine/holder-record.js';
import { Locker, inspectLockFile, type Outcome } from '../../src/engine/locker.js';
import { lockspaceId } from '../../src/engine/locker-hosts.js';
import type { Owner, ResolvedDisk, ResourceRef } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';

const web1: Owner = { uuid: 'c1111111-1111-4111-8111-111111111111', name: 'web1' };
const intruder: Owner = { uuid: 'c2222222-2222-4222-8222-222222222222', name: 'intruder' };
const AT = '2026-11-30T08:00:00.000Z';

function setup() {
  const dir = tmpdir('vmlockd-handover-locker-');
  const ref: ResourceRef = { id: path.join(dir, 'lease'), name: 'lease', lockspace: dir, kind: 'file', canonical: path.join(dir, 'web1.qcow2') };
  const disk: ResolvedDisk = { path: ref.canonical, mode: 'exclusive', resource: ref };
  const clock = { now: Date.parse(AT) };
  const now = () => clock.now;
  const src = new Locker('src', { now });
  const dst = new Locker('dst', { now });
  const third = new Locker('h3', { now });
  const take = (l: Locker, owner: Owner): Outcome => {
    const p = l.prepare([{ kind: 'lock', how: 'take', disk, owner }], { at: AT, source: 'test' });
    p.commit();
    return p.outcome;
  };
  const release = (l: Locker, owner: Owner) => {
    const p = l.prepare([{ kind: 'unlock', resource: ref, path: disk.path, owner, how: 'drop' }], { at: AT, source: 'test' });
    p.commit();
    return p.facts;
  };
  const wait = (l: Locker) => {
    const p = l.prepare([{ kind: 'await', disks: [disk], owner: web1, from: 'src' }], { at: AT, source: 'hook' });
    p.commit();
    return p.facts;
  };
  const withdraw = (l: Locker) => {
    const p = l.prepare([{ kind: 'withdraw', disks: [disk], owner: web1, outcome: 'cancelled' }], { at: AT, source: 'hook' });
    p.commit();
    return p.facts;
  };
  const done = () => {
    for (const l of [src, dst, third]) l.closeAll();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { ref, clock, src, dst, third, take, release, wait, withdraw, done };
}

test('given web1 held on src and its destination waiting, when src releases, then the record reserves it for dst: a third host is refused naming the reservation, dst takes it and its request is withdrawn', () => {
  const s = setup();
  try {
    assert.is(s.take(s.src, web1).status, 'ok');
    const waiting = s.wait(s.dst);
    assert.is(waiting[0]!.kind, 'HandOverWaiting');
    assert.equal((waiting[0]!.payload as unknown as { disks: Array<{ requested: boolean }> }).disks.map((d) => d.requested), [true]);
    assert.ok(s.dst.isRequested(s.ref.id));
    // The lock file grew by the request; it is still a lease that carries records.
    assert.is(fs.statSync(s.ref.id).size, LEASE_SPAN);
    const rel = s.release(s.src, web1);
    assert.equal((rel[0]!.payload as { handedTo?: { host: string } }).handedTo?.host, 'dst');
    const rec = decodeExclusive(fs.readFileSync(s.ref.id).subarray(0, RECORD_SIZE))!;
    assert.is(rec.mode, 'free');
    assert.equal(rec.reserved?.host, 'dst');
    assert.is(rec.reserved?.until, new Date(Date.parse(AT) + RESERVATION_TTL_MS).toISOString());
    // The kernel lock is free, but the third host's take reads the reservation and gives it back.
    const refused = s.take(s.third, intruder);
    assert.is(refused.status, 'refused');
    if (refused.status === 'refused') {
      assert.match(refused.message, /is reserved for VM web1 \(uuid c1111111-1111-4111-8111-111111111111\) on host dst: a live migration hands it over from host src/);
      assert.equal(refused.refusals[0]!.holder.reservation?.from, 'src');
    }
    assert.is(s.third.isHeld(s.ref.id), false);
    // A check says the same.
    const probe = s.third.prepare([{ kind: 'probe', disk: { path: s.ref.canonical, mode: 'exclusive', resource: s.ref }, owner: intruder }], { at: AT, source: 'test' });
    assert.is(probe.outcome.status, 'refused');
    // The destination takes it (the generation goes on), and its request has done its work.
    const took = s.take(s.dst, web1);
    assert.is(took.status, 'ok');
    assert.is(s.dst.isRequested(s.ref.id), false);
    const now = inspectLockFile(s.ref.id);
    assert.is(now.state, 'exclusive');
    assert.is(now.generation, 2);
    assert.is(fs.readFileSync(s.ref.id).subarray(HANDOVER_OFFSET).toString().trim(), '');
  } finally {
    s.done();
  }
});

test('given a reservation, when the destination withdraws (its wait ended) or closes (its daemon stops), then a third host takes the disk at once', () => {
  for (const how of ['withdraw', 'close'] as const) {
    const s = setup();
    try {
      s.take(s.src, web1);
      s.wait(s.dst);
      s.release(s.src, web1);
      assert.is(s.take(s.third, intruder).status, 'refused');
      if (how === 'withdraw') {
        const f = s.withdraw(s.dst);
        assert.equal(f.map((x) => [x.kind, (x.payload as { withdrawn: number }).withdrawn]), [['HandOverEnded', 1]]);
      } else {
        s.dst.closeAll();
      }
      assert.is(s.take(s.third, intruder).status, 'ok', how);
    } finally {
      s.done();
    }
  }
});

test('given a reservation whose destination lives but never comes (hung), when RESERVATION_TTL_MS has passed on the taker\'s clock, then a third host takes the disk', () => {
  const s = setup();
  try {
    s.take(s.src, web1);
    s.wait(s.dst);
    s.release(s.src, web1);
    s.clock.now += RESERVATION_TTL_MS - 1;
    assert.is(s.take(s.third, intruder).status, 'refused');
    s.clock.now += 1;
    assert.is(s.take(s.third, intruder).status, 'ok');
  } finally {
    s.done();
  }
});

test('given no destination waiting (or one for another VM), when the holder releases, then nothing is reserved and anyone may take the disk', () => {
  const s = setup();
  try {
    s.take(s.src, intruder);
    s.wait(s.dst); // waits for web1, but intruder holds it
    const rel = s.release(s.src, intruder);
    assert.is((rel[0]!.payload as { handedTo?: unknown }).handedTo, undefined);
    assert.is(s.take(s.third, intruder).status, 'ok');
  } finally {
    s.done();
  }
});

test('given a quiet attempt of a waiting destination, then a refusal by its own VM on the source journals nothing, and any other refusal is journaled', () => {
  const s = setup();
  try {
    s.take(s.src, web1);
    const disk: ResolvedDisk = { path: s.ref.canonical, mode: 'exclusive', resource: s.ref };
    const quiet = s.dst.prepare([{ kind: 'lock', how: 'take', disk, owner: web1 }], { at: AT, source: 'hook', quiet: true });
    assert.is(quiet.outcome.status, 'refused');
    assert.equal(quiet.facts, []);
    const other = s.third.prepare([{ kind: 'lock', how: 'take', disk, owner: intruder }], { at: AT, source: 'hook', quiet: true });
    assert.equal(other.facts.map((f) => f.kind), ['LockRefused']);
  } finally {
    s.done();
  }
});

test('given web1 held on src and its destination waiting, when src dies without releasing (no descriptor store: byte 0 drops, the record still says exclusive), then a third host is refused as if reserved and dst takes the disk', () => {
  const s = setup();
  try {
    assert.is(s.take(s.src, web1).status, 'ok');
    s.wait(s.dst);
    // The source daemon dies: its descriptions close, nothing rewrites the record.
    s.src.closeAll();
    const rec = decodeExclusive(fs.readFileSync(s.ref.id).subarray(0, RECORD_SIZE))!;
    assert.is(rec.mode, 'exclusive');
    assert.is(rec.reserved, undefined);
    const refused = s.take(s.third, intruder);
    assert.is(refused.status, 'refused', 'a third host took a disk in the middle of its hand-over');
    if (refused.status === 'refused') {
      assert.match(refused.message, /reserved for VM web1 .* on host dst: a live migration hands it over from host src/);
    }
    assert.is(s.third.isHeld(s.ref.id), false);
    // The source's own VM coming back on src (its daemon's re-take) is refused the same way.
    assert.is(s.take(s.src, web1).status, 'refused');
    // The destination's VM takes it.
    assert.is(s.take(s.dst, web1).status, 'ok');
    assert.is(s.dst.isHeld(s.ref.id), true);
  } finally {
    s.done();
  }
});

test('given src died holding web1 with no destination waiting, then a third host takes the disk', () => {
  const s = setup();
  try {
    assert.is(s.take(s.src, web1).status, 'ok');
    s.src.closeAll();
    assert.is(s.take(s.third, intruder).status, 'ok');
  } finally {
    s.done();
  }
});

test('a destination whose lockspace is not mounted (a bare mount point) makes no hand-over request there: no lock file is created, the request says why', () => {
  const root = tmpdir('vmlockd-handover-bare-');
  const real = path.join(root, 'real');
  const mnt = path.join(root, 'mnt');
  fs.mkdirSync(real);
  fs.mkdirSync(mnt);
  const run = (args: string[]) => {
    const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed (the test needs root): ${r.stderr}`);
  };
  run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', real]);
  let mounted = false;
  const dst = new Locker('dst');
  try {
    run(['mount', '--bind', real, mnt]);
    mounted = true;
    dst.pinLockspace(mnt, lockspaceId(mnt));
    run(['umount', '-l', mnt]);
    mounted = false;
    const ref: ResourceRef = { id: path.join(mnt, 'lease'), name: 'lease', lockspace: mnt, kind: 'file', canonical: path.join(root, 'web1.qcow2') };
    const p = dst.prepare([{ kind: 'await', disks: [{ path: ref.canonical, mode: 'exclusive', resource: ref }], owner: web1, from: 'src' }], { at: AT, source: 'hook' });
    p.commit();
    const disks = (p.facts[0]!.payload as unknown as { disks: Array<{ requested: boolean; why?: string }> }).disks;
    assert.is(disks[0]!.requested, false);
    assert.match(disks[0]!.why ?? '', `lockspace ${mnt} is not the one vmlockd started with`);
    assert.equal(fs.readdirSync(mnt), [], 'created under the bare mount point');
    assert.not.ok(dst.isRequested(ref.id));
  } finally {
    dst.closeAll();
    if (mounted) spawnSync('umount', ['-l', mnt]);
    spawnSync('umount', ['-l', real]);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test.run();
