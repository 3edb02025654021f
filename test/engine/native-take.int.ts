// The locker's one-call take and release (native/ofd.c takeLockFile / writeRecord / releaseLockFile,
// decision 0019) on real files and real OFD locks: each path the call can take (granted, held by
// another open file description, no file, a hard link, a replaced file, a symlink, not a regular
// file), the lease check against the JS one, and the Locker using it by default.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alignedScratch } from '../../src/engine/aligned-io.js';
import { BadInputError } from '../../src/engine/errors.js';
import { decodeExclusive, emptySlot, encodeExclusive, encodeRequest, encodeShared, LEASE_SPAN, RECORD_SIZE, HANDOVER_OFFSET, slotOffset } from '../../src/engine/holder-record.js';
import { Locker, inspectLockFile } from '../../src/engine/locker.js';
import { readLease } from '../../src/engine/locker-files.js';
import { takeNative } from '../../src/engine/locker-native.js';
import { native, TAKE, TAKE_OUT, TAKE_STATUS } from '../../src/engine/native.js';
import type { Intent, Mode, ResourceRef } from '../../src/engine/types.js';
import { UUID1, UUID2, tmpdir } from '../helpers/daemon.js';

const dir = tmpdir('vmlockd-native-take-');
let n = 0;
const { O_RDWR, O_RDONLY, O_CREAT, O_NONBLOCK, O_NOFOLLOW } = fs.constants;
const out = new Int32Array(TAKE_OUT.BLOCKS + LEASE_SPAN / RECORD_SIZE);
const FLAGS = O_RDWR | O_NONBLOCK | O_NOFOLLOW;
const ALL = TAKE.WRITE | TAKE.IDENTITY | TAKE.LEASE;

function fresh(bytes: Buffer = Buffer.alloc(0)): string {
  const f = path.join(dir, `lease-${n++}`);
  fs.writeFileSync(f, bytes);
  return f;
}

function take(file: string, opts = ALL, flags = FLAGS): number {
  return native.takeLockFile(file, flags, opts, out, alignedScratch(), LEASE_SPAN, RECORD_SIZE);
}

function heldFrom(file: string): boolean {
  const fd = fs.openSync(file, O_RDONLY);
  try {
    return native.ofdGetLk(fd, 'write', 0, 1) !== null;
  } finally {
    fs.closeSync(fd);
  }
}

function errOf(f: () => unknown): NodeJS.ErrnoException {
  try {
    f();
  } catch (e) {
    return e as NodeJS.ErrnoException;
  }
  throw new Error('expected a throw');
}

const record = encodeExclusive({ v: 1, mode: 'free', gen: 9, host: 'h2', pid: 1, since: '2026-11-30T10:00:00.000Z', disk: '/d/disk.img', vm: { uuid: UUID2, name: 'vm2' } });

test('granted: the descriptor holds a write lock on byte 0, and the lease is read and checked under it', () => {
  const b = Buffer.alloc(LEASE_SPAN);
  record.copy(b, 0);
  const f = fresh(b);
  assert.is(take(f), TAKE_STATUS.TAKEN);
  const fd = out[TAKE_OUT.FD]!;
  try {
    assert.ok(fd > 2);
    assert.ok(heldFrom(f), 'another description sees the lock');
    assert.is(out[TAKE_OUT.SIZE], LEASE_SPAN);
    assert.is(out[TAKE_OUT.READ], LEASE_SPAN);
    assert.is(out[TAKE_OUT.LEASE], 1);
    assert.is(out[TAKE_OUT.BLOCKS], 1, 'the head block is not blank');
    for (let i = 1; i < LEASE_SPAN / RECORD_SIZE; i++) assert.is(out[TAKE_OUT.BLOCKS + i], 0, `block ${i} is blank`);
    assert.ok((native.getFd(fd) & 1) === 1, 'close-on-exec: a child never inherits a lock description');
  } finally {
    native.releaseLockFile(fd, null, 0, false, true);
  }
  assert.not.ok(heldFrom(f), 'the release unlocked and closed it');
});

