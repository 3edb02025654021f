// A daemon started while the shared lockspace's filesystem is not mounted must not make a lockspace
// of its own on the bare mount point: there it would "hold" disks that other hosts hold in the real
// lockspace (two VMs on one disk). A tmpfs stands in for the cluster filesystem; each host sees it
// through its own bind mount, which can be taken away while the other host keeps its view.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, cli, startDaemon, tmpdir, until, type TestDaemon as TD } from '../helpers/daemon.js';

const running: TD[] = [];
const mounts: string[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
  for (const m of mounts.splice(0).reverse()) spawnSync('umount', ['-l', m]);
});

function mount(args: string[], to: string): void {
  const r = spawnSync('mount', [...args, to], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount ${args.join(' ')} failed (the suite needs root): ${r.stderr}`);
  mounts.push(to);
}

function unmount(dir: string): void {
  const r = spawnSync('umount', ['-l', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`umount -l ${dir} failed: ${r.stderr}`);
  mounts.splice(mounts.indexOf(dir), 1);
}

/** The volume (a tmpfs) and one bind mount of it per host. */
function sharedVolume(root: string, hosts: string[]): Record<string, string> {
  const real = path.join(root, 'volume');
  fs.mkdirSync(real);
  mount(['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs'], real);
  const out: Record<string, string> = {};
  for (const h of hosts) {
    const mnt = path.join(root, `mnt-${h}`);
    fs.mkdirSync(mnt);
    mount(['--bind', real], mnt);
    out[h] = mnt;
  }
  return out;
}

function errorLines(stderr: string): string[] {
  return stderr.trim().split('\n').filter((l) => l !== '' && !/^\S+Z (debug|info|warning) /.test(l));
}

for (const sub of ['', 'ls']) {
  const where = sub === '' ? 'the mount point itself' : 'a directory inside the mount';
  test(`lockspace = ${where}: a daemon whose journal knows the lockspace refuses to start on the bare mount point, naming the path and the id; it creates nothing and takes no lock`, async () => {
    const root = tmpdir('vmlockd-absent-');
    const m = sharedVolume(root, ['a', 'b']);
    const lsA = path.join(m.a!, sub);
    const lsB = path.join(m.b!, sub);
    const disk = path.join(root, 'disk.img');
    const other = path.join(root, 'other.img');
    fs.writeFileSync(disk, '');
    fs.writeFileSync(other, '');
    const a = await startDaemon({ stateDir: path.join(root, 'state-a'), lockspace: lsA, hostId: 'hv-a' });
    running.push(a);
    const b = new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace: lsB, hostId: 'hv-b' });
    await b.start();
    running.push(b);
    const id = fs.readFileSync(path.join(lsA, '.vmlockd-lockspace-id'), 'utf8').trim();
    // B holds one disk, then stops; meanwhile A's VM takes the disk B's VM will want.
    assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'b-vm', other]).code, 0);
    await b.kill('SIGKILL');
    assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'a-vm', disk]).code, 0);

    unmount(m.b!);
    const started = await b.start().then(() => true, () => false);
    const r = { code: (await b.exit!).code, stdout: b.stdout, stderr: b.stderr };
    if (started) await b.kill();
    assert.not.ok(started, `started on the bare mount point:\n${r.stdout}${r.stderr}`);
    assert.is(r.code, 1, r.stderr);
    const errs = errorLines(r.stderr);
    assert.is(errs.length, 1, r.stderr);
    assert.ok(errs[0]!.includes(lsB), errs[0]);
    assert.ok(errs[0]!.includes(id), errs[0]);
    assert.not.match(r.stdout, /listening on/);
    assert.equal(fs.readdirSync(m.b!), [], 'created under the bare mount point');

    // Mounted again, B starts and re-takes its own disk in the real lockspace; A's disk stays A's.
    mount(['--bind', path.join(root, 'volume')], m.b!);
    await b.start();
    assert.equal((JSON.parse(b.cli(['locks', '--json']).stdout) as Array<{ disk: string }>).map((l) => l.disk), [other]);
    assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'b-vm', disk]).code, 3);
  });
}


/** A start that must fail: its exit code and output (a start that succeeds fails the test). */
async function refusedStart(d: TD): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const started = await d.start().then(() => true, () => false);
  const r = { code: (await d.exit!).code, stdout: d.stdout, stderr: d.stderr };
  if (started) await d.kill();
  assert.not.ok(started, `started on the bare mount point:\n${r.stdout}${r.stderr}`);
  return r;
}

function cliOk(args: string[]): string {
  const r = cli(args);
  assert.is(r.code, 0, r.stdout + r.stderr);
  return r.stdout;
}

test('lockspace_init = "explicit": a first start (nothing known) never makes a lockspace; `vmlockd lockspace init` does, and a lockspace replaced on purpose is accepted only through it', async () => {
  const root = tmpdir('vmlockd-absent-');
  const mnt = path.join(root, 'mnt');
  fs.mkdirSync(mnt);
  const ls = path.join(mnt, 'ls');
  const state = path.join(root, 'state');
  const d = new TestDaemon({ stateDir: state, lockspace: ls, hostId: 'hv-x', extra: ['--lockspace-init', 'explicit'] });
  let r = await refusedStart(d);
  assert.is(r.code, 1);
  const errs = errorLines(r.stderr);
  assert.is(errs.length, 1, r.stderr);
  assert.match(errs[0]!, `${ls} has no .vmlockd-lockspace-id and lockspace_init = "explicit"`);
  assert.match(errs[0]!, `vmlockd lockspace init ${ls}`);
  assert.equal(fs.readdirSync(mnt), []);

  mount(['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs'], mnt);
  const out = cliOk(['lockspace', 'init', '--state-dir', state, '--lockspace', ls]);
  const id = fs.readFileSync(path.join(ls, '.vmlockd-lockspace-id'), 'utf8').trim();
  assert.match(out, `${ls}: created lockspace ${id} on local`);
  await d.start();
  running.push(d);
  await d.kill();

  // The volume replaced by a new, empty one: not accepted by a start, accepted by lockspace init.
  unmount(mnt);
  mount(['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs'], mnt);
  fs.mkdirSync(ls);
  r = await refusedStart(d);
  assert.match(errorLines(r.stderr)[0]!, `expected lockspace id ${id}`);
  assert.equal(fs.readdirSync(ls), []);
  const again = cliOk(['lockspace', 'init', '--state-dir', state, '--lockspace', ls]);
  const id2 = fs.readFileSync(path.join(ls, '.vmlockd-lockspace-id'), 'utf8').trim();
  assert.is.not(id2, id);
  assert.match(again, `this host knew ${id} there before; it now expects ${id2}`);
  await d.start();
  assert.is(JSON.parse(d.cli(['status', '--json']).stdout).lockspaceId, id2);
});

test('an LVM lockspace on a bare mount point is refused the same way (and a different id in it too)', async () => {
  const root = tmpdir('vmlockd-absent-');
  const m = sharedVolume(root, ['x']);
  const lvm = path.join(m.x!, 'lvm');
  const conf = path.join(root, 'vmlockd.conf');
  fs.writeFileSync(conf, `lvm_lockspace_dir = "${lvm}"\n`);
  const d = new TestDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'files'), hostId: 'hv-l', extra: ['--config', conf] });
  await d.start();
  const id = fs.readFileSync(path.join(lvm, '.vmlockd-lockspace-id'), 'utf8').trim();
  await d.kill();
  unmount(m.x!);
  const r = await refusedStart(d);
  const errs = errorLines(r.stderr);
  assert.is(errs.length, 1, r.stderr);
  assert.match(errs[0]!, `LVM lockspace ${lvm} has no .vmlockd-lockspace-id, expected lockspace id ${id}`);
  assert.equal(fs.readdirSync(m.x!), []);
  // A lockspace made on the bare mount point by an older vmlockd: another id, refused too.
  fs.mkdirSync(lvm);
  fs.writeFileSync(path.join(lvm, '.vmlockd-lockspace-id'), '00000000-0000-4000-8000-000000000000\n');
  const r2 = await refusedStart(d);
  assert.match(errorLines(r2.stderr)[0]!, `holds 00000000-0000-4000-8000-000000000000, expected ${id}`);
});

test('a reload moving the file lockspace back to one this host knew, now a bare mount point: refused, nothing created, the running lockspace stays', async () => {
  const root = tmpdir('vmlockd-absent-');
  const m = sharedVolume(root, ['x']);
  const known = path.join(m.x!, 'ls');
  const other = path.join(root, 'other-ls');
  const conf = path.join(root, 'vmlockd.conf');
  fs.writeFileSync(conf, `file_lockspace_dir = "${known}"\n`);
  const d = await startDaemon({ stateDir: path.join(root, 'state'), hostId: 'hv-r', extra: ['--config', conf] });
  running.push(d);
  const status = () => JSON.parse(d.cli(['status', '--json']).stdout) as { lockspace: string; lockspaceId: string };
  const id = status().lockspaceId;
  fs.writeFileSync(conf, `file_lockspace_dir = "${other}"\n`);
  d.proc!.kill('SIGHUP');
  await until('moved to the other lockspace', () => status().lockspace === other);
  unmount(m.x!);
  const mark = d.stderr.length;
  fs.writeFileSync(conf, `file_lockspace_dir = "${known}"\n`);
  d.proc!.kill('SIGHUP');
  await until('the move refused', () => d.stderr.slice(mark).includes(`expected lockspace id ${id}`));
  assert.is(status().lockspace, other);
  assert.equal(fs.readdirSync(m.x!), []);
});

test.run();
