// A take whose facts cannot be journaled (a full state directory: the command is refused with
// VMLOCKD_ERR_JOURNAL and its lock given back, pipeline abort()) must not leave this host's holder
// record in the lock file (review26d F4): the found scan of the next start after an unclean stop took
// it for a grant the journal forgot and locked a disk this host was never granted. Both front doors:
// the control socket and the virtlockd protocol. Real daemons, a real tmpfs, real OFD locks, SIGKILL.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { RECORD_SIZE, decodeExclusive } from '../../src/engine/holder-record.js';
import { LockClient, LockRpcError } from '../../src/events/virtlockd/client.js';
import { TestDaemon, tmpdir } from '../helpers/daemon.js';
import { kernelHeld, lockedByAnyone } from '../helpers/kernel-locks.js';
import { UUID_A, serve } from '../helpers/protocol-serve.js';
import { journalFacts } from '../helpers/settled.js';
import { fill, smallStateDir, smallTmpfs, unmountAll } from '../helpers/state-dir.js';
import { sha256Hex } from '../../src/engine/resolve.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
});
test.after(() => unmountAll(mounts));

const uuid = (i: number) => `aaaaaaaa-0000-4000-8000-${String(i).padStart(12, '0')}`;
const headOf = (file: string) => decodeExclusive(fs.readFileSync(file).subarray(0, RECORD_SIZE));

/** No fact of the restarted daemon says `file` (a lock file) was taken again. */
function noRetake(stateDir: string, file: string): void {
  const again = journalFacts(stateDir).filter((f) => (f.kind === 'Reacquired' || f.kind === 'LeaseLost' || f.kind === 'LockAcquired') && f.payload.resource === file);
  assert.equal(again, [], 'a fact says the refused disk was taken again');
}

test('control socket: an acquisition refused because its facts cannot be journaled leaves no record; after SIGKILL and restart that disk is not taken', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '4m');
  const d = new TestDaemon({ stateDir: state, lockspace, hostId: 'hv-a', socket: path.join(dir, 'vmlockd.sock') });
  daemons.push(d);
  await d.start();
  const filler = fill(state);
  let refused: number | undefined;
  for (let i = 1; i < 20_000 && refused === undefined; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    if (r.status !== 200) {
      assert.is((r.body as { code: string }).code, 'VMLOCKD_ERR_JOURNAL', JSON.stringify(r.body));
      refused = i;
    }
  }
  assert.ok(refused, 'no acquisition was refused on a full disk');
  const file = path.join(lockspace, sha256Hex(disk(refused)));
  assert.not.ok(kernelHeld(lockspace, disk(refused)), 'the refused acquisition kept its lock');
  const rec = headOf(file);
  assert.ok(rec === undefined || rec.mode !== 'exclusive', `the lock file names a holder that does not hold it: ${JSON.stringify(rec)}`);

  await d.kill('SIGKILL');
  fs.unlinkSync(filler);
  await d.start();
  assert.not.ok(kernelHeld(lockspace, disk(refused)), `the restarted daemon locked the disk it was never granted: ${d.stderr}`);
  assert.not.match(d.stderr, /FOUND/);
  noRetake(state, file);
});

test('virtlockd protocol: an ACQUIRE_RESOURCE refused because its facts cannot be journaled leaves no record; after SIGKILL and restart that lease is not taken', async () => {
  const dir = tmpdir('vmlockd-abort-proto-');
  smallTmpfs(path.join(dir, 'state'), mounts, '4m');
  const leases = path.join(dir, 'leases');
  fs.mkdirSync(leases);
  const s = await serve(dir);
  daemons.push(s.daemon);
  const c = await LockClient.connect(s.socket);
  try {
    await c.createLockspace(leases);
    await c.register({ uuid: UUID_A, name: 'vm-a', id: 1, pid: process.pid });
    const filler = fill(path.join(dir, 'state'));
    let refused: string | undefined;
    for (let i = 1; i < 20_000 && refused === undefined; i++) {
      const name = `lease-${i}`;
      try {
        await c.acquire(leases, name, { autocreate: true });
      } catch (e) {
        assert.instance(e, LockRpcError);
        assert.match((e as Error).message, /journal/);
        refused = name;
      }
    }
    assert.ok(refused, 'no acquisition was refused on a full disk');
    const file = path.join(leases, refused);
    assert.not.ok(lockedByAnyone(file), 'the refused acquisition kept its lock');
    const rec = headOf(file);
    assert.ok(rec === undefined || rec.mode !== 'exclusive', `the lease names a holder that does not hold it: ${JSON.stringify(rec)}`);

    await s.daemon.kill('SIGKILL');
    fs.unlinkSync(filler);
    await s.daemon.start();
    assert.not.ok(lockedByAnyone(file), `the restarted daemon locked the lease it was never granted: ${s.daemon.stderr}`);
    assert.not.match(s.daemon.stderr, /FOUND/);
    noRetake(path.join(dir, 'state'), file);
  } finally {
    await c.close().catch(() => {});
  }
});

test.run();