test('held by another open file description (even of this process): BUSY, the descriptor left open to name the holder', () => {
  const f = fresh();
  const other = fs.openSync(f, O_RDWR);
  try {
    assert.ok(native.ofdSetLk(other, 'read', 0, 1));
    assert.is(take(f), TAKE_STATUS.BUSY);
    const fd = out[TAKE_OUT.FD]!;
    assert.ok(fd > 2);
    const c = native.ofdGetLk(fd, 'write', 0, 1);
    assert.is(c?.type, 'read');
    fs.closeSync(fd);
    // A read take beside a read lock is granted.
    assert.is(take(f, TAKE.IDENTITY | TAKE.LEASE), TAKE_STATUS.TAKEN);
    native.releaseLockFile(out[TAKE_OUT.FD]!, null, 0, false, true);
  } finally {
    fs.closeSync(other);
  }
});

test('no file: NOENT without O_CREAT (nothing created); with O_CREAT the file is created 0600 and locked', () => {
  const f = path.join(dir, `absent-${n++}`);
  assert.is(take(f), TAKE_STATUS.NOENT);
  assert.not.ok(fs.existsSync(f));
  assert.is(take(f, ALL, FLAGS | O_CREAT), TAKE_STATUS.TAKEN);
  assert.is(fs.statSync(f).mode & 0o777, 0o600);
  assert.is(out[TAKE_OUT.SIZE], 0);
  native.releaseLockFile(out[TAKE_OUT.FD]!, null, 0, false, true);
  // Through takeNative: ENOENT as Node's fs throws it, unless asked to answer 'missing'.
  const g = path.join(dir, `absent-${n++}`);
  const e = errOf(() => takeNative(native, g, O_RDWR, { write: true, blockDevice: false, identity: true, lease: true }));
  assert.is(e.code, 'ENOENT');
  assert.equal(takeNative(native, g, O_RDWR, { write: true, blockDevice: false, identity: true, lease: true, missingOk: true }), { status: 'missing' });
});

test('errno names in errors: ENOTDIR (named by glibc), ELOOP for a symlink, with the syscall and path', () => {
  const f = fresh();
  const e = errOf(() => take(path.join(f, 'x')));
  assert.is(e.code, 'ENOTDIR');
  assert.is(e.syscall, 'open');
  assert.is(e.errno, -20);
  assert.match(e.message, /^ENOTDIR: .*, open '.*\/x'$/);
});

// review23a: the path was copied into a 4,097-byte buffer, which cuts a longer string at a character
// boundary: a path just over PATH_MAX ending in a multi-byte character named the cut path, an
// existing file that was then opened and locked. A path of PATH_MAX bytes or more is ENAMETOOLONG.
test('a path of PATH_MAX bytes or more is ENAMETOOLONG, never cut to a shorter path that names another file', () => {
  // An existing file whose path is 4,094 bytes long: nested 200-byte directory names.
  let d = dir;
  while (d.length + 1 + 200 + 1 + 200 < 4094) {
    d = path.join(d, 'd'.repeat(200));
    fs.mkdirSync(d, { recursive: true });
  }
  const name = 'f'.repeat(4094 - d.length - 1);
  const cut = path.join(d, name);
  assert.is(Buffer.byteLength(cut), 4094);
  fs.writeFileSync(cut, '');
  for (const tail of ['\u20ac', 'xx', 'x\u20ac']) {
    const long = cut + tail;
    const e = errOf(() => take(long, ALL, FLAGS | O_CREAT));
    assert.is(e.code, 'ENAMETOOLONG', `${Buffer.byteLength(long)} bytes: ${e.message}`);
    assert.not.ok(heldFrom(cut), 'the cut path was locked');
  }
  // Just under the limit it works.
  assert.is(take(cut), TAKE_STATUS.TAKEN);
  native.releaseLockFile(out[TAKE_OUT.FD]!, null, 0, false, true);
});

