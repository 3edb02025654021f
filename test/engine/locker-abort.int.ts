// Every way a take is given back without a grant, on real lock files and real OFD locks (review26d
// F4): a command refused at a later disk, a command whose facts could not be journaled (abort()), an
// I/O error half-way, a record write that failed after the bytes were written. None may leave a record
// naming this host as the holder: the next start's found scan (locker-found.ts) takes such a record
// (this host, exclusive, a generation the journal never gave) as a grant the journal forgot, and
// locks a disk this host never held. The file says again what it said before the take.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RECORD_SIZE, SLOT_COUNT, decodeExclusive, decodeShared, encodeExclusive, slotOffset, LEASE_SPAN } from '../../src/engine/holder-record.js';
import { Locker } from '../../src/engine/locker.js';
import { findForgotten } from '../../src/engine/locker-found.js';
import { native, type NativeBinding } from '../../src/engine/native.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { initialState } from '../../src/engine/state.js';
import type { Intent, Mode, Owner, ResolvedDisk } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';
import { lockedByAnyone } from '../helpers/kernel-locks.js';

const web1: Owner = { uuid: 'c1111111-1111-4111-8111-111111111111', name: 'web1' };
const other: Owner = { uuid: 'c2222222-2222-4222-8222-222222222222', name: 'other' };
const AT = new Date().toISOString();

