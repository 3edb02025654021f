// issue 17.5, the hand-over gap: three real daemons ("hosts") on one lockspace. The source runs
// web1 and holds its disk; the destination runs libvirt's Prepare hooks (migrate begin, prepare
// begin) and waits; a third host hammers ordinary acquires of the disk (another VM) through its
// control API all through the migration. The third host must never get the disk: not while the
// source holds it, not in the instant between the source's release (Confirm) and the
// destination's take (decision 0009: the reservation), not after. Also: an aborted migration.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { ROOT, TestDaemon, tmpdir, until } from '../helpers/daemon.js';
import { ScriptedVirsh } from '../helpers/scripted-virsh.js';

const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');
const U1 = 'b1111111-1111-4111-8111-111111111111';
const U2 = 'b2222222-2222-4222-8222-222222222222';

function xml(name: string, uuid: string, disk: string): string {
  return TEMPLATE.replace('NAME', name).replace('UUID', uuid).replace('DISK', disk);
}

let root: string;
let lockspace: string;
/** The destination's view of the lockspace: the same directory, or through a second mount. */
let lockspaceDst: string;
/**
 * VMLOCKD_HANDOVER_MOUNTS=A:B runs these tests on a cluster filesystem mounted twice (e.g. the
 * GlusterFS mounts of .ci/gluster-up.sh): the destination reaches the lockspace through B, the
 * source and the third host through A.
 */
const MOUNTS = process.env.VMLOCKD_HANDOVER_MOUNTS?.split(':');
const running: TestDaemon[] = [];

test.before.each(() => {
  root = tmpdir('vmlockd-handover-');
  lockspace = path.join(root, 'lockspace');
  lockspaceDst = lockspace;
  if (MOUNTS) {
    const name = path.basename(root);
    lockspace = path.join(MOUNTS[0]!, name);
    lockspaceDst = path.join(MOUNTS[1]!, name);
  }
  fs.mkdirSync(lockspace);
});

test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
  if (MOUNTS) fs.rmSync(lockspace, { recursive: true, force: true });
});

/** A host with the hook alone (no libvirt URI), or with `virsh` a scripted libvirt event stream. */
async function host(id: string, virsh?: ScriptedVirsh): Promise<TestDaemon> {
  const dir = path.join(root, id);
  fs.mkdirSync(dir);
  const conf = path.join(dir, 'vmlockd.conf');
  fs.writeFileSync(conf, `log_level = "info"\n${virsh ? 'libvirt_uri = "test:///scripted"\n' : ''}`);
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: id === 'hv-dst' ? lockspaceDst : lockspace, hostId: id, extra: ['--config', conf], ...(virsh ? { env: virsh.env() } : {}) });
  running.push(d);
  await d.start();
  if (virsh) await until(`${id}: first reconcile`, () => /reconciled:/.test(log(d)));
  return d;
}

function hook(d: TestDaemon, name: string, uuid: string, disk: string, op: string, subop = 'begin') {
  return d.cli(['hook', 'qemu', name, op, subop, '-'], { input: xml(name, uuid, disk) });
}

function held(d: TestDaemon): Array<{ disk: string; vm: { uuid: string } }> {
  return JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string; vm: { uuid: string } }>;
}

/** The host's journal, as `vmlockd audit --json` prints it. */
function facts(d: TestDaemon, kinds?: string): Array<{ kind: string; payload: Record<string, unknown> }> {
  const r = d.cli(['audit', '--json', '--limit', '0', ...(kinds ? ['--kind', kinds] : [])]);
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Array<{ kind: string; payload: Record<string, unknown> }>;
}

function log(d: TestDaemon): string {
  return d.stdout + d.stderr;
}

interface Hammer {
  /** Stop it and read what it saw. */
  stop(): Promise<HammerResult>;
  /** Attempts so far (read from its progress file). */
  attempts(): number;
}

interface HammerResult {
  readonly attempts: number;
  /** When the third host was granted the disk (must stay empty). */
  readonly wins: string[];
  /** Each refusal: time and message. */
  readonly refusals: string[];
  readonly errors: string[];
}