test("a symlink under a lock file's name is never followed (O_NOFOLLOW): ELOOP, the BadInputError, nothing locked at its target", () => {
  const target = fresh();
  const link = path.join(dir, `link-${n++}`);
  fs.symlinkSync(target, link);
  const e = errOf(() => take(link));
  assert.is(e.code, 'ELOOP');
  const bad = errOf(() => takeNative(native, link, O_RDWR, { write: true, blockDevice: false, identity: true, lease: true }));
  assert.ok(bad instanceof BadInputError);
  assert.match(bad.message, 'is a symbolic link');
  assert.not.ok(heldFrom(target));
  // Through the locker: refused as bad input, and the target stays free.
  const locker = new Locker('h1');
  const ref: ResourceRef = { id: link, name: path.basename(link), lockspace: dir, kind: 'file', canonical: '/d/x.img' };
  assert.throws(() => locker.prepare([lockIntent(ref, 'exclusive')], ctx()), (x: Error) => x instanceof BadInputError && /symbolic link/.test(x.message));
  assert.not.ok(heldFrom(target));
  // A check (probe) answers as the take would: the same refusal, not "free" from the link's target
  // (review23a: probe opened the name without O_NOFOLLOW).
  const probe = { kind: 'probe', disk: { path: ref.canonical, mode: 'exclusive', resource: ref }, owner: { uuid: UUID1 } } as const;
  assert.throws(() => locker.prepare([probe], ctx()), (x: Error) => x instanceof BadInputError && /symbolic link/.test(x.message));
  const fifo = path.join(dir, `fifo-${n++}`);
  execFileSync('mkfifo', [fifo]);
  const fifoRef: ResourceRef = { ...ref, id: fifo, name: path.basename(fifo) };
  assert.throws(() => locker.prepare([{ ...probe, disk: { ...probe.disk, resource: fifoRef } }], ctx()), (x: Error) => x instanceof BadInputError && /FIFO|fifo|pipe/.test(x.message));
  // A disk locked in place keeps its own name, which may be a symlink (/dev/vg/lv): followed.
  assert.is(take(link, TAKE.WRITE | TAKE.BLOCKDEV, O_RDWR | O_NONBLOCK), TAKE_STATUS.TAKEN);
  assert.ok(heldFrom(target));
  native.releaseLockFile(out[TAKE_OUT.FD]!, null, 0, false, true);
});

test('not a regular file: a FIFO is refused (descriptor closed) with its kind, never waited on', () => {
  const fifo = path.join(dir, `fifo-${n++}`);
  const r = spawn('mkfifo', [fifo]);
  return new Promise<void>((resolve, reject) => {
    r.on('exit', () => {
      try {
        assert.is(take(fifo, TAKE.IDENTITY | TAKE.LEASE, O_RDONLY | O_NONBLOCK | O_NOFOLLOW), TAKE_STATUS.NOT_REGULAR);
        assert.is(out[TAKE_OUT.TYPE], fs.constants.S_IFIFO);
        const e = errOf(() => takeNative(native, fifo, O_RDONLY, { write: false, blockDevice: true, identity: false, lease: false }));
        assert.ok(e instanceof BadInputError);
        assert.is(e.message, `${fifo} is a FIFO: only a regular file or a block device can be locked`);
        resolve();
      } catch (e) {
        reject(e);
      }
    });
  });
});

test('a hard link: one inode under two names, one lock (the identity check passes: the path names the inode locked)', () => {
  const a = fresh();
  const b = path.join(dir, `hard-${n++}`);
  fs.linkSync(a, b);
  assert.is(fs.statSync(a).nlink, 2);
  assert.is(take(a), TAKE_STATUS.TAKEN);
  const fdA = out[TAKE_OUT.FD]!;
  try {
    assert.is(take(b), TAKE_STATUS.BUSY, 'the lock is the inode\'s, whichever name took it');
    fs.closeSync(out[TAKE_OUT.FD]!);
  } finally {
    native.releaseLockFile(fdA, null, 0, false, true);
  }
  assert.is(take(b), TAKE_STATUS.TAKEN, 'the second name takes it once it is free (not REPLACED)');
  native.releaseLockFile(out[TAKE_OUT.FD]!, null, 0, false, true);
});

