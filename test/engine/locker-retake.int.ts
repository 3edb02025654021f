// The locker's re-take on real files and real OFD locks (issue 16 item 6): the new description is
// locked before the old one is closed, so the lock is never free in between. A watcher wraps the
// real native binding and, at the moment each new lock is asked for, looks at the lock file from a
// description of its own.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Locker } from '../../src/engine/locker.js';
import { native } from '../../src/engine/native.js';
import type { Mode, ResourceRef } from '../../src/engine/types.js';
import { UUID1, tmpdir } from '../helpers/daemon.js';

function setup(mode: Mode) {
  const dir = tmpdir('vmlockd-retake-');
  const ref: ResourceRef = { id: path.join(dir, 'lease'), name: 'lease', lockspace: dir, kind: 'file', canonical: path.join(dir, 'disk.img') };
  /** Whether anything held byte 0 each time a lock was asked for on byte 0 after the first grant. */
  const heldAtAsk: boolean[] = [];
  let watching = false;
  // Every call goes to the real binding; ofdSetLk looks at the file first.
  const ofdSetLk = (fd: number, type: 'read' | 'write' | 'unlock', start: number, len: number): boolean => {
    if (watching && start === 0 && type !== 'unlock') {
      const probe = fs.openSync(ref.id, fs.constants.O_RDONLY);
      try {
        heldAtAsk.push(native.ofdGetLk(probe, 'write', 0, 1) !== null);
      } finally {
        fs.closeSync(probe);
      }
    }
    return native.ofdSetLk(fd, type, start, len);
  };
  const watched = new Proxy({} as typeof native, {
    get: (_t, k) => {
      if (k === 'ofdSetLk') return ofdSetLk;
      const v = Reflect.get(native, k) as unknown;
      return typeof v === 'function' ? v.bind(native) : v;
    },
  });
  const locker = new Locker('h1', { native: watched });
  const p = locker.prepare([{ kind: 'lock', how: 'take', disk: { path: ref.canonical, mode, resource: ref }, owner: { uuid: UUID1, name: 'web1' } }], {
    at: new Date().toISOString(),
    source: 'api',
  });
  assert.is(p.outcome.status, 'ok');
  p.commit();
  watching = true;
  return { ref, locker, heldAtAsk };
}

for (const mode of ['exclusive', 'shared'] as const) {
  test(`${mode === 'exclusive' ? 'an' : 'a'} ${mode} re-take of a lock that still holds never leaves it free, and keeps it`, () => {
    const { ref, locker, heldAtAsk } = setup(mode);
    const r = locker.retake(ref, mode, [{ uuid: UUID1, name: 'web1', since: new Date().toISOString() }], new Date().toISOString());
    assert.ok(r.ok);
    assert.ok(heldAtAsk.length > 0, 'the re-take asked for a lock');
    assert.ok(heldAtAsk.every(Boolean), `the lock was free while the re-take asked for it: ${JSON.stringify(heldAtAsk)}`);
    // Still held, by this locker, through one description.
    assert.ok(locker.isHeld(ref.id));
    const probe = fs.openSync(ref.id, fs.constants.O_RDONLY);
    try {
      assert.ok(native.ofdGetLk(probe, 'write', 0, 1) !== null);
    } finally {
      fs.closeSync(probe);
    }
    assert.equal(locker.verify(), []);
    locker.closeAll();
  });
}

test.run();
