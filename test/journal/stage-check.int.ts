// The staging file's check before each append (stage-replace.ts) answers the same through the native
// stageCheck (fstat + stat, no JS object) as through fs (a binding built before it): the file in
// place, removed, renamed away, replaced, cut short; and a failing stat throws as fs does.
import { closeSync, mkdtempSync, openSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/engine/native.js';
import { stageDisplaced, stageDisplacedFs } from '../../src/journal/stage-replace.js';

test('native stageCheck is built and agrees with fs in every case', () => {
  assert.type(native.stageCheck, 'function', 'native/ofd.c stageCheck (npm rebuild)');
  const check = native.stageCheck!.bind(native);
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlockd-stage-check-'));
  try {
    const file = path.join(dir, 'journal.db-stage');
    const both = (fd: number, written: number) => {
      const a = stageDisplaced(fd, file, written, check);
      assert.is(a, stageDisplacedFs(fd, file, written));
      return a;
    };
    let fd = openSync(file, 'w+');
    writeSync(fd, 'x'.repeat(100));
    assert.is(both(fd, 100), null);
    assert.is(both(fd, 0), null);
    assert.is(both(fd, 101), 'truncated to 100 bytes (101 had been staged)');
    truncateSync(file, 10);
    assert.is(both(fd, 100), 'truncated to 10 bytes (100 had been staged)');
    renameSync(file, `${file}.away`);
    assert.is(both(fd, 10), 'removed (renamed away)');
    writeFileSync(file, 'another');
    assert.is(both(fd, 10), 'replaced by another file');
    unlinkSync(`${file}.away`);
    assert.is(both(fd, 10), 'removed');
    closeSync(fd);
    fd = openSync(file, 'r+');
    assert.is(both(fd, 7), null);
    // a path that cannot be looked at: the error fs would throw (code, syscall)
    const bad = path.join(file, 'sub');
    let nativeErr: NodeJS.ErrnoException | undefined;
    let fsErr: NodeJS.ErrnoException | undefined;
    try {
      stageDisplaced(fd, bad, 0, check);
    } catch (e) {
      nativeErr = e as NodeJS.ErrnoException;
    }
    try {
      stageDisplacedFs(fd, bad, 0);
    } catch (e) {
      fsErr = e as NodeJS.ErrnoException;
    }
    assert.is(nativeErr?.code, 'ENOTDIR');
    assert.is(nativeErr?.code, fsErr?.code);
    assert.is(nativeErr?.syscall, 'stat');
    closeSync(fd);
    // a closed descriptor: EBADF from fstat
    assert.throws(() => stageDisplaced(fd, file, 0, check), (e: NodeJS.ErrnoException) => e.code === 'EBADF' && e.syscall === 'fstat');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
