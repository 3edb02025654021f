// Both sockets check the caller's SO_PEERCRED, not only the socket file's mode: with the socket made
// 0666, uid nobody is refused on the control API (403, VMLOCKD_ERR_DENIED) and on the virtlockd socket
// (closed without a frame, journaled), takes no lock, and the daemon serves root on.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, UUID1, tmpdir, until } from '../helpers/daemon.js';
import { PROC, encodeCall } from '../../src/events/virtlockd/codec.js';
import { RemoteClient } from '../helpers/remote-client.js';

test('a foreign uid is refused even when the socket file lets it connect', async () => {
  const dir = tmpdir();
  fs.chmodSync(dir, 0o755);
  const img = path.join(dir, 'a.img');
  fs.writeFileSync(img, 'x');
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), socket: path.join(dir, 'api.sock') });
  await d.start();
  try {
    fs.chmodSync(d.socket, 0o666);
    const asNobody = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, MAIN, 'acquire', '--json', '--vm', UUID1, img, '--socket', d.socket], { encoding: 'utf8', timeout: 30_000 });
    assert.is(asNobody.status, 1, asNobody.stdout + asNobody.stderr);
    const out = JSON.parse(asNobody.stdout);
    assert.is(out.code, 'VMLOCKD_ERR_DENIED');
    assert.match(out.message, /permission denied: uid 65534/);
    assert.equal(JSON.parse(d.cli(['locks', '--json']).stdout), []);
    // The daemon's own uid (root here) is served.
    assert.is(d.cli(['acquire', '--vm', UUID1, img]).code, 0);
  } finally {
    await d.kill('SIGKILL');
  }
});

test('a foreign uid on the virtlockd socket is closed without a frame and journaled, takes no lock, and root is served on', async () => {
  const dir = tmpdir();
  fs.chmodSync(dir, 0o755);
  const img = path.join(dir, 'a.img');
  fs.writeFileSync(img, 'x');
  const vsock = path.join(dir, 'run', 'virtlockd-sock');
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), socket: path.join(dir, 'api.sock'), extra: ['--virtlockd-socket', vsock] });
  await d.start();
  try {
    await until('the virtlockd socket', () => fs.existsSync(vsock));
    fs.chmodSync(path.dirname(vsock), 0o755);
    fs.chmodSync(vsock, 0o666);
    // As nobody: connect, send REGISTER and ACQUIRE of the image, report what comes back.
    const frames = Buffer.concat([
      encodeCall(PROC.REGISTER, 0, { owner: { uuid: UUID1, name: 'vm', id: 1, pid: process.pid } }),
      encodeCall(PROC.ACQUIRE_RESOURCE, 1, { path: '', name: img }),
    ]).toString('hex');
    const script = `const c = require('net').createConnection(process.argv[1]); let got = 0;
      c.on('connect', () => c.write(Buffer.from(process.argv[2], 'hex')));
      c.on('data', (d) => (got += d.length)); c.on('error', () => {});
      c.on('close', () => { console.log(JSON.stringify({ got })); process.exit(0); });
      setTimeout(() => { console.log(JSON.stringify({ got, open: true })); process.exit(0); }, 10000);`;
    const asNobody = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', script, vsock, frames], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(JSON.parse(asNobody.stdout.trim()), { got: 0 }, asNobody.stdout + asNobody.stderr);
    assert.equal(JSON.parse(d.cli(['locks', '--json']).stdout), []);
    await until('the refusal logged as virtlockd does', () => /Disallowing client \d+ with uid 65534/.test(d.stderr));
    const rejected = JSON.parse(d.cli(['audit', '--json', '--kind', 'InputRejected']).stdout) as Array<{ payload: { message?: string } }>;
    assert.ok(rejected.some((f) => /uid 65534/.test(String(f.payload.message))), JSON.stringify(rejected).slice(0, 500));
    // Root (the daemon's own uid) is served on the same socket.
    const root = await RemoteClient.spawn(vsock);
    try {
      assert.equal(await root.do({ op: 'register', uuid: UUID1, name: 'vm', id: 1, pid: 'self' }), { ok: true });
      assert.equal(await root.do({ op: 'acquire', path: '', name: img }), { ok: true });
      assert.is((JSON.parse(d.cli(['locks', '--json']).stdout) as unknown[]).length, 1);
    } finally {
      // The client process reads its stdin until killed: left running, it keeps the test runner alive.
      await root.kill();
    }
    assert.is(d.proc!.exitCode, null);
  } finally {
    await d.kill('SIGKILL');
  }
});

test.run();
