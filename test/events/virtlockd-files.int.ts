// What the virtlockd protocol server does to the files a lockspace name points to, against a real
// daemon: a FIFO never blocks the event loop (issue 16.13), a disk image in a directory lockspace is
// locked but never written (16.14), DELETE_RESOURCE unlinks only what no one holds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { LockClient, LockRpcError } from '../../src/events/virtlockd/client.js';
import { tmpdir } from '../helpers/daemon.js';
import { UUID_A, UUID_B, locks, serve } from '../helpers/protocol-serve.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The call's outcome, or 'hung' if no reply came in `ms` (a blocked event loop answers nothing). */
async function within(ms: number, p: Promise<unknown>): Promise<'ok' | 'hung' | LockRpcError> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), ms)));
  try {
    return await Promise.race([
      p.then(
        () => 'ok' as const,
        (e: unknown) => {
          if (e instanceof LockRpcError) return e;
          throw e;
        },
      ),
      hung,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test('given a FIFO named by a SHARED acquire or a DELETE_RESOURCE, then it is refused at once and the daemon keeps answering', async () => {
  const dir = tmpdir('vmlockd-vf-');
  const ls = path.join(dir, 'files');
  mkdirSync(ls);
  const fifo = path.join(dir, 'pipe.img');
  execFileSync('mkfifo', [fifo]);
  execFileSync('mkfifo', [path.join(ls, 'lease-fifo')]);
  const s = await serve(dir);
  try {
    const c = await LockClient.connect(s.socket);
    await c.createLockspace(ls);
    await c.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: 4242 });
    // The default lockspace: the name is the file itself, opened read-only for a shared lock.
    const shared = await within(10_000, c.acquire('', fifo, { shared: true }));
    assert.instance(shared, LockRpcError, `shared acquire of a FIFO: ${String(shared)}`);
    assert.equal([(shared as LockRpcError).code, (shared as LockRpcError).domain], [8, 51]);
    assert.match((shared as LockRpcError).message, `${fifo} is a FIFO: only a regular file or a block device can be locked`);
    const excl = await within(10_000, c.acquire(ls, 'lease-fifo', { autocreate: true }));
    assert.instance(excl, LockRpcError, `acquire of a FIFO lease: ${String(excl)}`);
    assert.match((excl as LockRpcError).message, 'is a FIFO: only a regular file can be locked');
    const del = await within(10_000, c.deleteResource(ls, 'lease-fifo'));
    assert.instance(del, LockRpcError, `DELETE_RESOURCE of a FIFO: ${String(del)}`);
    assert.match((del as LockRpcError).message, 'is a FIFO');
    assert.ok(existsSync(path.join(ls, 'lease-fifo')), 'the FIFO is left alone');
    // Still serving: the control API and another connection answer, and nothing is locked.
    assert.equal(locks(s.daemon), []);
    const other = await LockClient.connect(s.socket);
    assert.is(await within(10_000, other.createLockspace(ls)), 'ok');
    await other.close();
    await c.close();
  } finally {
    await s.daemon.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given a directory lockspace that holds disk images, when an image is acquired and released (exclusive and shared), then its bytes never change', async () => {
  const dir = tmpdir('vmlockd-vf-');
  const images = path.join(dir, 'images');
  mkdirSync(images);
  // A qcow2 header, then data: what a lockspace that is an images directory holds.
  const qcow2 = Buffer.concat([Buffer.from('514649fb00000003', 'hex'), randomBytes(64 * 1024)]);
  const small = Buffer.concat([Buffer.from('514649fb', 'hex'), randomBytes(508)]);
  writeFileSync(path.join(images, 'disk.qcow2'), qcow2);
  writeFileSync(path.join(images, 'small.img'), small);
  const s = await serve(dir);
  try {
    const c = await LockClient.connect(s.socket);
    await c.createLockspace(images);
    await c.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: 4242 });
    await c.acquire(images, 'disk.qcow2');
    await c.acquire(images, 'small.img', { shared: true });
    assert.equal(locks(s.daemon), [
      ['disk.qcow2', 'exclusive', UUID_A],
      ['small.img', 'shared', UUID_A],
    ]);
    assert.is(sha(readFileSync(path.join(images, 'disk.qcow2'))), sha(qcow2), 'locked, and not written');
    assert.is(sha(readFileSync(path.join(images, 'small.img'))), sha(small));
    // The lock itself holds: another VM is refused.
    const b = await LockClient.connect(s.socket);
    await b.register({ uuid: UUID_B, name: 'vm-b', id: 2, pid: 4343 });
    const busy = await b.acquire(images, 'disk.qcow2').then(
      () => null,
      (e: unknown) => e as LockRpcError,
    );
    assert.equal(busy && [busy.code, busy.domain], [87, 51]);
    await c.release(images, 'disk.qcow2');
    await c.release(images, 'small.img');
    assert.is(sha(readFileSync(path.join(images, 'disk.qcow2'))), sha(qcow2), 'released, and not written');
    assert.is(sha(readFileSync(path.join(images, 'small.img'))), sha(small));
    // A lease vmlockd creates still carries its holder record.
    await b.acquire(images, 'lease1', { autocreate: true });
    assert.match(readFileSync(path.join(images, 'lease1'), 'utf8'), `"mode":"exclusive"`);
    await b.close();
    await c.close();
  } finally {
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given DELETE_RESOURCE, then a lease no one holds is unlinked, one held by another process is kept', async () => {
  const dir = tmpdir('vmlockd-vf-');
  const ls = path.join(dir, 'files');
  const one = await serve(path.join(dir, 'one'));
  const two = await serve(path.join(dir, 'two'));
  try {
    const a = await LockClient.connect(one.socket);
    await a.createLockspace(ls);
    await a.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: 4242 });
    await a.acquire(ls, 'held', { autocreate: true });
    await a.createResource(ls, 'idle');
    const b = await LockClient.connect(two.socket);
    await b.createLockspace(ls);
    await b.register({ uuid: UUID_B, name: 'vm-b', id: 2, pid: 4343 });
    const e = await b.deleteResource(ls, 'held').then(
      () => null,
      (x: unknown) => x as LockRpcError,
    );
    assert.equal(e && [e.code, e.domain], [87, 51]);
    assert.match(e!.message, 'is locked (exclusive');
    assert.ok(existsSync(path.join(ls, 'held')));
    await b.deleteResource(ls, 'idle');
    assert.not.ok(existsSync(path.join(ls, 'idle')));
    await b.deleteResource(ls, 'never-there');
    await a.close();
    await b.close();
  } finally {
    await one.daemon.kill('SIGTERM');
    await two.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
