// readLease / mayWriteRecords on real files: which lock files the locker may write holder records
// into. The all-zero fast path (one memcmp per unused block) must say exactly what the byte loop said.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeExclusive, LEASE_SPAN, RECORD_SIZE } from '../../src/engine/holder-record.js';
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

test('an empty file may carry records; readLease gives no bytes', () => {
  const fd = file(Buffer.alloc(0));
  assert.is(readLease(fd)?.length, 0);
  assert.ok(mayWriteRecords(fd));
});

test('a lease span of a record and zero blocks may carry records; readLease gives the whole span', () => {
  const b = Buffer.alloc(LEASE_SPAN);
  record.copy(b, 0);
  const fd = file(b);
  const got = readLease(fd);
  assert.ok(got !== null);
  assert.is(got.length, LEASE_SPAN);
  assert.ok(got.subarray(0, RECORD_SIZE).equals(record));
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
