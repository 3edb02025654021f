// The native binding's descriptor passing (sendmsg/recvmsg with SCM_RIGHTS) and error reporting.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FD_CLOEXEC, native } from '../../src/engine/native.js';

test('a descriptor sent with SCM_RIGHTS refers to the same open file description (its OFD lock is shared)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-native-'));
  const sock = path.join(dir, 's');
  const file = path.join(dir, 'lock');
  let server: net.Server | undefined;
  const got = new Promise<number>((resolve, reject) => {
    server = net.createServer((c) => {
      const fd = (c as unknown as { _handle: { fd: number } })._handle.fd;
      try {
        const r = native.recvFds(fd, 4096, 5000);
        assert.is(r.data.toString(), 'FDS one\n');
        assert.is(r.fds.length, 1);
        resolve(r.fds[0]!);
      } catch (e) {
        reject(e);
      }
      c.destroy();
      server?.close();
    });
    server.listen(sock);
  });
  await new Promise((r) => setTimeout(r, 50));
  const fd = fs.openSync(file, 'w+');
  let copy: number;
  try {
    assert.ok(native.ofdSetLk(fd, 'write', 0, 1));
    const conn = native.unixConnect(sock);
    native.sendFds(conn, null, 'FDS one\n', [fd]);
    copy = await got;
    fs.closeSync(conn);
  } finally {
    // A failure above (an old build of the binding, say) must fail the test, not leave the server
    // listening and the runner waiting for ever.
    server?.close();
  }
  fs.closeSync(fd);
  // The sender's copy is closed: the lock lives on through the received one.
  const probe = fs.openSync(file, 'r');
  assert.ok(native.ofdGetLk(probe, 'write', 0, 1) !== null, 'the lock survives through the passed copy');
  assert.equal(native.fstatId(copy).ino, String(fs.statSync(file).ino));
  assert.ok((native.getFd(copy) & FD_CLOEXEC) !== 0, 'received descriptors are close-on-exec');
  native.setFd(copy, 0);
  assert.is(native.getFd(copy) & FD_CLOEXEC, 0);
  fs.closeSync(copy);
  assert.is(native.ofdGetLk(probe, 'write', 0, 1), null, 'the last close drops it');
  fs.closeSync(probe);
});

test('at most 253 descriptors per message', () => {
  const s = native.dgramSocket();
  assert.throws(() => native.sendFds(s, '@vmlockd-test-none', 'x', new Array(254).fill(0)), /at most 253/);
  fs.closeSync(s);
});

test('an errno the binding does not name is reported by its number', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-native-')), 'plain');
  fs.writeFileSync(file, '');
  try {
    native.unixConnect(path.join(file, 'not-a-dir'));
    assert.unreachable();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    assert.is(err.code, 'errno 20'); // ENOTDIR
    assert.match(err.message, 'errno 20');
    assert.is(err.errno, -20);
  }
});

test.run();