// The hammer runs in its own process: the test's own CLI calls (spawnSync) block this event loop,
// and a hammer that pauses with them would miss the very instant it is there to find.
const HAMMER = `
const http = require('http');
const fs = require('fs');
const [socketPath, disk, uuid, out] = process.argv.slice(1);
const st = { attempts: 0, wins: [], refusals: [], errors: [] };
let stop = false;
process.on('SIGTERM', () => { stop = true; });
function post(p, body) {
  return new Promise((resolve) => {
    const payload = JSON.stringify(body);
    const req = http.request({ socketPath, method: 'POST', path: p, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => { try { resolve(JSON.parse(text)); } catch { resolve({ status: 'error', message: text }); } });
    });
    req.on('error', (e) => resolve({ status: 'error', message: e.message }));
    req.end(payload);
  });
}
(async () => {
  const vm = { uuid, name: 'intruder' };
  while (!stop) {
    st.attempts++;
    const r = await post('/v1/acquire', { vm, disks: [{ path: disk }] });
    if (r.status === 'ok') { st.wins.push(new Date().toISOString()); await post('/v1/release', { vm }); }
    else if (r.status === 'refused') st.refusals.push(new Date().toISOString() + ' ' + r.message);
    else st.errors.push(r.message || JSON.stringify(r));
    if (st.attempts % 20 === 0) fs.writeFileSync(out + '.n', String(st.attempts));
    await new Promise((res) => setTimeout(res, 2));
  }
  fs.writeFileSync(out, JSON.stringify(st));
  process.exit(0);
})();
`;