test('a replaced file (renamed over the path in a loop by another process): REPLACED is seen, the descriptor is closed, and never a lock on a file the path does not name', async () => {
  const f = fresh();
  // Another process puts a new file at the path as fast as it can (virtlockd's unlink + re-create).
  const script = `const fs=require('fs');const f=${JSON.stringify(f)};let i=0;const end=Date.now()+20000;while(Date.now()<end){const t=f+'.t'+(i++%2);fs.writeFileSync(t,'');fs.renameSync(t,f);}`;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
  try {
    let replaced = 0;
    let taken = 0;
    const until = Date.now() + 15_000;
    while (replaced === 0 && Date.now() < until) {
      for (let i = 0; i < 200; i++) {
        const s = take(f, ALL);
        if (s === TAKE_STATUS.REPLACED) {
          replaced++;
          assert.is(out[TAKE_OUT.FD], -1, 'REPLACED closed its descriptor');
        } else if (s === TAKE_STATUS.TAKEN) {
          taken++;
          native.releaseLockFile(out[TAKE_OUT.FD]!, null, 0, false, true);
        } else if (s === TAKE_STATUS.BUSY) {
          fs.closeSync(out[TAKE_OUT.FD]!);
        }
      }
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(replaced > 0, `no take saw the file replaced between its open and its check (${taken} taken)`);
  } finally {
    child.kill('SIGKILL');
  }
  // No descriptor leaked: the lease file is not held by anyone.
  assert.not.ok(heldFrom(f));
});

test('the lease check: the native blank check and leaseOf say exactly what readLease says, for every kind of lease file', () => {
  const cases: Array<[string, Buffer]> = [];
  const span = (fill = 0) => Buffer.alloc(LEASE_SPAN, fill);
  cases.push(['empty', Buffer.alloc(0)]);
  cases.push(['zeros', span()]);
  const a = span();
  record.copy(a, 0);
  cases.push(['head record', a]);
  const b = span(0x20);
  record.copy(b, 0);
  cases.push(['spaces and a head', b]);
  const c = span();
  encodeShared({ v: 1, mode: 'shared', host: 'h3', pid: 1, since: '2026-11-30T10:00:00.000Z', disk: '/d/s.img', vms: [{ uuid: UUID1, since: '2026-11-30T10:00:00.000Z' }] }).copy(c, slotOffset(3));
  encodeRequest({ v: 1, mode: 'handover', host: 'h4', pid: 1, since: '2026-11-30T10:00:00.000Z', vm: { uuid: UUID2 } }).copy(c, HANDOVER_OFFSET);
  cases.push(['a shared slot and a request', c]);
  const d = span();
  d[slotOffset(5) + 100] = 0x41;
  cases.push(['a stray byte in a slot', d]);
  const e = span();
  e[7] = 0x01;
  cases.push(['a stray byte in the head', e]);
  cases.push(['a qcow2-sized file', Buffer.alloc(LEASE_SPAN + RECORD_SIZE)]);
  cases.push(['not whole records', Buffer.alloc(RECORD_SIZE + 3)]);
  const g = Buffer.alloc(RECORD_SIZE * 2);
  emptySlot().copy(g, RECORD_SIZE);
  record.copy(g, 0);
  cases.push(['a short lease', g]);
  for (const [what, bytes] of cases) {
    const f = fresh(bytes);
    const jsFd = fs.openSync(f, O_RDONLY);
    const js = readLease(jsFd);
    fs.closeSync(jsFd);
    const t = takeNative(native, f, O_RDWR, { write: true, blockDevice: false, identity: true, lease: true });
    assert.is(t.status, 'taken', what);
    if (t.status !== 'taken') continue;
    assert.equal(t.lease, js, what);
    native.releaseLockFile(t.fd, null, 0, false, true);
  }
});

test('writeRecord writes at the offset, grows the file, and syncs; releaseLockFile writes the free record, unlocks and closes', () => {
  const f = fresh();
  assert.is(take(f), TAKE_STATUS.TAKEN);
  const fd = out[TAKE_OUT.FD]!;
  const held = encodeExclusive({ v: 1, mode: 'exclusive', gen: 3, host: 'h1', pid: process.pid, since: '2026-11-30T10:00:00.000Z', disk: '/d/w.img', vm: { uuid: UUID1 } });
  assert.is(native.writeRecord(fd, held, 0, LEASE_SPAN, true), RECORD_SIZE);
  assert.is(fs.statSync(f).size, LEASE_SPAN);
  assert.is(inspectLockFile(f).state, 'exclusive');
  assert.is(inspectLockFile(f).holders[0]?.host, 'h1');
  const free = encodeExclusive({ v: 1, mode: 'free', gen: 3, host: 'h1', pid: process.pid, since: '2026-11-30T10:00:00.000Z', disk: '/d/w.img' });
  assert.is(native.releaseLockFile(fd, free, 0, true, true), 0, 'nothing failed');
  assert.throws(() => fs.fstatSync(fd), /EBADF/);
  const seen = inspectLockFile(f);
  assert.is(seen.state, 'free');
  assert.is(seen.generation, 3);
  assert.is(decodeExclusive(fs.readFileSync(f).subarray(0, RECORD_SIZE))?.mode, 'free');
  // Without close: unlocked, the descriptor still open (the store hears of it before the close).
  assert.is(take(f), TAKE_STATUS.TAKEN);
  const fd2 = out[TAKE_OUT.FD]!;
  assert.is(native.releaseLockFile(fd2, null, 0, false, false), 0);
  assert.not.ok(heldFrom(f));
  fs.fstatSync(fd2);
  fs.closeSync(fd2);
  // A broken descriptor: reported, never thrown.
  assert.is(native.releaseLockFile(fd2, null, 0, false, true), 4 | 8);
});

function lockIntent(ref: ResourceRef, mode: Mode, uuid = UUID1): Intent {
  return { kind: 'lock', how: 'take', disk: { path: ref.canonical, mode, resource: ref }, owner: { uuid, name: 'vm' } };
}

function ctx() {
  return { at: new Date().toISOString(), source: 'api' };
}

function leaseRef(): ResourceRef {
  const id = path.join(dir, `res-${n++}`);
  return { id, name: path.basename(id), lockspace: dir, kind: 'file', canonical: `/d/${path.basename(id)}.img` };
}

test('the Locker takes and releases through the one-call path by default, and not through ofdSetLk for byte 0', () => {
  let byteZero = 0;
  let oneCall = 0;
  const watched = new Proxy({} as typeof native, {
    get: (_t, k) => {
      if (k === 'ofdSetLk') return (fd: number, type: 'read' | 'write' | 'unlock', start: number, len: number) => ((start === 0 && type !== 'unlock' ? byteZero++ : 0), native.ofdSetLk(fd, type, start, len));
      if (k === 'takeLockFile') return (...a: Parameters<typeof native.takeLockFile>) => (oneCall++, native.takeLockFile(...a));
      const v = Reflect.get(native, k) as unknown;
      return typeof v === 'function' ? v.bind(native) : v;
    },
  });
  assert.ok((new Locker('h1') as unknown as { oneCall: boolean }).oneCall, 'the default Locker uses the one-call path');
  const locker = new Locker('h1', { native: watched, oneCall: true });
  const ref = leaseRef();
  const p = locker.prepare([lockIntent(ref, 'exclusive')], ctx());
  assert.is(p.outcome.status, 'ok');
  p.commit();
  assert.is(oneCall, 1);
  assert.is(byteZero, 0);
  assert.ok(heldFrom(ref.id));
  assert.is(inspectLockFile(ref.id).holders[0]?.owner?.uuid, UUID1);
  assert.is(fs.statSync(ref.id).size, LEASE_SPAN);
  // A second locker (another description) is refused and told who holds it.
  const other = new Locker('h2');
  const q = other.prepare([lockIntent(ref, 'exclusive', UUID2)], ctx());
  assert.is(q.outcome.status, 'refused');
  if (q.outcome.status === 'refused') assert.is(q.outcome.refusals[0]?.holder.host, 'h1');
  // Release: the free record written, the lock gone.
  const r = locker.prepare([{ kind: 'unlock', how: 'drop', resource: ref, path: ref.canonical, owner: { uuid: UUID1, name: 'vm' } }], ctx());
  r.commit();
  assert.not.ok(heldFrom(ref.id));
  const seen = inspectLockFile(ref.id);
  assert.is(seen.state, 'free');
  assert.is(seen.generation, 1);
  // The next take bumps the generation from the record the one call read.
  const s = other.prepare([lockIntent(ref, 'exclusive', UUID2)], ctx());
  assert.is(s.outcome.status, 'ok');
  s.commit();
  assert.is(inspectLockFile(ref.id).generation, 2);
  other.closeAll();
});

test('shared takes through the one-call path claim distinct slots; the release blanks the slot', () => {
  const ref = leaseRef();
  const a = new Locker('ha');
  const b = new Locker('hb');
  a.prepare([lockIntent(ref, 'shared')], ctx()).commit();
  b.prepare([lockIntent(ref, 'shared', UUID2)], ctx()).commit();
  const seen = inspectLockFile(ref.id);
  assert.is(seen.state, 'shared');
  assert.equal(seen.holders.map((h) => h.host).sort(), ['ha', 'hb']);
  a.prepare([{ kind: 'unlock', how: 'drop', resource: ref, path: ref.canonical, owner: { uuid: UUID1, name: 'vm' } }], ctx()).commit();
  assert.equal(inspectLockFile(ref.id).holders.map((h) => h.host), ['hb']);
  b.closeAll();
});

test('a re-take through the one-call path locks the new description before the old one is closed', () => {
  const ref = leaseRef();
  const heldAtAsk: boolean[] = [];
  let watching = false;
  const watched = new Proxy({} as typeof native, {
    get: (_t, k) => {
      if (k === 'takeLockFile')
        return (...a: Parameters<typeof native.takeLockFile>) => {
          if (watching) heldAtAsk.push(heldFrom(ref.id));
          return native.takeLockFile(...a);
        };
      const v = Reflect.get(native, k) as unknown;
      return typeof v === 'function' ? v.bind(native) : v;
    },
  });
  const locker = new Locker('h1', { native: watched, oneCall: true });
  locker.prepare([lockIntent(ref, 'exclusive')], ctx()).commit();
  watching = true;
  const r = locker.retake(ref, 'exclusive', [{ uuid: UUID1, name: 'vm', since: new Date().toISOString() }], new Date().toISOString());
  assert.ok(r.ok);
  assert.ok(heldAtAsk.length > 0);
  assert.ok(heldAtAsk.every(Boolean), JSON.stringify(heldAtAsk));
  assert.ok(heldFrom(ref.id));
  assert.equal(locker.verify(), []);
  locker.closeAll();
});

test('a lock file that is not a lease (a disk image under a lockspace name) is locked but never written', () => {
  const image = Buffer.alloc(LEASE_SPAN + RECORD_SIZE, 0x51);
  const ref = leaseRef();
  fs.writeFileSync(ref.id, image);
  const locker = new Locker('h1');
  const p = locker.prepare([lockIntent(ref, 'exclusive')], ctx());
  assert.is(p.outcome.status, 'ok');
  p.commit();
  assert.ok(heldFrom(ref.id));
  locker.prepare([{ kind: 'unlock', how: 'drop', resource: ref, path: ref.canonical, owner: { uuid: UUID1, name: 'vm' } }], ctx()).commit();
  assert.ok(fs.readFileSync(ref.id).equals(image), 'not one byte written');
});

// decision 0020: the take journals the lock file's inode (the start's gap check compares it).
test('granted: the inode number comes back (TAKE_OUT INO_LO/HI), as fstat gives it, through takeNative and the JS path alike', () => {
  const f = fresh();
  assert.is(take(f), TAKE_STATUS.TAKEN);
  const fd = out[TAKE_OUT.FD]!;
  try {
    const ino = fs.statSync(f, { bigint: true }).ino;
    assert.is(BigInt(out[TAKE_OUT.INO_LO]! >>> 0) | (BigInt(out[TAKE_OUT.INO_HI]! >>> 0) << 32n), ino);
  } finally {
    fs.closeSync(fd);
  }
  const t = takeNative(native, f, FLAGS, { write: true, blockDevice: false, identity: true, lease: true });
  assert.is(t.status, 'taken');
  if (t.status === 'taken') {
    assert.is(t.ino, String(fs.statSync(f, { bigint: true }).ino));
    fs.closeSync(t.fd);
  }
  // What a Locker journals: the one-call path and the fs-call path (an injected binding) agree.
  for (const oneCall of [true, false]) {
    const g = fresh();
    const locker = new Locker('hv-a', { native: Object.create(native) as typeof native, oneCall });
    const ref: ResourceRef = { id: g, name: path.basename(g), lockspace: dir, kind: 'file', canonical: '/d/ino.img' };
    const p = locker.prepare([{ kind: 'lock', how: 'take', disk: { path: ref.canonical, mode: 'shared', resource: ref }, owner: { uuid: UUID1 } }], { at: '2026-11-30T19:00:00.000Z', source: 'test' });
    p.commit();
    const acquired = p.facts.find((x) => x.kind === 'LockAcquired');
    assert.equal(acquired && 'lockIno' in acquired.payload ? [acquired.payload.lockIno, acquired.payload.headGeneration] : null, [String(fs.statSync(g, { bigint: true }).ino), 0], `oneCall ${oneCall}`);
    locker.closeAll();
  }
});

test.run();
