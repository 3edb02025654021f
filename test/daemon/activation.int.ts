// Socket activation without a service manager (test/helpers/socket-activate.py passes listening
// sockets as systemd does: LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID): the daemon serves the socket it
// was given, never unlinks or re-binds its path, tells it by name or by path, and one that does not
// match the config is logged and closed, the daemon binding its configured path itself.
// The same under the real systemd: systemd-sockets.int.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { samePath, unixListener } from '../../src/daemon/activation.js';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { MAIN, ROOT, UUID1, cli, tmpdir, until } from '../helpers/daemon.js';

const test = suite('socket activation: the daemon serves the sockets it is given');
const LAUNCHER = path.join(ROOT, 'test', 'helpers', 'socket-activate.py');

interface Activated {
  proc: ChildProcess;
  out: () => string;
  exit: Promise<number | null>;
}
const running: ChildProcess[] = [];
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});
test.after.each(() => {
  for (const p of running.splice(0)) p.kill('SIGKILL');
});

async function activate(sockets: Record<string, string>, serveArgs: string[]): Promise<Activated> {
  const specs = Object.entries(sockets).map(([name, p]) => `${name}=${p}`);
  const proc = spawn('python3', [LAUNCHER, ...specs, '--', process.execPath, MAIN, 'serve', ...serveArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(proc);
  let out = '';
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let exited = false;
  void exit.then(() => (exited = true));
  await until('the daemon listening', () => out.includes('listening on') || exited, 30_000);
  assert.ok(!exited, `the daemon exited: ${out}`);
  return { proc, out: () => out, exit };
}

function site() {
  const root = tmpdir('vmlockd-act-');
  const disk = path.join(root, 'd1.qcow2');
  fs.writeFileSync(disk, '');
  const args = (socket: string, more: string[] = []) => ['--state-dir', path.join(root, 'state'), '--socket', socket, '--lockspace', path.join(root, 'lockspace'), '--host-id', 'hv-act', ...more];
  return { root, disk, args };
}

test('the control and virtlockd sockets passed by name are served as they are; a stop leaves their paths', async () => {
  const s = site();
  const control = path.join(s.root, 'control.sock');
  const vsock = path.join(s.root, 'virtlockd-sock');
  const d = await activate({ control, virtlockd: vsock }, s.args(control, ['--virtlockd-socket', vsock]));
  const inodes = [fs.statSync(control).ino, fs.statSync(vsock).ino];
  const acq = cli(['acquire', '--vm', UUID1, s.disk, '--socket', control]);
  assert.is(acq.code, 0, acq.stderr);
  const st = JSON.parse(cli(['status', '--json', '--socket', control]).stdout);
  assert.equal(st.started.sockets, ['control', 'virtlockd']);
  const lv = await LockClient.connect(vsock);
  await lv.createLockspace(path.join(s.root, 'proto'));
  await lv.close();
  // The same sockets: the daemon bound nothing of its own over them.
  assert.equal([fs.statSync(control).ino, fs.statSync(vsock).ino], inodes);
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, d.out());
  // The paths are the socket units' (systemd binds them again only when the unit restarts).
  assert.equal([fs.statSync(control).ino, fs.statSync(vsock).ino], inodes, 'a stop unlinked a socket it was given');
});

test('a socket named otherwise (FileDescriptorName= left out) is taken by its path', async () => {
  const s = site();
  const control = path.join(s.root, 'control.sock');
  const d = await activate({ 'vmlockd.socket': control }, s.args(control));
  const st = JSON.parse(cli(['status', '--json', '--socket', control]).stdout);
  assert.equal(st.started.sockets, ['control']);
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, d.out());
  assert.ok(fs.existsSync(control));
});

test('a named socket bound elsewhere than the config says is served anyway under its name, with both paths logged (never a failed start)', async () => {
  const s = site();
  const stray = path.join(s.root, 'stray.sock');
  const control = path.join(s.root, 'control.sock');
  const vsock = path.join(s.root, 'virtlockd-sock');
  const d = await activate({ control: stray, virtlockd: vsock }, s.args(control));
  assert.match(d.out(), `socket activation: descriptor 3 named "control" (${stray}) is bound to ${stray} but the config's socket (--socket) is ${control}: serving it as the control socket anyway`);
  assert.match(d.out(), `socket activation: descriptor 4 named "virtlockd" (${vsock}) is a virtlockd socket but virtlockd_socket (--virtlockd-socket) is unset: set it to ${vsock}`);
  const st = JSON.parse(cli(['status', '--json', '--socket', stray]).stdout);
  assert.equal(st.started.sockets, ['control']);
  assert.not.ok(fs.existsSync(control));
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, d.out());
  // systemd's: left in place.
  assert.ok(fs.existsSync(stray));
});

test('swapped FileDescriptorName= (control on the virtlockd path and back): each served as its path says', async () => {
  const s = site();
  const control = path.join(s.root, 'control.sock');
  const vsock = path.join(s.root, 'virtlockd-sock');
  const d = await activate({ virtlockd: control, control: vsock }, s.args(control, ['--virtlockd-socket', vsock]));
  assert.match(d.out(), 'served as the control socket (swap FileDescriptorName= in the socket units)');
  const acq = cli(['acquire', '--vm', UUID1, s.disk, '--socket', control]);
  assert.is(acq.code, 0, acq.stderr);
  const lv = await LockClient.connect(vsock);
  await lv.createLockspace(path.join(s.root, 'proto'));
  await lv.close();
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, d.out());
});

test('a passed socket is read from its descriptor: path, stream, listening (any network namespace)', async () => {
  const root = tmpdir('vmlockd-act-');
  const p = path.join(root, 'x.sock');
  const net = await import('node:net');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(p, () => r()));
  const fd = (srv as unknown as { _handle: { fd: number } })._handle.fd;
  assert.equal(unixListener(fd), { path: p, stream: true, listening: true });
  srv.close();
  const f = fs.openSync(path.join(root, 'plain'), 'w');
  assert.is(unixListener(f), undefined);
  fs.closeSync(f);
  // The same file through a symlinked directory (/var/run -> /run), or not at all.
  fs.symlinkSync(root, path.join(root + '-alias'));
  fs.writeFileSync(path.join(root, 'y'), '');
  assert.ok(samePath(path.join(root, 'y'), path.join(root + '-alias', 'y')));
  assert.not.ok(samePath(path.join(root, 'y'), path.join(root, 'z')));
  assert.not.ok(samePath('@abstract', '@abstract'));
});

test.run();
