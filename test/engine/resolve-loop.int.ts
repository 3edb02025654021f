// How resolve finds a loop device's backing file in sysfs (review27 F1): /sys/dev/block/MAJ:MIN of
// the node, and for a partition of a loop device (loopNpM, whose directory sits in its whole
// device's) the whole device's loop/backing_file. Against a sysfs tree made here: this kernel has no
// partition tables, so a real loopNp1 cannot be made (test/daemon/loop-device.int.ts has the real ones).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loopBackingPath } from '../../src/engine/resolve.js';
import { tmpdir } from '../helpers/daemon.js';

/** glibc's makedev. */
function makedev(major: number, minor: number): bigint {
  const M = BigInt(major);
  const m = BigInt(minor);
  return ((M & 0xfffn) << 8n) | ((M & ~0xfffn) << 32n) | (m & 0xffn) | ((m & ~0xffn) << 12n);
}

function sysTree(): string {
  const root = tmpdir('vmlockd-sys-');
  const blk = path.join(root, 'devices', 'virtual', 'block');
  fs.mkdirSync(path.join(blk, 'loop3', 'loop'), { recursive: true });
  fs.writeFileSync(path.join(blk, 'loop3', 'loop', 'backing_file'), '/images/a b.img\n');
  fs.mkdirSync(path.join(blk, 'loop3', 'loop3p1'));
  fs.writeFileSync(path.join(blk, 'loop3', 'loop3p1', 'partition'), '1\n');
  fs.mkdirSync(path.join(blk, 'loop4')); // unbound: no loop/ directory
  fs.mkdirSync(path.join(blk, 'vda', 'vda1'), { recursive: true });
  fs.writeFileSync(path.join(blk, 'vda', 'vda1', 'partition'), '1\n');
  fs.mkdirSync(path.join(root, 'dev', 'block'), { recursive: true });
  const link = (devno: string, to: string) => fs.symlinkSync(path.join('..', '..', 'devices', 'virtual', 'block', to), path.join(root, 'dev', 'block', devno));
  link('7:3', 'loop3');
  link('259:300', 'loop3/loop3p1');
  link('7:4', 'loop4');
  link('254:0', 'vda');
  link('254:1', 'vda/vda1');
  return root;
}

test('a loop device and a partition of it both read the loop device backing file', () => {
  const root = sysTree();
  assert.is(loopBackingPath(makedev(7, 3), root), '/images/a b.img');
  assert.is(loopBackingPath(makedev(259, 300), root), '/images/a b.img');
});

test('an unbound loop device, another disk, a partition of another disk and an unknown device read none', () => {
  const root = sysTree();
  assert.is(loopBackingPath(makedev(7, 4), root), undefined);
  assert.is(loopBackingPath(makedev(254, 0), root), undefined);
  assert.is(loopBackingPath(makedev(254, 1), root), undefined);
  assert.is(loopBackingPath(makedev(8, 0), root), undefined);
});

test.run();
