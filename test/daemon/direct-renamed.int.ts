// A disk locked in place (`--lockspace ""`, also the virtlockd protocol's default lockspace) and
// renamed under its lock while its VM runs: QEMU writes it through its descriptor, and the lock is on
// that disk, not on its name. review27 F4: `serve --takeover` (and an adoption from systemd's store,
// the same adopt()) compared the handed-back descriptor with the disk's OLD path, closed it and
// re-took the old path (nothing, or a new file there): the VM's disk was given away. review27 F5: the
// verifier took the renamed disk for a removed or replaced lock file, declared it lost and dropped
// the description that locked the VM's disk. Now both judge a direct lock by its description (its
// identity is the journaled one, its lock re-asserts), and a path that no longer names the disk is a
// warning, said once. A restart that has no descriptor of the disk (SIGKILL, no store) records
// LeaseLost instead of locking whatever file the old path names now.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, UUID3, startDaemon, tmpdir } from '../helpers/daemon.js';
import { journalFacts } from '../helpers/settled.js';
import { tracked } from '../helpers/tracked.js';

const { running, track } = tracked(test);

function lines(d: TestDaemon, re: RegExp): string[] {
  return (d.stdout + d.stderr).split('\n').filter((l) => re.test(l));
}

function setup(prefix: string, extra: string[] = []) {
  const root = tmpdir(prefix);
  const disk = path.join(root, 'a.img');
  const moved = path.join(root, 'a-moved.img');
  fs.writeFileSync(disk, Buffer.alloc(1 << 16));
  const opts = { stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock'), extra };
  const other = () => track(startDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }));
  return { root, disk, moved, opts, other };
}

for (const replaced of [false, true]) {
  test(`serve --takeover adopts a direct lock on a disk renamed under its lock${replaced ? ', a new file at its old path' : ''}`, async () => {
    const { disk, moved, opts, other } = setup('vmlockd-direct-renamed-takeover-');
    const a = await track(startDaemon(opts));
    assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', disk]).code, 0);
    fs.renameSync(disk, moved);
    if (replaced) fs.writeFileSync(disk, Buffer.alloc(1 << 16));
    const b = await other();
    assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', moved]).code, 3, 'held before the take-over');
    const next = new TestDaemon({ ...opts, extra: ['--takeover'] });
    running.push(next);
    await next.start(30_000);
    assert.equal(await a.exit!, { code: 0, signal: null }, a.stderr);
    const st = JSON.parse(next.cli(['status', '--json']).stdout);
    assert.equal({ how: st.started.how, adopted: st.started.adopted, dropped: st.started.dropped, retaken: st.started.retaken, lost: st.started.lost }, { how: 'takeover', adopted: 1, dropped: 0, retaken: 0, lost: 0 }, JSON.stringify(st.started));
    assert.is(lines(next, /renamed under its lock/).length, 1, next.stdout + next.stderr);
    const steal = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', moved]);
    assert.is(steal.code, 3, `vm2 was granted ${moved} (vm1's disk, renamed) after the take-over: ${steal.stdout}${steal.stderr}`);
    // The file at the old path is another disk that nobody locks (not vm1's).
    if (replaced) assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]).code, 0, 'the new file at the old path is not locked');
    // On this host the renamed disk is vm1's under its new name too (same inode and birth time).
    assert.is(next.cli(['acquire', '--vm', UUID3, '--name', 'vm3', moved]).code, 3, 'another VM of this host is refused the renamed disk');
    if (replaced) {
      // The old name is the held resource's, but the file there is another disk: not "already" vm1's
      // (nothing locks that file), nor "held by vm1" for another VM: refused, saying why.
      for (const [uuid, name] of [[UUID1, 'vm1'], [UUID3, 'vm3']] as const) {
        const r = next.cli(['acquire', '--vm', uuid, '--name', name, disk]);
        assert.is(r.code, 2, `${name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, /is another file than the disk VM vm1 holds locked in place under that name/);
      }
    }
    assert.equal(journalFacts(opts.stateDir, 'LeaseLost'), []);
    // vm1 releases it by its new name: the disk is free for others.
    if (replaced) assert.is(b.cli(['release', '--vm', UUID2, disk]).code, 0);
    assert.is(next.cli(['release', '--vm', UUID1, moved]).code, 0);
    assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', moved]).code, 0, 'released');
  });
}

for (const replaced of [false, true]) {
  test(`verifier: a direct lock on a disk renamed under its lock${replaced ? ', a new file at its old path' : ''} stays held, and the rename is said once`, async () => {
    const { disk, moved, opts, other } = setup('vmlockd-direct-renamed-verify-', ['--verify-interval', '1']);
    const a = await track(startDaemon(opts));
    assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', disk]).code, 0);
    fs.renameSync(disk, moved);
    if (replaced) fs.writeFileSync(disk, Buffer.alloc(1 << 16));
    // A few verifier rounds.
    await new Promise((r) => setTimeout(r, 4000));
    const b = await other();
    const steal = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', moved]);
    assert.is(steal.code, 3, `vm2 was granted ${moved}, vm1's disk (renamed): ${steal.stdout}${steal.stderr}\n${lines(a, /lost|taken again/i).join('\n')}`);
    assert.equal(journalFacts(opts.stateDir, 'LeaseLost'), []);
    assert.equal(journalFacts(opts.stateDir, 'Reacquired'), []);
    const said = lines(a, /renamed under its lock/);
    assert.is(said.length, 1, a.stdout + a.stderr);
    assert.match(said[0]!, / warning /);
    assert.ok(said[0]!.includes(replaced ? 'is another file now' : 'no disk is at'), said[0]);
    if (replaced) assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]).code, 0, 'the new file at the old path is not locked');
    const st = JSON.parse(a.cli(['status', '--json']).stdout);
    assert.is(st.locks, 1);
    // vm1 releases its disk by the name it knows (the old one): the renamed disk is free.
    assert.is(a.cli(['release', '--vm', UUID1, disk]).code, 0);
    assert.is(JSON.parse(a.cli(['status', '--json']).stdout).locks, 0);
    if (replaced) assert.is(b.cli(['release', '--vm', UUID2, disk]).code, 0);
    assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', moved]).code, 0, 'released');
  });
}

