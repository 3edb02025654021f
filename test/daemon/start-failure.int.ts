// A start that half fails stops: metrics port in use, an impossible virtlockd socket path. It exits
// 1 (2 for bad input) with one line, gives back what it took, and a later start works.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, cli, tmpdir, until } from '../helpers/daemon.js';
import { oneErrorLine } from '../helpers/one-line.js';

const oneLine = oneErrorLine;

test('metrics address in use at a start with nothing to keep: exit 1 in one line, before any lock, the control socket is gone', async () => {
  const dir = tmpdir();
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls') });
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
});

test('metrics address in use at a start with locks to keep: it serves and re-takes them (an optional feature never drops a lock), says METRICS NOT SERVED, and serves /metrics once the port is free', async () => {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'img'));
  const img = path.join(dir, 'img', 'a');
  fs.writeFileSync(img, 'x');
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  const port = (busy.address() as net.AddressInfo).port;
  const opts = { stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls') };
  const first = new TestDaemon(opts);
  await first.start();
  assert.is(first.cli(['acquire', '--vm', UUID1, img]).code, 0);
  await first.kill('SIGKILL');
  const d = new TestDaemon({ ...opts, extra: ['--metrics-address', `127.0.0.1:${port}`], env: { VMLOCKD_METRICS_RETRY_MS: '300' } });
  try {
    await d.start();
    const locks = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>;
    assert.equal(locks.map((l) => l.disk), [img]);
    await until('the error line', () => /error METRICS NOT SERVED: cannot serve metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE/.test(d.stderr));
    assert.match(String(JSON.parse(d.cli(['status', '--json']).stdout).metricsProblem), /EADDRINUSE/);
  } finally {
    busy.close();
  }
  // until() polls synchronously: an async probe would be a (truthy) promise.
  const deadline = Date.now() + 20_000;
  let text = '';
  while (!text.includes('vmlockd_locks_held 1')) {
    assert.ok(Date.now() < deadline, `metrics not served once the port was free:\n${d.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
    text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
  }
  assert.is(JSON.parse(d.cli(['status', '--json']).stdout).metricsProblem, null);
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
