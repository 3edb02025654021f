// Publication while SQLite lags the staging file (another process holds journal.db's write lock; a
// full disk does the same): the publisher's worker finds nothing new in SQLite and says so. The
// main thread answered each 'idle' with a 'head' wake-up, and the worker's next look came at once:
// one core kept busy for as long as the lock was held (review24d: 9.6 s of CPU in 10 s). Not a speed
// target: a spin detector, against the same hold with publish = 0 in the same run.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { startDaemon, tmpdir } from '../helpers/daemon.js';

const HOLD_MS = 10_000;
const cpuMs = (pid: number) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};

async function burn(extra: string[]): Promise<number> {
  const root = tmpdir('vmlockd-publish-lag-');
  const stateDir = path.join(root, 'state');
  const d = await startDaemon({ stateDir, lockspace: path.join(root, 'ls'), hostId: 'h1', extra });
  try {
    await new Promise((r) => setTimeout(r, 2000));
    const other = new Database(path.join(stateDir, 'journal.db'));
    other.exec('BEGIN IMMEDIATE');
    try {
      const p = path.join(root, 'a.img');
      fs.writeFileSync(p, '');
      assert.is((await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: '11111111-1111-4111-8111-111111111111' }, disks: [{ path: p }] })).status, 200);
      const c0 = cpuMs(d.proc!.pid!);
      await new Promise((r) => setTimeout(r, HOLD_MS));
      return cpuMs(d.proc!.pid!) - c0;
    } finally {
      other.exec('COMMIT');
      other.close();
    }
  } finally {
    await d.kill('SIGTERM');
  }
}

test('SQLite locked by another process while a fact is staged: publication does not keep a core busy', async () => {
  const off = await burn(['--publish', '0']);
  const on = await burn([]);
  assert.ok(on - off < HOLD_MS * 0.2, `publish on: ${on} ms of CPU in ${HOLD_MS} ms (publish off: ${off} ms)`);
});

test.run();