/** The third host starts VM intruder on the disk, again and again, as fast as its control API answers. */
function hammer(d: TestDaemon, diskPath: string): Hammer {
  const out = path.join(root, `hammer-${process.hrtime.bigint()}.json`);
  const child = spawn(process.execPath, ['-e', HAMMER, d.socket, diskPath, U2, out], { stdio: 'inherit' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    attempts() {
      try {
        return Number(fs.readFileSync(out + '.n', 'utf8'));
      } catch {
        return 0;
      }
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return JSON.parse(fs.readFileSync(out, 'utf8')) as HammerResult;
    },
  };
}

function disk(name: string): string {
  const p = path.join(root, name);
  fs.writeFileSync(p, 'image');
  return p;
}

/** Three hosts on the lockspace: the source runs web1 and holds its disk; the destination and a third host hold nothing. */
async function threeHosts(): Promise<{ src: TestDaemon; dst: TestDaemon; third: TestDaemon; img: string }> {
  const src = await host('hv-src');
  const dst = await host('hv-dst');
  const third = await host('hv-3');
  const img = disk('web1.qcow2');
  assert.is(hook(src, 'web1', U1, img, 'prepare').code, 0);
  return { src, dst, third, img };
}

/** The destination's Prepare: migrate begin, prepare begin; it waits for the source. */
function destinationPrepares(dst: TestDaemon, img: string): void {
  assert.is(hook(dst, 'web1', U1, img, 'migrate').code, 0);
  const p = hook(dst, 'web1', U1, img, 'prepare');
  assert.is(p.code, 0, p.stderr);
}

test('17.5: given a third host hammering acquire on the disk through a live migration, then it never gets it, the source holds it until the hand-over and the destination ends up holding it', async () => {
  const { src, dst, third, img } = await threeHosts();
  const h = hammer(third, img);
  let r: HammerResult;
  try {
    destinationPrepares(dst, img);
    // A migration of a few seconds: the destination's attempts are 500 ms apart by now.
    await until('the third host was refused for a while', () => h.attempts() >= 40, 30_000);
    await new Promise((res) => setTimeout(res, 2500));
    assert.equal(held(src).map((l) => l.vm.uuid), [U1], 'the source holds it until its Confirm');
    assert.equal(held(dst), [], 'the destination waits');
    // The source's Confirm: its QEMU is gone, release end.
    assert.is(hook(src, 'web1', U1, img, 'release', 'end').code, 0);
    await until('the destination holds web1\'s disk or reports a conflict', () => held(dst).some((l) => l.vm.uuid === U1) || /CONFLICT/.test(log(dst)), 20_000);
    // Keep hammering a little after the hand-over.
    const after = h.attempts();
    await until('more attempts after the hand-over', () => h.attempts() >= after + 40, 20_000);
  } finally {
    r = await h.stop();
  }
  assert.equal(r.wins, [], `the third host got the disk ${r.wins.length} time(s) in ${r.attempts} attempts`);
  assert.equal(r.errors, []);
  assert.ok(held(dst).some((l) => l.vm.uuid === U1), 'the destination holds the disk');
  assert.equal(held(src), []);
  assert.equal(held(third), []);
  // Every refusal named web1: held on the source, reserved for the destination, or held there.
  const odd = r.refusals.filter((m) => !/web1 \(uuid b1111111/.test(m));
  assert.equal(odd, []);
  assert.not.match(log(dst), /CONFLICT/);
  const reserved = r.refusals.filter((m) => /is reserved for VM web1 .* on host hv-dst: a live migration hands it over from host hv-src/.test(m)).length;
  console.log(`    third host: ${r.attempts} attempts, ${reserved} refused by the reservation`);
  // The source's release reserved the disk for the destination, and says so in its journal.
  const rel = facts(src, 'LockReleased');
  assert.is(rel.length, 1);
  assert.equal((rel[0]!.payload.handedTo as { host: string; owner: { uuid: string } }).host, 'hv-dst');
  // The destination journaled one wait and its outcome, not every attempt.
  const mine = facts(dst, 'HandOverWaiting,HandOverEnded,LockRefused,LockAcquired');
  assert.equal(mine.map((f) => f.kind), ['HandOverWaiting', 'LockAcquired', 'HandOverEnded']);
  assert.is(mine[2]!.payload.outcome, 'taken');
  assert.equal((mine[0]!.payload.disks as Array<{ requested: boolean }>).map((d) => d.requested), [true]);
});

test('17.5: given a migration aborted while the destination waits, then the source keeps the lock, the destination\'s wait and request end, and the third host cannot get the disk while the source VM runs', async () => {
  const { src, dst, third, img } = await threeHosts();
  const h = hammer(third, img);
  let r: HammerResult;
  try {
    destinationPrepares(dst, img);
    await until('the third host was refused for a while', () => h.attempts() >= 40, 30_000);
    // The migration fails: libvirt kills the incoming QEMU on the destination (its release hook);
    // the source resumes its VM and never releases.
    assert.is(hook(dst, 'web1', U1, img, 'release', 'end').code, 0);
    const ended = facts(dst, 'HandOverEnded');
    assert.is(ended.length, 1);
    assert.is(ended[0]!.payload.outcome, 'cancelled');
    assert.is(ended[0]!.payload.withdrawn, 1);
    const after = h.attempts();
    await until('more attempts after the abort', () => h.attempts() >= after + 60, 20_000);
    assert.equal(held(src).map((l) => l.vm.uuid), [U1], 'the source keeps its lock');
    assert.equal(held(dst), []);
  } finally {
    r = await h.stop();
  }
  assert.equal(r.wins, [], 'the third host never got the disk while the source VM ran');
  for (const m of r.refusals) assert.match(m, /held exclusively by VM web1 .* on host hv-src/);
  // Later the source's VM stops for good: nobody waits for it any more, so nothing is reserved.
  assert.is(hook(src, 'web1', U1, img, 'release', 'end').code, 0);
  assert.equal((facts(src, 'LockReleased')[0]!.payload.handedTo), undefined);
  const t = hook(third, 'intruder', U2, img, 'prepare');
  assert.is(t.code, 0, t.stderr);
  assert.equal(held(dst), []);
});

test('17.5: given a destination that hangs (SIGSTOP) after the source released the disk to it, then the reservation keeps the third host out, and once the destination dies (SIGKILL) the disk is free at once', async () => {
  const { src, dst, third, img } = await threeHosts();
  destinationPrepares(dst, img);
  await until('the destination waits', () => facts(dst, 'HandOverWaiting').length === 1);
  // The destination's daemon hangs: alive (its request's lock stands), but it never comes to take the disk.
  dst.proc!.kill('SIGSTOP');
  try {
    assert.is(hook(src, 'web1', U1, img, 'release', 'end').code, 0);
    assert.equal((facts(src, 'LockReleased')[0]!.payload.handedTo as { host: string }).host, 'hv-dst');
    const refused = hook(third, 'intruder', U2, img, 'prepare');
    assert.is(refused.code, 3);
    assert.match(refused.stderr, /reserved for VM web1 \(uuid b1111111-1111-4111-8111-111111111111\) on host hv-dst: a live migration hands it over from host hv-src/);
    assert.match(refused.stderr, /at the latest 20\d\d-/);
    // `who` on any host shows it.
    const w = third.cli(['who', img]);
    assert.is(w.code, 0, w.stderr);
    assert.match(w.stdout, /free \(generation 1\)\n  reserved for the migration hand-over of VM web1 \(uuid b1111111-1111-4111-8111-111111111111\) to host hv-dst from host hv-src since .*, at the latest 20/);
  } finally {
    // Dead, its request goes with its process: the reservation counts no more.
    await dst.kill('SIGKILL');
  }
  const t = hook(third, 'intruder', U2, img, 'prepare');
  assert.is(t.code, 0, t.stderr);
  assert.equal(held(third).map((l) => l.vm.uuid), [U2]);
});

test('17.5: given a destination with the event stream alone (no hook), when a third host hammers acquire through the hand-over, then Started Migrated\'s request keeps it out and the destination\'s resume takes the disk', async () => {
  const img = disk('web1.qcow2');
  const virsh = new ScriptedVirsh(path.join(root, 'dst-virsh'));
  const live = xml('web1', U1, img).replace("<domain type='qemu'>", "<domain type='qemu' id='7'>");
  virsh.on('list --all --uuid --name', '\n').on('list --uuid', '\n').on('dumpxml web1', live).on(`dumpxml ${U1}`, live).on('domuuid web1', U1 + '\n').on(`domstate ${U1}`, 'paused\n');
  const src = await host('hv-src');
  const dst = await host('hv-dst', virsh);
  const third = await host('hv-3');
  assert.is(hook(src, 'web1', U1, img, 'prepare').code, 0);
  const h = hammer(third, img);
  let r: HammerResult;
  try {
    // Prepare is over on the destination: its QEMU waits for the memory.
    virsh.emit('web1', 'Started Migrated');
    await until('the destination files its hand-over request', () => facts(dst, 'HandOverWaiting').length === 1);
    // Finish: the destination resumes while the source still holds the disk (until its Confirm).
    virsh.on(`domstate ${U1}`, 'running\n');
    virsh.emit('web1', 'Resumed Migrated');
    await until('the destination\'s resume was refused by the source and retries', () => /still holds its disks on host hv-src \(migration hand-over\); retrying in 1000 ms/.test(log(dst)), 20_000);
    assert.equal(held(dst), []);
    // The source's Confirm.
    assert.is(hook(src, 'web1', U1, img, 'release', 'end').code, 0);
    await until('the destination holds web1\'s disk or reports a conflict', () => held(dst).some((l) => l.vm.uuid === U1) || /CONFLICT/.test(log(dst)), 30_000);
    const after = h.attempts();
    await until('more attempts after the hand-over', () => h.attempts() >= after + 40, 20_000);
  } finally {
    r = await h.stop();
  }
  assert.equal(r.wins, [], `the third host got the disk ${r.wins.length} time(s) in ${r.attempts} attempts`);
  assert.ok(held(dst).some((l) => l.vm.uuid === U1), 'the destination holds the disk');
  assert.not.match(log(dst), /CONFLICT/);
  assert.equal((facts(src, 'LockReleased')[0]!.payload.handedTo as { host: string }).host, 'hv-dst');
  const ended = facts(dst, 'HandOverEnded');
  assert.equal(ended.map((f) => f.payload.outcome), ['taken']);
});

test.run();
