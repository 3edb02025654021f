// The resolver's shortcuts on the hot path (issue 13) answer as the path module does: a named
// disk's id is path.join(lockspace, name); /proc is refused however it is reached, and a path
// without "proc" in it skips path.resolve.
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkDiskPath, inLockspace } from '../../src/engine/resolve.js';
import { mulberry32 } from '../helpers/prng.js';

test('inLockspace equals path.join for random lockspaces and plain names', () => {
  const rnd = mulberry32(2613);
  const parts = ['a', 'b', '.', '..', '', 'x y', 'é', '😀', 'proc', '...', '.x'];
  const pick = () => parts[Math.floor(rnd() * parts.length)]!;
  for (let i = 0; i < 5000; i++) {
    const ls = '/' + Array.from({ length: Math.floor(rnd() * 5) }, pick).join('/') + (rnd() < 0.3 ? '/' : '');
    let name = Array.from({ length: 1 + Math.floor(rnd() * 3) }, pick).join('');
    if (name === '' || name === '.' || name === '..') name = 'lease';
    assert.is(inLockspace(ls, name), path.join(ls, name), `${ls} + ${name}`);
  }
});

test('/proc is refused by every spelling; other paths pass', () => {
  for (const p of ['/proc', '/proc/', '/proc/1/fd/3', '//proc/self', '/x/../proc/1', '/./proc', '/a/b/../../proc/x']) {
    assert.throws(() => checkDiskPath(p, 'disk'), /under \/proc/, p);
  }
  for (const p of ['/var/lib/libvirt/images/a.qcow2', '/procfs/x', '/x/proc', '/a/proc/b', '/a/../b/c']) assert.is(checkDiskPath(p, 'disk'), p);
});

test.run();
