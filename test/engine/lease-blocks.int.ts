// readLease / mayWriteRecords on real files: which lock files the locker may write holder records
// into. The all-zero fast path (one memcmp per unused block) must say exactly what the byte loop said.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readAligned } from '../../src/engine/aligned-io.js';
import { decodeExclusive, encodeExclusive, LEASE_SPAN, RECORD_SIZE } from '../../src/engine/holder-record.js';
import { mayWriteRecords, readLease } from '../../src/engine/locker-files.js';
import { tmpdir } from '../helpers/daemon.js';

const dir = tmpdir('vmlockd-lease-blocks-');
let n = 0;

function file(bytes: Buffer): number {
  const f = path.join(dir, `lease-${n++}`);
  fs.writeFileSync(f, bytes);
  return fs.openSync(f, 'r+');
}

const record = encodeExclusive({ v: 1, mode: 'exclusive', gen: 7, host: 'h1', pid: 1, since: '2026-11-30T10:00:00.000Z', disk: '/d/disk.img', vm: { uuid: '11111111-1111-4111-8111-111111111111', name: 'vm1' } });

test('an empty file may carry records; readLease gives size 0 and no head record', () => {
  const fd = file(Buffer.alloc(0));
  assert.equal(readLease(fd), { size: 0, head: undefined });
  assert.ok(mayWriteRecords(fd));
});

test('a lease span of a record and zero blocks may carry records; readLease gives its size and the decoded head record', () => {
  const b = Buffer.alloc(LEASE_SPAN);
  record.copy(b, 0);
  const fd = file(b);
  const got = readLease(fd);
  assert.ok(got !== null);
  assert.is(got.size, LEASE_SPAN);
  assert.equal(got.head, decodeExclusive(record));
  assert.is(got.head?.gen, 7);
});

test('the head record readLease gives is its own: later aligned I/O (the scratch area it read through) does not change it', () => {
  const b = Buffer.alloc(LEASE_SPAN);
  record.copy(b, 0);
  const got = readLease(file(b));
  const other = Buffer.alloc(LEASE_SPAN, 0x41);
  fs.writeFileSync(path.join(dir, 'other'), other);
  const fd2 = fs.openSync(path.join(dir, 'other'), 'r');
  readAligned(fd2, LEASE_SPAN, 0);
  fs.closeSync(fd2);
  assert.is(got?.head?.gen, 7);
  assert.is(got?.head?.host, 'h1');
});

test('a blank head block (a freshly truncated lease) is no record, and the lease may carry records', () => {
  const got = readLease(file(Buffer.alloc(LEASE_SPAN)));
  assert.equal(got, { size: LEASE_SPAN, head: undefined });
});

test('blocks of spaces and newlines count as blank (the byte loop, not only the all-zero compare)', () => {
  const b = Buffer.alloc(LEASE_SPAN, 0x20);
  record.copy(b, 0);
  b[RECORD_SIZE * 3 + 17] = 0x0a;
  assert.ok(mayWriteRecords(file(b)));
});

test('one foreign byte in an otherwise zero block, or a foreign size, refuses records', () => {
  const b = Buffer.alloc(LEASE_SPAN);
  record.copy(b, 0);
  b[RECORD_SIZE * 5 + 511] = 0x51; // 'Q' at the very end of a slot block
  assert.is(readLease(file(b)), null);
  assert.is(readLease(file(Buffer.alloc(RECORD_SIZE + 1))), null);
  const img = Buffer.alloc(RECORD_SIZE * 4);
  img.write('QFI\xfb', 0, 'latin1');
  assert.not.ok(mayWriteRecords(file(img)));
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
