// `audit --cluster` and `journal verify --cluster` through a second GlusterFS mount of the lockspace:
// segments written through mount A (as host A's publisher does), read through mount B, whose FUSE client
// caches names and attributes. The read cache must list the host directories again and read each
// segment to its end each time, so a new segment and appended facts show up (once mount B's caches
// let them through), and a torn last line is left for later, not taken for corruption.
// Needs the volume from .ci/gluster-up.sh (VMLOCKD_E2E_GLUSTER_STATE); skips with a reason otherwise.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, encodeSeal, hostSegmentDir, segmentFileName, segmentTempName } from '../../src/journal/segment.js';
import { cli, tmpdir, until } from '../helpers/daemon.js';
import { glusterEnv } from '../helpers/gluster.js';

function mounts(): { a: string; b: string } | string {
  const env = glusterEnv();
  return typeof env === 'string' ? env : { a: env.GLUSTER_MNT_A!, b: env.GLUSTER_MNT_B! };
}

const J = '9a9a9a9a9a9a9a9a';
const found = mounts();
const s = suite('audit --cluster through a second GlusterFS mount');

if (typeof found === 'string') {
  s('GlusterFS cluster-audit suite', () => {
    if (process.env.CI === 'true') assert.unreachable(`the GlusterFS suite cannot run in CI: ${found}`);
    console.log(`  skipped: GlusterFS cluster-audit suite: ${found}`);
  });
} else {
  s('facts appended and a new segment written through mount A are answered through mount B; a torn line waits', async () => {
    const name = `ls-cluster-audit-${process.pid}`;
    const lsA = path.join(found.a, name);
    const lsB = path.join(found.b, name);
    const dir = hostSegmentDir(lsA, 'hv-a');
    fs.mkdirSync(dir, { recursive: true });
    const work = tmpdir('vmlockd-gluster-audit-');
    let prev = GENESIS_HASH;
    let seq = 0;
    let count = 0;
    const line = (kind: string) => {
      seq++;
      count++;
      const r: ChainRow = { seq, at: new Date().toISOString(), host: 'hv-a', kind, resource: null, disk: null, owner: null, owner_name: null, payload: '{}' };
      prev = chainHash(prev, r);
      return encodeFact(r, prev);
    };
    // A segment appears whole with its header (tmp + rename), as the publisher writes it.
    const create = (first: number, body: () => string) => {
      const n = segmentFileName(J, first);
      const header = encodeHeader({ host: 'hv-a', journal: J, first, prev, created: new Date().toISOString() });
      fs.writeFileSync(path.join(dir, segmentTempName(n)), header + body());
      fs.renameSync(path.join(dir, segmentTempName(n)), path.join(dir, n));
      return path.join(dir, n);
    };
    try {
      const seg1 = create(1, () => line('DaemonStarted') + line('OwnerSeen'));
      const audit = () => cli(['audit', '--cluster', '--json', '--lockspace', lsB, '--cache', path.join(work, 'cache'), '--limit', '0']);
      const seqs = () => {
        const r = audit();
        assert.is(r.code, 0, r.stderr);
        return (JSON.parse(r.stdout) as Array<{ seq: number }>).map((f) => f.seq).join(',');
      };
      await until('the first segment through mount B', () => seqs() === '1,2', 30_000);
      // Appended through A (B's attribute cache still says the old size for a while).
      fs.appendFileSync(seg1, line('LockAcquired'));
      await until('the appended fact through mount B', () => seqs() === '1,2,3', 30_000);
      // Half a line: no warning, no fact; the rest: the fact.
      const half = line('LockReleased');
      fs.appendFileSync(seg1, half.slice(0, 25));
      const mid = audit();
      assert.is(mid.code, 0, mid.stderr);
      assert.not.match(mid.stderr, /warning/);
      fs.appendFileSync(seg1, half.slice(25));
      await until('the finished line', () => seqs() === '1,2,3,4', 30_000);
      // Rotation: seal, a new segment (a new name B's directory cache has not seen).
      fs.appendFileSync(seg1, encodeSeal({ last: seq, hash: prev, count }));
      count = 0;
      create(seq + 1, () => line('DaemonStopped'));
      await until('the new segment through mount B', () => seqs() === '1,2,3,4,5', 30_000);
      const v = cli(['journal', 'verify', '--cluster', '--lockspace', lsB, '--journal', '/nonexistent/journal.db']);
      assert.is(v.code, 0, v.stdout + v.stderr);
      assert.match(v.stdout, /host hv-a journal 9a9a9a9a9a9a9a9a: ok \(5 facts, seq 1\.\.5, 2 segment\(s\)/);
    } finally {
      fs.rmSync(lsA, { recursive: true, force: true });
    }
  });
}

s.run();
