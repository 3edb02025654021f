// Socket activation and service-manager faults found by review (review1): each failed on main as of cf6ae12.
// A keeper process holds a copy of each passed socket, as systemd does (test/helpers/socket-activate-keep.py).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, ROOT, UUID1, cli, tmpdir, until } from '../helpers/daemon.js';

const test = suite('socket activation faults: aliases, namespaces, takeover, LISTEN_FDS, NOTIFY_SOCKET');
const KEEP = path.join(ROOT, 'test', 'helpers', 'socket-activate-keep.py');
const running: ChildProcess[] = [];
const keepers: number[] = [];
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
  for (const k of keepers) try { process.kill(k, 'SIGKILL'); } catch { /* gone */ }
});
test.after.each(() => {
  for (const p of running.splice(0)) p.kill('SIGKILL');
  for (const k of keepers.splice(0)) try { process.kill(k, 'SIGKILL'); } catch { /* gone */ }
});

interface Proc { proc: ChildProcess; out: () => string; exit: Promise<number | null>; exited: () => boolean }
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Proc {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.push(proc);
  let out = '';
  let done = false;
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exit = new Promise<number | null>((r) => proc.once('exit', (code, sig) => { done = true; r(code ?? (sig ? 128 : null)); }));
  return { proc, out: () => out, exit, exited: () => done };
}
async function listening(p: Proc): Promise<void> {
  await until('listening or exited', () => p.out().includes('listening on') || p.exited(), 30_000);
}
function activated(root: string, sockets: Record<string, string>, serve: string[]): Proc {
  const pidfile = path.join(root, `keeper-${Object.keys(sockets).join('-')}.pid`);
  const p = run('python3', [KEEP, ...Object.entries(sockets).map(([n, s]) => `${n}=${s}`), '--', process.execPath, MAIN, 'serve', ...serve], { ...process.env, KEEP_PIDFILE: pidfile });
  void until('keeper', () => fs.existsSync(pidfile) && fs.readFileSync(pidfile, 'utf8') !== '').then(() => keepers.push(Number(fs.readFileSync(pidfile, 'utf8'))));
  return p;
}
function site() {
  const root = tmpdir('vmlockd-rv1-');
  const args = (socket: string, more: string[] = []) => ['--state-dir', path.join(root, 'state'), '--socket', socket, '--lockspace', path.join(root, 'lockspace'), '--host-id', 'hv-rv1', ...more];
  return { root, args };
}

test('HIGH: the config names the unit socket through an alias (/var/run -> /run): the start must not fail (it loops into the start limit and frees every lock)', async () => {
  const s = site();
  fs.mkdirSync(path.join(s.root, 'run'));
  fs.symlinkSync(path.join(s.root, 'run'), path.join(s.root, 'varrun'));
  const d = activated(s.root, { control: path.join(s.root, 'run', 'c.sock') }, s.args(path.join(s.root, 'varrun', 'c.sock')));
  await listening(d);
  assert.not.ok(d.exited(), `the daemon exited (under Restart=always: start limit, store emptied):\n${d.out()}`);
});

test('HIGH: a socket systemd passed cannot be found in /proc/self/net/unix (another network namespace, PrivateNetwork=yes): the start must not fail', async () => {
  const s = site();
  const c = path.join(s.root, 'c.sock');
  // unshare -n execs in place: the pid (LISTEN_PID) and the descriptors stay.
  const f = run('python3', [KEEP, `control=${c}`, '--', 'unshare', '-n', process.execPath, MAIN, 'serve', ...s.args(c)], { ...process.env, KEEP_PIDFILE: path.join(s.root, 'k3.pid') });
  void until('keeper', () => fs.existsSync(path.join(s.root, 'k3.pid')) && fs.readFileSync(path.join(s.root, 'k3.pid'), 'utf8') !== '').then(() => keepers.push(Number(fs.readFileSync(path.join(s.root, 'k3.pid'), 'utf8'))));
  await listening(f);
  assert.not.ok(f.exited(), `the daemon exited:\n${f.out()}`);
});

test('MEDIUM: serve --takeover of a socket-activated daemon must not unlink the sockets systemd owns when it stops', async () => {
  const s = site();
  const c = path.join(s.root, 'c.sock');
  const v = path.join(s.root, 'v.sock');
  const a = activated(s.root, { control: c, virtlockd: v }, s.args(c, ['--virtlockd-socket', v]));
  await listening(a);
  const b = run(process.execPath, [MAIN, 'serve', ...s.args(c, ['--virtlockd-socket', v, '--takeover'])]);
  await listening(b);
  assert.is(await a.exit, 0, a.out());
  b.proc.kill('SIGTERM');
  assert.is(await b.exit, 0, b.out());
  assert.ok(fs.existsSync(c), 'the new daemon unlinked the control socket the keeper (systemd) still listens on');
  assert.ok(fs.existsSync(v), 'the new daemon unlinked the virtlockd socket the keeper (systemd) still listens on');
});

