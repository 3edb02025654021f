// A take that is given back without a grant (review26d F4): a refused acquisition of several disks
// takes the first disks (writing this host's "exclusive" holder record into their lock files) before
// a later disk is refused, and gives them back. The record must not stay: the found scan of the next
// start after an unclean stop (decisions/0002) reads a record naming this host with a generation the
// journal never gave that disk as a grant the journal forgot, and took the disk: after a restart a
// disk this host never held was locked by it, and another host's VM was refused it.
// Real daemons (two host ids on one lockspace), real OFD locks, SIGKILL.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RECORD_SIZE, SLOT_COUNT, decodeExclusive, decodeShared, slotOffset } from '../../src/engine/holder-record.js';
import { sha256Hex } from '../../src/engine/resolve.js';
import { UUID1, UUID2, UUID3, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { cluster, type Cluster } from '../helpers/cluster-dir.js';
import { kernelHeld } from '../helpers/kernel-locks.js';
import { journalFacts } from '../helpers/settled.js';
import { tracked } from '../helpers/tracked.js';

const { running, track } = tracked(test);

function host(c: Cluster, id: string): Promise<TestDaemon> {
  return startDaemon({ stateDir: path.join(c.dir, `state-${id}`), lockspace: c.lockspace, hostId: id });
}

const lockFile = (c: Cluster, disk: string) => fs.readFileSync(path.join(c.lockspace, sha256Hex(disk)));
const head = (c: Cluster, disk: string) => decodeExclusive(lockFile(c, disk).subarray(0, RECORD_SIZE));
/** The shared records in the lock file's slots (whether or not a lock backs them). */
function slots(c: Cluster, disk: string) {
  const buf = lockFile(c, disk);
  const out = [];
  for (let i = 0; i < SLOT_COUNT; i++) {
    const r = decodeShared(buf.subarray(slotOffset(i), slotOffset(i) + RECORD_SIZE));
    if (r) out.push(r);
  }
  return out;
}

const locks = (d: TestDaemon): string[] => (JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>).map((l) => l.disk);

for (const mode of ['exclusive', 'shared'] as const) {
  test(`a refused acquisition (${mode}) leaves no record naming this host; after SIGKILL and restart the disk it never held is not taken`, async () => {
    const c = cluster('vmlockd-aborted-take-');
    const a = await track(host(c, 'hv-a'));
    const b = await track(host(c, 'hv-b'));
    const first = c.disk('first.img');
    const busy = c.disk('busy.img');
    // Host b holds the second disk exclusively: a's acquisition of both is refused at the second take.
    assert.is(b.cli(['acquire', '--vm', UUID2, busy]).code, 0);
    const extra = mode === 'shared' ? ['--shared'] : [];
    const r = a.cli(['acquire', '--vm', UUID1, '--name', 'never', ...extra, first, busy]);
    assert.is.not(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /refused/);
    assert.not.ok(kernelHeld(c.lockspace, first), 'the refused acquisition kept its lock');
    const rec = head(c, first);
    assert.ok(rec === undefined || rec.mode !== 'exclusive', `the lock file names a holder that does not hold it: ${JSON.stringify(rec)}`);
    assert.equal(slots(c, first), [], 'a shared slot names a holder that does not hold it');

    // An unclean stop (the found scan runs only then), and a start in the same boot.
    await a.kill('SIGKILL');
    await a.start();
    running.push(a);
    assert.equal(locks(a), [], `a disk this host never held is held after the restart: ${a.stderr}`);
    assert.not.ok(kernelHeld(c.lockspace, first), 'the restarted daemon locked the disk it never held');
    assert.not.match(a.stderr, /FOUND/);
    const again = journalFacts(a.opts.stateDir).filter((f) => f.kind === 'Reacquired' || f.kind === 'LeaseLost' || (f.kind === 'LockAcquired' && f.payload.source === 'found'));
    assert.equal(again, [], 'a fact says the disk was taken again');
    // Another host's VM gets it.
    const other = b.cli(['acquire', '--vm', UUID3, first]);
    assert.is(other.code, 0, other.stdout + other.stderr);
  });
}

test.run();
