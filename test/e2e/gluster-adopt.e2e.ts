// Adoption on GlusterFS (invariant 9): a GlusterFS FUSE mount's inode numbers are 64-bit (derived
// from the file's GFID), about half of them at 2^63 or above. Node's bigint stat gives st_ino as a
// signed 64-bit number, the native fstatId as an unsigned one; compared as text, a lock file with
// the high bit set looked "replaced", and its handed-back descriptor was closed and the disk re-taken
// (a gap, or a LeaseLost against the store's own copy). `serve --takeover` on a lockspace on the
// volume must adopt every lock. Needs the volume from .ci/gluster-up.sh (VMLOCKD_E2E_GLUSTER_STATE).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { TestDaemon, UUID1, tmpdir } from '../helpers/daemon.js';
import { glusterEnv } from '../helpers/gluster.js';

const found = glusterEnv(['GLUSTER_MNT_A']);
const test = suite('adoption on GlusterFS: 64-bit inode numbers');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

if (typeof found === 'string') {
  test('GlusterFS adoption suite', () => {
    if (process.env.CI === 'true') assert.unreachable(`the GlusterFS adoption suite cannot run in CI: ${found}`);
    console.log(`  skipped: GlusterFS adoption suite: ${found}`);
  });
} else {
  const env = found;
  test('serve --takeover adopts every lock of a lockspace on GlusterFS, the inodes at 2^63 and above too', async () => {
    const root = tmpdir('vmlockd-gluster-adopt-');
    const lockspace = path.join(env.GLUSTER_MNT_A!, `adopt-${process.pid}-${Date.now()}`);
    const images = path.join(root, 'images');
    fs.mkdirSync(images);
    const disks = Array.from({ length: 12 }, (_, i) => path.join(images, `d${i}.img`));
    for (const d of disks) fs.writeFileSync(d, '');
    const a = { stateDir: path.join(root, 'state'), lockspace, hostId: 'hv-adopt', socket: path.join(root, 'a.sock') };
    const cur = new TestDaemon(a);
    running.push(await cur.start(30_000));
    const acq = cur.cli(['acquire', '--vm', UUID1, '--name', 'vm-a', ...disks]);
    assert.is(acq.code, 0, acq.stderr);
    // The case this is about: at least one lock file whose st_ino has the high bit set.
    const high = disks.filter((d) => fs.statSync(path.join(lockspace, sha256Hex(d)), { bigint: true }).ino < 0n);
    assert.ok(high.length > 0, 'no lock file with an inode at 2^63 or above: 12 GFIDs all below (1 in 4096)');
    const next = new TestDaemon({ ...a, extra: ['--takeover'] });
    running.push(next);
    await next.start(60_000);
    assert.equal(await cur.exit!, { code: 0, signal: null }, cur.stderr);
    const st = JSON.parse(next.cli(['status', '--json']).stdout);
    assert.equal(
      { locks: st.locks, how: st.started.how, adopted: st.started.adopted, retaken: st.started.retaken, lost: st.started.lost },
      { locks: 12, how: 'takeover', adopted: 12, retaken: 0, lost: 0 },
      JSON.stringify(st.started) + next.stderr.split('\n').filter((l) => /dropp|adopt|replaced|closed/i.test(l)).join('\n').slice(0, 3000),
    );
  });
}

test.run();