test('serve --takeover of a daemon systemd runs (NOTIFY_SOCKET) is refused in one line naming systemctl restart; the old one serves on', async () => {
  const s = site();
  const c = path.join(s.root, 'c.sock');
  const ns = path.join(s.root, 'notify');
  run('python3', ['-c', `import socket\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(${JSON.stringify(ns)})\nwhile True: s.recv(65536)`]);
  await until('notify socket', () => fs.existsSync(ns));
  const a = run(process.execPath, [MAIN, 'serve', ...s.args(c)], { ...process.env, NOTIFY_SOCKET: ns });
  await listening(a);
  const b = run(process.execPath, [MAIN, 'serve', ...s.args(c, ['--takeover'])]);
  await until('the takeover refused', () => b.exited(), 60_000);
  assert.is.not(await b.exit, 0, b.out());
  assert.match(b.out(), 'systemctl restart vmlockd');
  assert.not.ok(a.exited(), a.out());
  assert.is(cli(['status', '--socket', c]).code, 0);
});

test('systemd handed descriptors over and another process serves the control and virtlockd paths: the start goes on degraded (logged), never exits', async () => {
  const s = site();
  const c = path.join(s.root, 'c.sock');
  const v = path.join(s.root, 'v.sock');
  const other = run('python3', ['-c', `import socket,time\nfor p in ${JSON.stringify([c, v])}:\n  s=socket.socket(socket.AF_UNIX); s.bind(p); s.listen(8); globals()[p]=s\nopen(${JSON.stringify(path.join(s.root, 'up'))},'w').close()\ntime.sleep(600)`]);
  await until('the other process listening', () => fs.existsSync(path.join(s.root, 'up')));
  void other;
  const d = activated(s.root, { stray: path.join(s.root, 'stray.sock') }, s.args(c, ['--virtlockd-socket', v]));
  await listening(d);
  assert.not.ok(d.exited(), `the daemon exited (under Restart=always: start limit, store emptied):\n${d.out()}`);
  assert.match(d.out(), `socket ${c} is already served by another process, and systemd handed this start descriptors`);
  assert.match(d.out(), `virtlockd socket ${v} is already served by another process`);
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, d.out());
  // The other process's paths are left alone.
  assert.ok(fs.existsSync(c) && fs.existsSync(v));
});

test('HIGH: LISTEN_FDS larger than what was passed: the daemon must not close descriptors it was not given (SIGTERM then aborts)', async () => {
  const s = site();
  const c = path.join(s.root, 'c.sock');
  const d = run('sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS=4 exec "$0" "$@"`, process.execPath, MAIN, 'serve', ...s.args(c)]);
  await listening(d);
  const disk = path.join(s.root, 'd1');
  fs.writeFileSync(disk, '');
  assert.is(cli(['acquire', '--vm', UUID1, disk, '--socket', c]).code, 0);
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, `SIGTERM must stop it cleanly:\n${d.out()}`);
});

test('LISTEN_FDS=3000000: bounded by the descriptor limit (no spin), nothing of Node\'s closed', async () => {
  const s = site();
  const c = path.join(s.root, 'c.sock');
  const d = run('sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS=3000000 exec "$0" "$@"`, process.execPath, MAIN, 'serve', ...s.args(c)]);
  await listening(d);
  assert.not.ok(d.exited(), d.out());
  assert.match(d.out(), /LISTEN_FDS=3000000 is more than the descriptor limit \(\d+\) allows/);
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, `SIGTERM must stop it cleanly:\n${d.out()}`);
});

test('MEDIUM: a NOTIFY_SOCKET nobody reads must not stop the event loop (blocking sendmsg)', async () => {
  const s = site();
  const c = path.join(s.root, 'c.sock');
  const ns = path.join(s.root, 'notify');
  const reader = run('python3', ['-c', `import socket,time; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(${JSON.stringify(ns)}); time.sleep(600)`]);
  await until('notify socket', () => fs.existsSync(ns));
  void reader;
  const d = run(process.execPath, [MAIN, 'serve', ...s.args(c)], { ...process.env, NOTIFY_SOCKET: ns });
  await listening(d);
  for (let i = 0; i < 16; i++) {
    const disk = path.join(s.root, `d${i}`);
    fs.writeFileSync(disk, '');
    const r = await new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, [MAIN, 'acquire', '--vm', UUID1, disk, '--socket', c], { stdio: 'ignore' });
      const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
      p.once('exit', (code) => { clearTimeout(t); resolve(code); });
    });
    assert.is(r, 0, `acquire #${i} got no answer: the daemon is stuck in sendmsg to ${ns}`);
  }
  // The messages wait in a backlog, counted in status; SIGTERM still stops the daemon.
  const st = JSON.parse(cli(['status', '--json', '--socket', c]).stdout);
  assert.ok(st.started.fdStore.backlog > 0, JSON.stringify(st.started.fdStore));
  assert.match(d.out(), 'is not reading its messages');
  d.proc.kill('SIGTERM');
  assert.is(await d.exit, 0, d.out());
});

test.run();
