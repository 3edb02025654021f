// A loop device is another name of the file it reads (review27 F1): VM1 held /x/a.img, VM2 was granted
// /dev/loopN backed by that image (the loop node had its own identity, blk:<rdev>, and its own lock
// file or locked node), and both wrote one disk. Now a loop device (a loop device over a loop device
// too) resolves to its backing file: one resource, and in direct mode one locked inode (the image).
// The journaled identity of a held disk stays what it was when a loop device is re-bound to another
// file, and a loop device over a deleted file is refused (no path names its disk).
// Needs root and losetup (each test says "skipped" otherwise). This kernel has no partition tables
// (CONFIG_MSDOS_PARTITION off), so loopNpM is covered against a sysfs tree in resolve-loop.int.ts.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, UUID3, cli, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

const running: TestDaemon[] = [];
const loops: string[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
  for (const l of loops.splice(0).reverse()) spawnSync('losetup', ['-d', l]);
});

function loopOf(file: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const r = spawnSync('losetup', ['-f', '--show', file], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const dev = r.stdout.trim();
  loops.push(dev);
  return dev;
}

function image(dir: string, name: string): string {
  const img = path.join(dir, name);
  fs.writeFileSync(img, Buffer.alloc(1024 * 1024));
  return img;
}

for (const mode of ['file lockspace', 'direct'] as const) {
  for (const first of ['image', 'loop'] as const) {
    test(`${mode}: a loop device over a held image is the same disk (${first} taken first)`, async () => {
      const dir = tmpdir();
      const img = image(dir, 'a.img');
      const loop = loopOf(img);
      if (loop === undefined) return void console.log('  (no root or no losetup: skipped)');
      const d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: mode === 'direct' ? '' : path.join(dir, 'lockspace'), hostId: 'hv-a' });
      running.push(d);
      const [p1, p2] = first === 'image' ? [img, loop] : [loop, img];
      const a = d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', p1]);
      assert.is(a.code, 0, a.stdout + a.stderr);
      const b = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', p2]);
      assert.is(b.code, 3, `vm2 was granted ${p2} while vm1 holds ${p1}, the same disk: ${b.stdout}${b.stderr}`);
    });
  }
}

test('a loop device over a loop device over a held image is that image', async () => {
  const dir = tmpdir();
  const img = image(dir, 'a.img');
  const inner = loopOf(img);
  const outer = inner === undefined ? undefined : loopOf(inner);
  if (outer === undefined) return void console.log('  (no root or no losetup: skipped)');
  const d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'hv-a' });
  running.push(d);
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', img]).code, 0);
  const b = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', outer]);
  assert.is(b.code, 3, `${outer} over ${inner} over ${img}: ${b.stdout}${b.stderr}`);
});

test('who and audit name a loop device by its image; re-bound to another file, the held disk stays the image and its release by the loop path frees it', async () => {
  const dir = tmpdir();
  const a = image(dir, 'a.img');
  const b = image(dir, 'b.img');
  const loop = loopOf(a);
  if (loop === undefined) return void console.log('  (no root or no losetup: skipped)');
  const ls = path.join(dir, 'lockspace');
  const state = path.join(dir, 'state');
  const d = await startDaemon({ stateDir: state, lockspace: ls, hostId: 'hv-a' });
  running.push(d);
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', loop]).code, 0);
  settled(state);
  const who = cli(['who', a, '--lockspace', ls]);
  assert.match(who.stdout, 'vm1', who.stdout + who.stderr);
  const audit = cli(['audit', '--disk', loop, '--state-dir', state, '--json']);
  assert.is(audit.code, 0, audit.stderr);
  assert.ok(audit.stdout.includes(UUID1), audit.stdout);
  // Re-bound (the VM does not have it open): /dev/loopN now reads b.img.
  if (spawnSync('losetup', ['-d', loop]).status !== 0) return void console.log('  (cannot detach: skipped)');
  loops.splice(loops.indexOf(loop), 1);
  if (spawnSync('losetup', [loop, b]).status !== 0) return void console.log('  (loop device taken by another process meanwhile: skipped)');
  loops.push(loop);
  const again = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', a]);
  assert.is(again.code, 3, `a.img is still vm1's: ${again.stdout}${again.stderr}`);
  const other = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', loop]);
  assert.is(other.code, 0, `${loop} now reads b.img, which nobody holds: ${other.stdout}${other.stderr}`);
  const rel = d.cli(['release', '--vm', UUID1, loop]);
  assert.is(rel.code, 0, rel.stdout + rel.stderr);
  const after = d.cli(['acquire', '--vm', UUID3, '--name', 'vm3', a]);
  assert.is(after.code, 0, `vm1's release of ${loop} freed a.img: ${after.stdout}${after.stderr}`);
});

test('a loop device over a deleted file is refused: no path names its disk', async () => {
  const dir = tmpdir();
  const a = image(dir, 'a.img');
  const loop = loopOf(a);
  if (loop === undefined) return void console.log('  (no root or no losetup: skipped)');
  fs.unlinkSync(a);
  const d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'hv-a' });
  running.push(d);
  const r = d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', loop]);
  assert.is(r.code, 2, r.stdout + r.stderr);
  assert.match(r.stderr, 'deleted');
});

test.run();
