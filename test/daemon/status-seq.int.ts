// status.lastSeq counts the acknowledged facts: a script that acquires and then reads the status at
// once (no CLI start-up in between, well inside the ~20 ms between moves into SQLite) sees its fact.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, tmpdir, UUID1, type TestDaemon } from '../helpers/daemon.js';

function call(socket: string, method: string, route: string, body?: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: route, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(text));
        } catch (e) {
          reject(new Error(`${method} ${route}: ${(e as Error).message}: ${text}`));
        }
      });
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

let daemon: TestDaemon | undefined;
test.after.each(async () => {
  await daemon?.kill('SIGKILL');
  daemon = undefined;
});

test('GET /v1/status right after an acquire reports the acquire\'s fact as lastSeq (acknowledged, not moved into SQLite)', async () => {
  const dir = tmpdir();
  daemon = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace') });
  fs.mkdirSync(path.join(dir, 'images'));
  for (let i = 0; i < 20; i++) {
    const disk = path.join(dir, 'images', `d${i}.qcow2`);
    fs.writeFileSync(disk, 'image');
    const r = await call(daemon.socket, 'POST', '/v1/acquire', { vm: { uuid: UUID1 }, disks: [{ path: disk }] });
    assert.is(r.status, 'ok', JSON.stringify(r));
    const st = await call(daemon.socket, 'GET', '/v1/status');
    // The audit reads through the daemon's journal, staged facts included.
    const [granted] = await call(daemon.socket, 'GET', `/v1/audit?disk=${encodeURIComponent(disk)}&kind=LockAcquired`);
    assert.ok(granted, `no LockAcquired for ${disk}`);
    assert.ok(st.lastSeq >= granted.seq, `round ${i}: status.lastSeq ${st.lastSeq} read right after the acquire, its LockAcquired is seq ${granted.seq}`);
    assert.ok(st.journalMovedSeq <= st.lastSeq, `journalMovedSeq ${st.journalMovedSeq} <= lastSeq ${st.lastSeq}`);
  }
  // With the journal idle, every acknowledged fact gets moved into SQLite.
  const last = (await call(daemon.socket, 'GET', '/v1/status')).lastSeq;
  const deadline = Date.now() + 10_000;
  let moved = -1;
  while (Date.now() < deadline && (moved = (await call(daemon.socket, 'GET', '/v1/status')).journalMovedSeq) !== last) await new Promise((r) => setTimeout(r, 50));
  assert.is(moved, last, 'journalMovedSeq reaches lastSeq once the moves have run');
});

test.run();
