// listenFds (src/daemon/service.ts): LISTEN_FDS is bounded and each descriptor checked before it is taken.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { NativeBinding } from '../../src/engine/native.js';
import { listenFds, softNoFile } from '../../src/daemon/service.js';

/** Descriptors 3.. of a fake process: 'socket', 'file', 'block', 'other' (Node's epoll) or absent. */
function fake(kinds: Record<number, 'socket' | 'file' | 'block' | 'other'>) {
  const looked: number[] = [];
  const set: number[] = [];
  const nat = {
    getFd: (fd: number) => {
      looked.push(fd);
      if (!(fd in kinds)) throw Object.assign(new Error('EBADF'), { code: 'EBADF' });
      return 0;
    },
    setFd: (fd: number) => void set.push(fd),
    fstatId: (fd: number) => ({ dev: '1', ino: String(fd), type: kinds[fd]! }),
  } as unknown as NativeBinding;
  return { nat, looked, set };
}

test('taken: open sockets and regular files, named; the variables removed', () => {
  const f = fake({ 3: 'socket', 4: 'file' });
  const env: NodeJS.ProcessEnv = { LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'control:lock-x' };
  assert.equal(listenFds(env, f.nat, 42), [{ fd: 3, name: 'control' }, { fd: 4, name: 'lock-x' }]);
  assert.equal(f.set, [3, 4]);
  assert.equal(env, {});
});

test('taken: a block device (the store kept a direct lock on an LV or LUN; review26a F4)', () => {
  const f = fake({ 3: 'block', 4: 'other' });
  const logs: string[] = [];
  assert.equal(listenFds({ LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'lock-x:y' }, f.nat, 42, (_l, m) => logs.push(m)), [{ fd: 3, name: 'lock-x' }]);
  assert.equal(f.set, [3]);
  assert.match(logs.join('\n'), 'left alone: 4 (a other');
});

test("another pid's variables: nothing taken", () => {
  const f = fake({ 3: 'socket' });
  const logs: string[] = [];
  assert.equal(listenFds({ LISTEN_PID: '7', LISTEN_FDS: '1' }, f.nat, 42, (_l, m) => logs.push(m)), []);
  assert.equal(f.looked, []);
  assert.match(logs[0]!, 'LISTEN_PID=7 is not this process');
});

test("an over-count: Node's own descriptors (not socket, not file) left alone, never set or closed", () => {
  const f = fake({ 3: 'other', 4: 'other', 5: 'socket' });
  const logs: string[] = [];
  assert.equal(listenFds({ LISTEN_PID: '42', LISTEN_FDS: '4' }, f.nat, 42, (_l, m) => logs.push(m)), [{ fd: 5, name: 'unknown' }]);
  assert.equal(f.set, [5]);
  assert.match(logs.join('\n'), 'left alone: 3 (a other');
});

test('bounded by the fd limit and by the names given', () => {
  const f = fake({ 3: 'socket' });
  listenFds({ LISTEN_PID: '42', LISTEN_FDS: '3000000' }, f.nat, 42, () => {}, 1024);
  assert.is(f.looked.length, 1021);
  const g = fake({ 3: 'socket', 4: 'socket' });
  assert.equal(listenFds({ LISTEN_PID: '42', LISTEN_FDS: '5', LISTEN_FDNAMES: 'control' }, g.nat, 42, () => {}, 1024), [{ fd: 3, name: 'control' }]);
  assert.equal(g.looked, [3]);
});

test('softNoFile reads /proc/self/limits', () => {
  assert.is(softNoFile(() => 'Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 524288               files\n'), 1024);
  assert.ok(softNoFile() > 3);
});

test.run();
