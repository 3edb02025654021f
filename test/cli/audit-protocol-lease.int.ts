// audit --disk PATH finds a disk held through a virtlockd-protocol lease (review25a F12, MEDIUM: false
// audit). libvirt's lockd plugin names a disk's lease sha256(disk path) in its lockspace directory, and
// the lease's facts name that lock file as their disk, not PATH: audit --disk PATH answered "nobody
// held" (after another VM's refusal, a fact naming PATH) or "unknown disk" (before any). Every audit
// question now asks under every name the journal gives the disk, and says which name a fact used.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { TestDaemon, UUID1, UUID2, cli, tmpdir } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

function get(socket: string, target: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: socket, path: target }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      })
      .on('error', reject);
  });
}

let d: TestDaemon | undefined;
let c: LockClient | undefined;
test.after.each(async () => {
  await c?.close().catch(() => undefined);
  c = undefined;
  await d?.kill('SIGKILL');
});

async function leased(): Promise<{ dir: string; ls: string; state: string; disk: string; lease: string }> {
  const dir = tmpdir();
  const ls = path.join(dir, 'ls');
  const disk = path.join(dir, 'disk.img');
  fs.writeFileSync(disk, '');
  const vsock = path.join(dir, 'virtlockd.sock');
  const state = path.join(dir, 'state');
  d = await new TestDaemon({ stateDir: state, lockspace: ls, hostId: 'hv-a', extra: ['--virtlockd-socket', vsock] }).start();
  c = await LockClient.connect(vsock);
  await c.createLockspace(ls);
  await c.register({ uuid: UUID1, name: 'vm1', id: 1, pid: process.pid });
  await c.acquire(ls, sha256Hex(disk), { autocreate: true }); // what the lockd plugin sends for `disk`
  return { dir, ls, state, disk, lease: path.join(ls, sha256Hex(disk)) };
}

test('after another VM is refused PATH, every audit question about PATH names the VM holding it through a lease', async () => {
  const { state, disk, lease } = await leased();
  const refused = d!.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]);
  assert.is(refused.code, 3, refused.stdout + refused.stderr); // the lease does exclude vm2
  settled(state);
  const sd = ['--state-dir', state];

  const at = new Date(Date.now() + 1000).toISOString();
  const holders = cli(['audit', '--disk', disk, '--at', at, ...sd]);
  assert.is(holders.code, 0, holders.stderr);
  assert.match(holders.stdout, `${disk} at ${at}:`);
  assert.match(holders.stdout, 'vm1');
  assert.match(holders.stdout, lease, 'the holder line says the hold was journaled under the lease name');
  assert.match(holders.stderr, `as ${lease}`);
  const json = JSON.parse(cli(['audit', '--disk', disk, '--at', at, '--json', ...sd]).stdout);
  assert.is(json.disk, disk);
  assert.equal(json.holders.map((h: any) => [h.owner.name, h.as]), [['vm1', lease]]);

  const history = cli(['audit', '--disk', disk, '--csv', ...sd]);
  assert.is(history.code, 0, history.stderr);
  const kinds = history.stdout.trim().split('\n').slice(1).map((l) => l.split(',').slice(3, 5).join(' '));
  assert.equal(kinds, [`LockAcquired ${lease}`, `LockRefused ${disk}`], history.stdout);

  const timeline = cli(['audit', '--disk', disk, '--timeline', '--csv', ...sd]);
  assert.is(timeline.code, 0, timeline.stderr);
  assert.match(timeline.stdout, new RegExp(`^${disk},${UUID1},vm1,exclusive,`, 'm'));

  const conflicts = cli(['audit', '--disk', disk, '--conflicts', '--csv', ...sd]);
  assert.match(conflicts.stdout, 'LockRefused');

  const api = await get(d!.socket, `/v1/audit?disk=${encodeURIComponent(disk)}`);
  assert.is(api.status, 200);
  assert.equal(api.body.map((f: any) => [f.kind, f.disk]), [['LockAcquired', lease], ['LockRefused', disk]]);
});

test('before any fact names PATH, audit --disk PATH --at names the VM holding it through a lease', async () => {
  const { state, disk, lease } = await leased();
  settled(state);
  const at = new Date(Date.now() + 1000).toISOString();
  const holders = cli(['audit', '--disk', disk, '--at', at, '--json', '--state-dir', state]);
  assert.is(holders.code, 0, holders.stdout + holders.stderr);
  const json = JSON.parse(holders.stdout);
  assert.is(json.disk, disk);
  assert.equal(json.holders.map((h: any) => [h.owner.name, h.as]), [['vm1', lease]]);
  const history = cli(['audit', '--disk', disk, '--state-dir', state]);
  assert.is(history.code, 0, history.stderr);
  assert.match(history.stdout, 'LockAcquired');
});

test('a lease in a lockspace directory no daemon start named is found too (by the disk_names index)', async () => {
  const { dir, state } = await leased();
  const other = path.join(dir, 'other-ls');
  const disk3 = path.join(dir, 'disk3.img');
  fs.writeFileSync(disk3, '');
  await c!.createLockspace(other);
  await c!.acquire(other, sha256Hex(disk3), { autocreate: true });
  settled(state);
  const at = new Date(Date.now() + 1000).toISOString();
  const holders = cli(['audit', '--disk', disk3, '--at', at, '--json', '--state-dir', state]);
  assert.is(holders.code, 0, holders.stdout + holders.stderr);
  assert.equal(JSON.parse(holders.stdout).holders.map((h: any) => [h.owner.name, h.as]), [['vm1', path.join(other, sha256Hex(disk3))]]);
});

test.run();
