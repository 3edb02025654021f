// Paths that would make the root daemon act somewhere else: a symlink planted in the lockspace
// under a lock file's or host file's name, a disk named through /proc (which resolves inside the
// daemon, not the VM).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { TestDaemon, UUID1, cli, startDaemon, tmpdir } from '../helpers/daemon.js';
import { oneErrorLine } from '../helpers/one-line.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

test('a symlink named like a lock file is refused as bad input: nothing created or written through it, no lock taken', async () => {
  const dir = tmpdir();
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(lockspace);
  fs.mkdirSync(path.join(dir, 'images'));
  const a = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace, hostId: 'hv-a' });
  running.push(a);
  const dangling = path.join(dir, 'victim-created');
  const empty = path.join(dir, 'victim-empty');
  fs.writeFileSync(empty, '');
  for (const [name, target] of [['a.img', dangling], ['b.img', empty]] as const) {
    const disk = path.join(dir, 'images', name);
    fs.writeFileSync(disk, 'image');
    fs.symlinkSync(target, path.join(lockspace, sha256Hex(disk)));
    const r = a.cli(['acquire', '--vm', UUID1, disk]);
    assert.is(r.code, 2, `${name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, 'symbolic link');
    assert.match(r.stderr, sha256Hex(disk));
  }
  assert.not.ok(fs.existsSync(dangling), 'the daemon created a file through a dangling symlink');
  assert.is(fs.statSync(empty).size, 0, 'the daemon wrote a holder record through a symlink');
  assert.equal(JSON.parse(a.cli(['locks', '--json']).stdout), []);
  assert.is(a.cli(['status']).code, 0);
});

test('a symlink planted at this host\'s file in .hosts stops the start in one line and creates nothing', async () => {
  const dir = tmpdir();
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(lockspace, '.hosts'), { recursive: true });
  const victim = path.join(dir, 'victim');
  fs.symlinkSync(victim, path.join(lockspace, '.hosts', 'hv-b'));
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace, hostId: 'hv-b' });
  const r = cli(d.args());
  assert.is(r.code, 1, r.stdout + r.stderr);
  oneErrorLine(r, 'ELOOP');
  assert.not.ok(fs.existsSync(victim), 'the daemon created a file through the planted host-file link');
});

test('a disk named through /proc is refused as bad input naming /proc; nothing is locked', async () => {
  const dir = tmpdir();
  const a = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'hv-a' });
  running.push(a);
  for (const disk of ['/proc/self/fd/0', '/proc/1/root/etc/hostname', '/proc/../proc/self/exe']) {
    const r = a.cli(['acquire', '--vm', UUID1, disk]);
    assert.is(r.code, 2, `${disk}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, '/proc');
  }
  assert.equal(JSON.parse(a.cli(['locks', '--json']).stdout), []);
});

test.run();