test('verifier: renaming the directory of several direct-locked disks keeps every lock', async () => {
  const root = tmpdir('vmlockd-direct-renamed-dir-');
  const dir = path.join(root, 'images');
  const dir2 = path.join(root, 'images-moved');
  fs.mkdirSync(dir);
  for (const n of ['vm1.img', 'vm3.img']) fs.writeFileSync(path.join(dir, n), Buffer.alloc(1 << 16));
  const a = await track(startDaemon({ stateDir: path.join(root, 'state-a'), lockspace: '', hostId: 'hv-a', socket: path.join(root, 'a.sock'), extra: ['--verify-interval', '1'] }));
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', path.join(dir, 'vm1.img')]).code, 0);
  assert.is(a.cli(['acquire', '--vm', UUID3, '--name', 'vm3', path.join(dir, 'vm3.img')]).code, 0);
  fs.renameSync(dir, dir2);
  await new Promise((r) => setTimeout(r, 3500));
  const b = await track(startDaemon({ stateDir: path.join(root, 'state-b'), lockspace: '', hostId: 'hv-b', socket: path.join(root, 'b.sock') }));
  for (const n of ['vm1.img', 'vm3.img']) {
    const steal = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', path.join(dir2, n)]);
    assert.is(steal.code, 3, `vm2 was granted ${n}: ${steal.stdout}${steal.stderr}`);
  }
  assert.equal(journalFacts(path.join(root, 'state-a'), 'LeaseLost'), []);
  assert.is(lines(a, /renamed under its lock/).length, 2, a.stdout + a.stderr);
});

for (const replaced of [false, true]) {
  test(`a restart with no descriptor of a renamed direct-locked disk${replaced ? ' (a new file at its old path)' : ''} records LeaseLost and locks nothing else`, async () => {
    const { disk, moved, opts, other } = setup('vmlockd-direct-renamed-restart-');
    const a = await track(startDaemon(opts));
    assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', disk]).code, 0);
    fs.renameSync(disk, moved);
    if (replaced) fs.writeFileSync(disk, Buffer.alloc(1 << 16));
    // No descriptor store: the lock goes with the process.
    await a.kill('SIGKILL');
    await a.start();
    running.push(a);
    const st = JSON.parse(a.cli(['status', '--json']).stdout);
    assert.equal({ retaken: st.started.retaken, lost: st.started.lost, locks: st.locks }, { retaken: 0, lost: 1, locks: 0 }, JSON.stringify(st));
    const lost = journalFacts(opts.stateDir, 'LeaseLost');
    assert.is(lost.length, 1);
    assert.match(lost[0]!.payload.reason, replaced ? /is another file now/ : /no disk is at/);
    assert.match(lost[0]!.payload.reason, /no descriptor of it was handed back/);
    assert.equal(journalFacts(opts.stateDir, 'Reacquired'), []);
    // The new file at the old path is not locked in the renamed disk's place.
    const b = await other();
    if (replaced) assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]).code, 0);
  });
}

test.run();