function setup() {
  const dir = tmpdir('vmlockd-locker-abort-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'img'));
  const disk = (name: string, mode: Mode = 'exclusive'): ResolvedDisk => {
    const p = path.join(dir, 'img', name);
    if (!fs.existsSync(p)) fs.writeFileSync(p, 'x');
    return resolveDisk({ path: p, mode }, { fileLockspaceDir: lockspace }, initialState());
  };
  const lockers: Locker[] = [];
  const locker = (host: string, opts: ConstructorParameters<typeof Locker>[1] = {}) => {
    const l = new Locker(host, { fileLockspaceDir: lockspace, ...opts });
    lockers.push(l);
    return l;
  };
  const prepare = (l: Locker, disks: ResolvedDisk[], owner: Owner) => l.prepare(disks.map((d): Intent => ({ kind: 'lock', how: 'take', disk: d, owner })), { at: AT, source: 'test' });
  const head = (d: ResolvedDisk) => decodeExclusive(fs.readFileSync(d.resource.id).subarray(0, RECORD_SIZE));
  const slots = (d: ResolvedDisk) => {
    const buf = fs.readFileSync(d.resource.id);
    const out = [];
    for (let i = 0; i < SLOT_COUNT; i++) {
      const r = decodeShared(buf.subarray(slotOffset(i), slotOffset(i) + RECORD_SIZE));
      if (r) out.push(r);
    }
    return out;
  };
  const found = (host: string) => findForgotten([{ dir: lockspace, kind: 'file' }], host, () => false, () => 0, new Date().toISOString()).facts;
  const done = () => {
    for (const l of lockers) l.closeAll();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { dir, lockspace, disk, locker, prepare, head, slots, found, done };
}

test('a command refused at a later disk gives the first back with the file as it was: a new file (no record) and a released one (its free record)', () => {
  const s = setup();
  try {
    const a = s.locker('host-a');
    const b = s.locker('host-b');
    const fresh = s.disk('fresh');
    const used = s.disk('used');
    const busy = s.disk('busy');
    // `used` was held and released by host b: its free record, generation 1.
    const u = s.prepare(b, [used], other);
    u.commit();
    b.prepare([{ kind: 'unlock', resource: used.resource, path: used.path, owner: other, how: 'drop' }], { at: AT, source: 'test' }).commit();
    const before = fs.readFileSync(used.resource.id).subarray(0, RECORD_SIZE);
    s.prepare(b, [busy], other).commit();
    const p = s.prepare(a, [fresh, used, busy], web1);
    assert.is(p.outcome.status, 'refused');
    assert.not.ok(lockedByAnyone(fresh.resource.id));
    assert.not.ok(lockedByAnyone(used.resource.id));
    assert.is(s.head(fresh), undefined, `the new lock file names a holder: ${JSON.stringify(s.head(fresh))}`);
    assert.equal(s.head(used), decodeExclusive(before));
    assert.equal(s.found('host-a'), []);
    // The next grant's generation is the next after the released one's.
    const again = s.prepare(a, [used], web1);
    assert.is((again.facts[0]!.payload as { generation: number }).generation, 2);
    again.commit();
  } finally {
    s.done();
  }
});

test('a command whose facts could not be journaled (abort) puts the record back', () => {
  const s = setup();
  try {
    const a = s.locker('host-a');
    const d1 = s.disk('d1');
    const p = s.prepare(a, [d1], web1);
    assert.is(p.outcome.status, 'ok');
    assert.is(s.head(d1)?.mode, 'exclusive');
    p.abort();
    assert.not.ok(lockedByAnyone(d1.resource.id));
    assert.is(s.head(d1), undefined);
    assert.equal(s.found('host-a'), []);
  } finally {
    s.done();
  }
});

test('an I/O error at a later disk (its lock file is a directory) gives the first back with the file as it was', () => {
  const s = setup();
  try {
    const a = s.locker('host-a');
    const d1 = s.disk('d1');
    const bad = s.disk('bad');
    fs.mkdirSync(bad.resource.id, { recursive: true });
    assert.throws(() => s.prepare(a, [d1, bad], web1), /directory/);
    assert.not.ok(lockedByAnyone(d1.resource.id));
    assert.is(s.head(d1), undefined);
    assert.equal(s.found('host-a'), []);
  } finally {
    s.done();
  }
});

test('a record write that fails after its bytes are written (the sync) puts the record back before the description closes', () => {
  const s = setup();
  try {
    // The real binding, but the record write reports EIO once it has written (as a failed fdatasync would).
    // The binding's functions are not own enumerable properties: a prototype, not a spread.
    const failing: NativeBinding = Object.create(native, {
      writeRecord: { value: (fd: number, data: Buffer, offset: number, growTo: number, sync: boolean) => {
        const n = native.writeRecord(fd, data, offset, growTo, sync);
        if (decodeExclusive(data)?.mode === 'exclusive') throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', syscall: 'fdatasync' });
        return n;
      } },
    });
    const a = s.locker('host-a', { native: failing, oneCall: true });
    const d1 = s.disk('d1');
    // A record of host b from before (released): it must come back.
    fs.mkdirSync(s.lockspace, { recursive: true });
    const prior = encodeExclusive({ v: 1, mode: 'free', gen: 4, host: 'host-b', pid: 1, since: AT, disk: d1.resource.canonical, vm: other });
    const file = Buffer.alloc(LEASE_SPAN, 0);
    prior.copy(file, 0);
    fs.writeFileSync(d1.resource.id, file);
    assert.throws(() => s.prepare(a, [d1], web1), /EIO/);
    assert.not.ok(lockedByAnyone(d1.resource.id));
    assert.equal(s.head(d1), decodeExclusive(prior));
    assert.equal(s.found('host-a'), []);
  } finally {
    s.done();
  }
});

test('a shared take given back blanks its slot', () => {
  const s = setup();
  try {
    const a = s.locker('host-a');
    const b = s.locker('host-b');
    const d1 = s.disk('d1', 'shared');
    const busy = s.disk('busy');
    s.prepare(b, [busy], other).commit();
    const p = s.prepare(a, [d1, busy], web1);
    assert.is(p.outcome.status, 'refused');
    assert.not.ok(lockedByAnyone(d1.resource.id));
    assert.equal(s.slots(d1), [], 'a shared slot names a holder that does not hold it');
    const q = s.prepare(a, [d1], web1);
    assert.is(q.outcome.status, 'ok');
    assert.is(s.slots(d1).length, 1);
    q.abort();
    assert.equal(s.slots(d1), []);
  } finally {
    s.done();
  }
});

test('a disk locked in place (direct) given back: the image is not written', () => {
  const s = setup();
  try {
    const a = s.locker('host-a');
    const b = s.locker('host-b');
    const img = path.join(s.dir, 'img', 'direct.img');
    fs.writeFileSync(img, 'QFI\xfb image bytes', 'latin1');
    const d1 = resolveDisk({ path: img, mode: 'exclusive' }, { fileLockspaceDir: null }, initialState());
    assert.is(d1.resource.kind, 'direct');
    const busy = s.disk('busy');
    s.prepare(b, [busy], other).commit();
    const p = s.prepare(a, [d1, busy], web1);
    assert.is(p.outcome.status, 'refused');
    assert.not.ok(lockedByAnyone(img));
    assert.is(fs.readFileSync(img, 'latin1'), 'QFI\xfb image bytes');
  } finally {
    s.done();
  }
});

test("a migration destination's take given back keeps the reservation the source's release wrote for it", () => {
  const s = setup();
  try {
    const src = s.locker('src');
    const dst = s.locker('dst');
    const third = s.locker('h3');
    const d1 = s.disk('d1');
    const busy = s.disk('busy');
    src.prepare([{ kind: 'lock', how: 'take', disk: d1, owner: web1 }], { at: AT, source: 'test' }).commit();
    dst.prepare([{ kind: 'await', disks: [d1], owner: web1, from: 'src' }], { at: AT, source: 'hook' }).commit();
    src.prepare([{ kind: 'unlock', resource: d1.resource, path: d1.path, owner: web1, how: 'drop' }], { at: AT, source: 'test' }).commit();
    assert.is(s.head(d1)?.reserved?.host, 'dst');
    third.prepare([{ kind: 'lock', how: 'take', disk: busy, owner: other }], { at: AT, source: 'test' }).commit();
    const p = s.prepare(dst, [d1, busy], web1);
    assert.is(p.outcome.status, 'refused');
    assert.is(s.head(d1)?.reserved?.host, 'dst', `the reservation is gone: ${JSON.stringify(s.head(d1))}`);
    const t = s.prepare(third, [d1], other);
    assert.is(t.outcome.status, 'refused', 'a third host took a disk reserved for the waiting destination');
    assert.equal(s.found('dst'), []);
  } finally {
    s.done();
  }
});

test("a second VM's join of a disk this host holds shared, in a command refused at a later disk, is taken back from the slot's record", () => {
  const s = setup();
  try {
    const a = s.locker('host-a');
    const b = s.locker('host-b');
    const d1 = s.disk('d1', 'shared');
    const busy = s.disk('busy');
    s.prepare(a, [d1], web1).commit();
    s.prepare(b, [busy], other).commit();
    const p = a.prepare(
      [
        { kind: 'lock', how: 'join', disk: d1, owner: other },
        { kind: 'lock', how: 'take', disk: busy, owner: other },
      ],
      { at: AT, source: 'test' },
    );
    assert.is(p.outcome.status, 'refused');
    assert.equal(s.slots(d1).flatMap((r) => r.vms.map((v) => v.uuid)), [web1.uuid], 'the record names a VM that was refused');
    const q = a.prepare([{ kind: 'lock', how: 'join', disk: d1, owner: other }], { at: AT, source: 'test' });
    assert.is(q.outcome.status, 'ok');
    q.abort();
    assert.equal(s.slots(d1).flatMap((r) => r.vms.map((v) => v.uuid)), [web1.uuid], 'the record names a VM whose join was not journaled');
  } finally {
    s.done();
  }
});

test.run();
