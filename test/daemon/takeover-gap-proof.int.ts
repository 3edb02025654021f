// Suspected in review26d, reproduced by wait27: a `serve --takeover` while a start's gap proof waits on a
// full state directory. Host A holds disk D; A's daemon is killed; host B takes D and releases it (B's
// record, a higher generation, is the proof of the intrusion: decision 0020). A starts again on a full
// state directory: its re-take finds the proof and records LeaseLost, but the journal refuses the
// start's facts, so they wait in memory and A keeps B's record in place (review26a F3). Then
// `vmlockd serve --takeover`: the old daemon hands D's description over and stops, its waiting facts
// lost with it; the new daemon adopted the description with no gap check at all (an adoption is "the
// same description, held throughout"), so the LeaseLost was never journaled and never would be: the
// audit said vm1 held D without a break while host B had it. Now an adoption checks what the lock file
// says against the journal as a re-take does: the loss is recorded, the proof kept until then. A plain
// restart (SIGTERM, start) in the same window was already right: the stop closes the description
// unwritten, the proof stays, and the next start's re-take finds it (kept here as a refutation).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { TestDaemon, UUID1, UUID2, cli, tmpdir, until } from '../helpers/daemon.js';
import { fill, smallTmpfs, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `abababab-0000-4000-8000-${String(i).padStart(12, '0')}`;

function recordOf(file: string): { host?: string; gen?: number } {
  const buf = fs.readFileSync(file).subarray(0, 512).toString('utf8').replace(/\0/g, '').trim();
  try {
    return JSON.parse(buf);
  } catch {
    return {};
  }
}

for (const how of ['takeover', 'restart'] as const) test(`a ${how} while the start's LeaseLost for a gap intrusion waits on a full disk still records the loss`, async () => {
  const root = tmpdir('vmlockd-takeover-gap-');
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const disk = (name: string) => {
    const p = path.join(images, `${name}.qcow2`);
    if (!fs.existsSync(p)) fs.writeFileSync(p, '');
    return p;
  };
  const d = disk('D');
  const stateA = path.join(root, 'state-a');
  smallTmpfs(stateA, mounts, '8m');
  const aOpts = { stateDir: stateA, lockspace, hostId: 'hv-a', socket: path.join(root, 'a.sock') };
  const a = new TestDaemon(aOpts);
  daemons.push(a);
  await a.start();
  const b = new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace, hostId: 'hv-b', socket: path.join(root, 'b.sock') });
  daemons.push(b);
  await b.start();
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', d]).code, 0);
  const lockFile = JSON.parse(a.cli(['who', d, '--json']).stdout).file as string;

  // A's state directory full, the staging file's room used up.
  const filler = fill(stateA);
  let refused = false;
  for (let i = 1; i < 20_000 && !refused; i++) {
    const r = await call(a.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(`o${i}`) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');
  await a.kill('SIGKILL');

  // The gap: vm2 on host B gets vm1's disk, then lets it go. B's record is the proof.
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', d]).code, 0);
  assert.is(b.cli(['release', '--vm', UUID2, d]).code, 0);
  assert.is(recordOf(lockFile).host, 'hv-b');

  // A starts on the full disk: D taken again, its LeaseLost waits in memory, B's record stays.
  const a2 = new TestDaemon(aOpts);
  daemons.push(a2);
  await a2.start(60_000);
  const st = JSON.parse(a2.cli(['status', '--json']).stdout);
  assert.ok((st.factsWaiting?.kinds?.LeaseLost ?? 0) >= 1, `the start's LeaseLost does not wait: ${JSON.stringify(st.factsWaiting)}`);
  assert.is(recordOf(lockFile).host, 'hv-b', 'the proof was overwritten before the LeaseLost was journaled');

  // The takeover (or a plain restart: SIGTERM, then a start), still on the full disk.
  const c = new TestDaemon({ ...aOpts, ...(how === 'takeover' ? { extra: ['--takeover'] } : {}) });
  daemons.push(c);
  if (how === 'restart') await a2.kill('SIGTERM');
  await c.start(60_000);
  await until('the old daemon exits', async () => (await a2.exit) !== undefined, 30_000);

  // Room again: whatever the new daemon knows is journaled.
  fs.unlinkSync(filler);
  await until('the new daemon\'s facts are journaled', () => {
    const s = JSON.parse(c.cli(['status', '--json']).stdout);
    return s.factsWaiting === null && s.journalTrouble === null && s.journalMovedSeq === s.lastSeq;
  }, 120_000);
  const history = JSON.parse(c.cli(['audit', '--disk', d, '--json', '--limit', '0']).stdout) as Array<{ seq: number; kind: string; host: string; payload: any }>;
  const mine = history.filter((f) => f.host === 'hv-a').map((f) => f.kind);
  assert.ok(mine.includes('LeaseLost'), `host B took vm1's disk in the gap, and the journal never says vm1 lost it: ${mine.join(' ')}`);
  // Held by vm1 again, and, the loss journaled, the record is this host's.
  assert.is(JSON.parse(c.cli(['who', d, '--json']).stdout).holders?.[0]?.host ?? recordOf(lockFile).host, 'hv-a');
  await until('the record is this host\'s once the loss is journaled', () => recordOf(lockFile).host === 'hv-a', 10_000);
  await c.kill('SIGTERM');
  const v = cli(['journal', 'verify', '--state-dir', stateA]);
  assert.is(v.code, 0, v.stdout + v.stderr);
});

test('a takeover while the verifier\'s LeaseLost of a replaced lock file waits on a full disk still records the loss', async () => {
  const root = tmpdir('vmlockd-takeover-verify-');
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const disk = (name: string) => {
    const p = path.join(images, `${name}.qcow2`);
    if (!fs.existsSync(p)) fs.writeFileSync(p, '');
    return p;
  };
  const d = disk('D');
  const state = path.join(root, 'state');
  smallTmpfs(state, mounts, '8m');
  const opts = { stateDir: state, lockspace, hostId: 'hv-a', socket: path.join(root, 'a.sock'), extra: ['--verify-interval', '1'] };
  const a = new TestDaemon(opts);
  daemons.push(a);
  await a.start();
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', d]).code, 0);
  const lockFile = JSON.parse(a.cli(['who', d, '--json']).stdout).file as string;
  const filler = fill(state);
  let refused = false;
  for (let i = 1; i < 20_000 && !refused; i++) {
    const r = await call(a.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(`o${i}`) }] });
    refused = r.status !== 200;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');
  // D's lock file replaced under the daemon: the verifier's LeaseLost and Reacquired wait for room.
  fs.writeFileSync(`${lockFile}.new`, '');
  fs.renameSync(`${lockFile}.new`, lockFile);
  await until('the verifier\'s LeaseLost waits', () => (JSON.parse(a.cli(['status', '--json']).stdout).factsWaiting?.kinds?.LeaseLost ?? 0) >= 1, 60_000);

  const c = new TestDaemon({ ...opts, extra: [...opts.extra, '--takeover'] });
  daemons.push(c);
  await c.start(60_000);
  await until('the old daemon exits', async () => (await a.exit) !== undefined, 30_000);
  fs.unlinkSync(filler);
  await until('the new daemon\'s facts are journaled', () => {
    const s = JSON.parse(c.cli(['status', '--json']).stdout);
    return s.factsWaiting === null && s.journalTrouble === null && s.journalMovedSeq === s.lastSeq;
  }, 120_000);
  const kinds = (JSON.parse(c.cli(['audit', '--disk', d, '--json', '--limit', '0']).stdout) as Array<{ kind: string }>).map((f) => f.kind);
  assert.ok(kinds.includes('LeaseLost'), `D's lock file was replaced under the daemon and the journal never says vm1 lost it: ${kinds.join(' ')}`);
  assert.is(kinds[kinds.length - 1], 'Reacquired');
  await c.kill('SIGTERM');
  const v = cli(['journal', 'verify', '--state-dir', state]);
  assert.is(v.code, 0, v.stdout + v.stderr);
});

test.run();
