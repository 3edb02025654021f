// A lock released and taken again between the take-over's END and the old daemon's stop gets a new
// open file description, usually under the very same descriptor number (the lowest free one). It must
// be sent after END too (review26a F1: afterStop() sent only descriptors whose name and number it had
// not sent before END, so the new daemon held the dead, unlocked description, and once the old daemon
// exited nobody held the disk while the journal said vm1 did).
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, tmpdir, until } from '../helpers/daemon.js';
import { HandoffPlayer } from '../helpers/handoff.js';

const test = suite('takeover: a lock re-taken during the hand-off is handed over');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

test('release + acquire of one disk between END and STOP: the new description reaches the new daemon', async () => {
  const root = tmpdir('vmlockd-r26a-f1-');
  const lockspace = path.join(root, 'lockspace');
  const disk = path.join(root, 'd1.qcow2');
  fs.writeFileSync(disk, '');
  const a = new TestDaemon({ stateDir: path.join(root, 'state-a'), lockspace, hostId: 'hv-a', socket: path.join(root, 'a.sock') });
  running.push(await a.start());
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', disk]).code, 0);
  // The new daemon's half: TAKEOVER, every lock until END.
  const play = new HandoffPlayer(path.join(root, 'state-a'));
  play.send('TAKEOVER\n');
  play.readUntil('END');
  assert.is(play.got.length, 1);
  // Commands still arrive at the old daemon (a real new daemon's STOP is a moment later; a request
  // in flight at STOP is answered too): vm1 lets go of its disk and takes it again.
  // One keep-alive connection (as a long-lived client keeps it): no new accepted socket takes the
  // descriptor number the release frees, so the re-take's open gets it.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const post = (p: string, body: unknown) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request({ socketPath: a.socket, path: p, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
        let t = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (t += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: t }));
      });
      req.on('error', reject);
      req.end(data);
    });
  const rel = await post('/v1/release', { vm: { uuid: UUID1 }, disks: [disk] });
  assert.is(rel.status, 200, rel.body);
  const acq = await post('/v1/acquire', { vm: { uuid: UUID1, name: 'vm1' }, disks: [{ path: disk }] });
  assert.is(acq.status, 200, acq.body);
  agent.destroy();
  play.send('STOP\n');
  play.readUntil('DONE');
  const afterEnd = play.text.slice(play.text.indexOf('END\n') + 4);
  // The old daemon is up to UP: the new one now holds every descriptor it was given.
  play.send('UP\n');
  assert.equal(await a.exit!, { code: 0, signal: null }, a.stderr);
  const b = new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace, hostId: 'hv-b', socket: path.join(root, 'b.sock') });
  running.push(await b.start());
  const stolen = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]);
  assert.ok(/FDS [^\n]*lock-/.test(afterEnd), `the re-taken lock was not sent after END (old daemon's log: ${a.stderr.split('\n').filter((l) => l.includes('takeover')).join(' | ')})`);
  assert.is(stolen.code, 3, `another host acquired vm1's disk after the hand-off: ${stolen.stdout}${stolen.stderr}`);
  play.goAway();
});

test.run();
