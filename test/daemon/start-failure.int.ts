// A start that half fails stops: metrics port in use, an impossible virtlockd socket path. It exits
// 1 (2 for bad input) with one line, gives back what it took, and a later start works.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, cli, tmpdir } from '../helpers/daemon.js';

/**
 * One line of error, whatever log lines (timestamped, e.g. the lockspace scan's warning about an
 * empty journal at a first start) the start printed before it failed.
 */
function oneLine(r: { stderr: string }, re: RegExp): void {
  const lines = r.stderr.trim().split('\n').filter((l) => !/^\S+Z (debug|info|warning) /.test(l));
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0]!, re);
}

test('metrics address in use: exit 1 in one line, the control socket is gone, the next start re-takes the locks', async () => {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'img'));
  const img = path.join(dir, 'img', 'a');
  fs.writeFileSync(img, 'x');
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls') });
  await d.start();
  assert.is(d.cli(['acquire', '--vm', UUID1, img]).code, 0);
  await d.kill('SIGTERM');

  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  const port = (busy.address() as net.AddressInfo).port;
  try {
    const r = cli([...d.args(), '--metrics-address', `127.0.0.1:${port}`]);
    assert.is(r.code, 1, r.stdout + r.stderr);
    oneLine(r, /EADDRINUSE/);
    assert.not.match(r.stdout, /listening on/);
    assert.not.ok(fs.existsSync(d.socket), 'the failed start left its control socket');
  } finally {
    busy.close();
  }
  await d.start();
  const locks = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
  assert.equal(locks.map((l) => l.disk), [img]);
  await d.kill('SIGKILL');
});

test('an impossible virtlockd socket path is bad input: exit 2, one line, nothing left listening', () => {
  const dir = tmpdir();
  const base = ['serve', '--state-dir', path.join(dir, 'state'), '--socket', path.join(dir, 'c.sock'), '--lockspace', path.join(dir, 'ls')];
  const long = cli([...base, '--virtlockd-socket', path.join(dir, 'v'.repeat(120))]);
  assert.is(long.code, 2, long.stdout + long.stderr);
  oneLine(long, /at most 107 bytes/);
  const underFile = cli([...base, '--virtlockd-socket', '/etc/passwd/virtlockd-sock']);
  assert.is(underFile.code, 2, underFile.stdout + underFile.stderr);
  oneLine(underFile, /not a directory/);
  assert.not.ok(fs.existsSync(path.join(dir, 'c.sock')));
});

test.run();
