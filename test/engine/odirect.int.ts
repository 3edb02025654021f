// Holder records under O_DIRECT on a filesystem that enforces its alignment rules: ext4 on a loop
// device (mkfs.ext4 on a file, losetup, mount). Real files, real OFD locks, the locker's own code with
// O_DIRECT on (as on a cluster filesystem). Before page-aligned buffers, records written from
// Buffer.alloc memory failed with EINVAL at random (about one in ten here, when the buffer crossed a
// page boundary) and verification reported false losses (issue 16.8).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alignedScratch, readAligned, writeAligned } from '../../src/engine/aligned-io.js';
import { decodeExclusive, encodeExclusive } from '../../src/engine/holder-record.js';
import { Locker, inspectLockFile } from '../../src/engine/locker.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState } from '../../src/engine/state.js';
import type { Intent, Mode, Owner } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';
import { TestStore } from '../helpers/descriptor-store.js';

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim() };
}

interface Mount {
  readonly dir: string;
  cleanup(): void;
}

/** ext4 on a loop device, or the reason it cannot be made here. */
function loopExt4(): Mount | string {
  const base = tmpdir('vmlockd-odirect-');
  const image = path.join(base, 'fs.img');
  const dir = path.join(base, 'mnt');
  fs.mkdirSync(dir);
  fs.writeFileSync(image, '');
  fs.truncateSync(image, 64 * 1024 * 1024);
  const mkfs = run('mkfs.ext4', ['-q', '-F', image]);
  if (!mkfs.ok) return `mkfs.ext4 failed: ${mkfs.out}`;
  const loop = run('losetup', ['-f', '--show', image]);
  if (!loop.ok) return `losetup failed (no loop devices, or not root): ${loop.out}`;
  const dev = loop.out.split('\n')[0]!;
  const mnt = run('mount', ['-t', 'ext4', dev, dir]);
  if (!mnt.ok) {
    run('losetup', ['-d', dev]);
    return `mount of ${dev} failed: ${mnt.out}`;
  }
  return {
    dir,
    cleanup: () => {
      run('umount', [dir]);
      run('losetup', ['-d', dev]);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

const owner = (i: number): Owner => ({ uuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, name: `vm${i}` });

function take(locker: Locker, lockspace: string, disk: string, o: Owner, mode: Mode = 'exclusive') {
  const d = resolveDisk({ path: disk, mode }, { fileLockspaceDir: lockspace }, initialState());
  const prepared = locker.prepare([{ kind: 'lock', disk: d, owner: o, how: 'take' } as Intent], { at: new Date().toISOString(), source: 'test' });
  prepared.commit();
  return { prepared, resource: d.resource };
}

let mount: Mount | string;
test.before(() => {
  mount = loopExt4();
  if (typeof mount === 'string') console.log(`  SKIPPED: O_DIRECT alignment cannot be tested here: ${mount}`);
});
test.after(() => {
  if (typeof mount !== 'string') mount.cleanup();
});

test('the scratch area is page-aligned: O_DIRECT I/O from it never fails, at any page offset', () => {
  if (typeof mount === 'string') return;
  const file = path.join(mount.dir, 'probe');
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DIRECT, 0o600);
  try {
    assert.ok(alignedScratch().length >= 16896);
    for (let i = 0; i < 300; i++) {
      const data = Buffer.alloc(512, 0x41 + (i % 26));
      assert.is(writeAligned(fd, data, 512 * (i % 33)), 512);
      assert.equal(readAligned(fd, 512, 512 * (i % 33)), data);
    }
  } finally {
    fs.closeSync(fd);
  }
});

test('200 exclusive and 40 shared records under O_DIRECT on ext4: every acquire succeeds, verification finds no loss, a second host reads the holder', () => {
  if (typeof mount === 'string') return;
  const lockspace = path.join(mount.dir, 'lockspace');
  const a = new Locker('hv-a', { fileLockspaceDir: lockspace, syncRecords: true });
  const b = new Locker('hv-b', { fileLockspaceDir: lockspace, syncRecords: true });
  const failures: string[] = [];
  const files: string[] = [];
  try {
    for (let i = 0; i < 240; i++) {
      const disk = `/images/disk-${i}.qcow2`;
      try {
        const { prepared, resource } = take(a, lockspace, disk, owner(i), i < 200 ? 'exclusive' : 'shared');
        if (prepared.outcome.status !== 'ok') failures.push(`${disk}: ${prepared.outcome.message}`);
        files.push(resource.id);
      } catch (e) {
        failures.push(`${disk}: ${(e as Error).message}`);
      }
    }
    assert.equal(failures.slice(0, 5), [], `${failures.length} of 240 acquires failed`);
    for (let round = 0; round < 5; round++) assert.equal(a.verify(), [], `verification round ${round}`);
    for (const [i, file] of files.entries()) {
      const seen = inspectLockFile(file, { direct: true });
      assert.is(seen.state, i < 200 ? 'exclusive' : 'shared', file);
      assert.is(seen.holders[0]?.host, 'hv-a', file);
      if (i < 200) assert.is(seen.generation, 1, file);
    }
    // Another host's refused take reads the holder record through its own O_DIRECT description.
    const refused = take(b, lockspace, '/images/disk-7.qcow2', owner(1000));
    assert.is(refused.prepared.outcome.status, 'refused');
    assert.match(refused.prepared.outcome.status === 'refused' ? refused.prepared.outcome.message : '', 'vm7');
  } finally {
    a.closeAll();
    b.closeAll();
  }
});

// engine29 item 3 (review28b LOW): an adopted exclusive lock's record names the process that handed its
// descriptor over; Locker.refreshRecord() rewrote it with this pid through fs.writeSync from the
// Buffer encodeExclusive allocates, on a descriptor that is O_DIRECT when the lockspace is on a
// cluster filesystem (openFlags: syncRecords; the flag belongs to the open file description, so the
// store's copy has it too). On a filesystem that enforces O_DIRECT's alignment that write failed with
// EINVAL whenever the buffer crossed a page boundary, silently: the record kept the old pid. Fails
// before (about one in eight records keeps the old pid); passes after (the aligned path, decision 0008).
test('adopted exclusive descriptors under O_DIRECT on ext4: every record is rewritten with this process\'s pid', () => {
  if (typeof mount === 'string') return;
  const lockspace = path.join(mount.dir, 'lockspace-adopt');
  const store = new TestStore();
  const a = new Locker('hv-a', { fileLockspaceDir: lockspace, syncRecords: true, store });
  let b: Locker | undefined;
  const state = initialState();
  const files: string[] = [];
  const OLD_PID = 4_000_000;
  try {
    for (let i = 0; i < 128; i++) {
      const { prepared, resource } = take(a, lockspace, `/images/adopt-${i}.qcow2`, owner(i));
      assert.is(prepared.outcome.status, 'ok');
      for (const f of prepared.facts) evolve(state, f);
      files.push(resource.id);
    }
    // The records as the process that handed the descriptors over left them: its pid.
    for (const file of files) {
      const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
      try {
        const r = decodeExclusive(readAligned(fd, 512, 0))!;
        assert.is(r.host, 'hv-a');
        writeAligned(fd, encodeExclusive({ ...r, pid: OLD_PID }), 0);
      } finally {
        fs.closeSync(fd);
      }
    }
    a.closeAll();
    // The next process (same host) is handed the descriptors (systemd's store) and adopts them.
    b = new Locker('hv-a', { fileLockspaceDir: lockspace, syncRecords: true, store });
    const adoption = b.adopt(state, store.passed(), new Date().toISOString(), 'adopted');
    assert.equal(adoption.dropped, [], JSON.stringify(adoption.dropped));
    assert.is(b.size, files.length);
    const stale = files.filter((file) => inspectLockFile(file, { direct: true }).holders[0]?.pid !== process.pid);
    assert.equal(b.verify(), []);
    // Released by the adopting process: each record says free at the generation it had. The
    // adoption reads its generation from the record (ownRecord) through the same O_DIRECT
    // description; a read refused there left it unknown, and the release wrote no record at all (the
    // file kept "exclusive", and a hand-over's reservation was never written).
    const gens = files.map((file) => decodeExclusive(readFile(file))!.gen);
    for (const [i, file] of files.entries()) {
      const disk = `/images/adopt-${i}.qcow2`;
      const d = resolveDisk({ path: disk, mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
      const p = b.prepare([{ kind: 'unlock', resource: d.resource, path: disk, owner: owner(i), how: 'drop' } as Intent], { at: new Date().toISOString(), source: 'test' });
      assert.is(p.outcome.status, 'ok', file);
      p.commit();
    }
    const notFreed = files.filter((file, i) => {
      const r = decodeExclusive(readFile(file));
      return r?.mode !== 'free' || r.gen !== gens[i];
    });
    assert.equal(stale.length, 0, `${stale.length} of ${files.length} adopted records still name the old process (pid ${OLD_PID}): the refresh was refused under O_DIRECT (and ${notFreed.length} released ones do not say free)`);
    assert.equal(notFreed.length, 0, `${notFreed.length} of ${files.length} released records do not say free at their generation: ${JSON.stringify(notFreed.slice(0, 2).map((f) => decodeExclusive(readFile(f))))}`);
  } finally {
    a.closeAll();
    b?.closeAll();
    store.clear();
  }
});

function readFile(file: string): Buffer {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  try {
    return readAligned(fd, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
}

test.run();
