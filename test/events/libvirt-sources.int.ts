// issue 17, with real daemons: two or three vmlockd processes ("hosts") on one lockspace, each
// listening to its own scripted `virsh` (test/helpers/scripted-virsh.ts) for the event orders and
// libvirt failures a real libvirtd cannot produce on demand. Each test is a case where the libvirt
// sources used to lose a running VM's lock (and another host then got the disk).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, tmpdir, until } from '../helpers/daemon.js';
import { ScriptedVirsh } from '../helpers/scripted-virsh.js';

const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');
const U1 = 'a1111111-1111-4111-8111-111111111111';
const U2 = 'a2222222-2222-4222-8222-222222222222';
const U3 = 'a3333333-3333-4333-8333-333333333333';

/** Domain XML; `id` makes it the live XML of a running domain (what dumpxml prints). */
function xml(name: string, uuid: string, disk: string, id?: number): string {
  const x = TEMPLATE.replace('NAME', name).replace('UUID', uuid).replace('DISK', disk);
  return id === undefined ? x : x.replace("<domain type='qemu'>", `<domain type='qemu' id='${id}'>`);
}

function volumeXml(name: string, uuid: string, id: number): string {
  return xml(name, uuid, 'unused', id).replace(
    /<disk type='file' device='disk'>[\s\S]*?<\/disk>/,
    "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='vmpool' volume='data.qcow2'/><target dev='vda' bus='virtio'/></disk>",
  );
}

interface Host {
  readonly d: TestDaemon;
  readonly virsh: ScriptedVirsh;
}

let root: string;
let lockspace: string;
const running: TestDaemon[] = [];
let n = 0;

test.before.each(() => {
  root = tmpdir('vmlockd-libvirt-src-');
  lockspace = path.join(root, 'lockspace');
  fs.mkdirSync(lockspace);
});

test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

function log(d: TestDaemon): string {
  return d.stdout + d.stderr;
}

/** A host with a libvirt event stream (scripted virsh) or, with `libvirt: false`, the hook alone. */
async function host(id: string, opts: { libvirt?: boolean } = {}): Promise<Host> {
  n++;
  const dir = path.join(root, `${id}-${n}`);
  fs.mkdirSync(dir);
  const virsh = new ScriptedVirsh(path.join(dir, 'virsh'));
  virsh.on('list --all --uuid --name', '\n').on('list --uuid', '\n');
  const libvirt = opts.libvirt ?? true;
  const conf = path.join(dir, 'vmlockd.conf');
  fs.writeFileSync(conf, `log_level = "info"\n${libvirt ? 'libvirt_uri = "test:///scripted"\n' : ''}`);
  const d = new TestDaemon({
    stateDir: path.join(dir, 'state'),
    lockspace,
    hostId: id,
    env: virsh.env(),
    extra: ['--config', conf],
  });
  running.push(d);
  await d.start();
  if (libvirt) await until(`${id}: first reconcile`, () => /reconciled:/.test(log(d)));
  return { d, virsh };
}

function disk(name: string): string {
  const p = path.join(root, name);
  if (!fs.existsSync(p)) fs.writeFileSync(p, 'image');
  return p;
}

function hook(h: Host, name: string, uuid: string, diskPath: string, op: string, subop = 'begin') {
  return h.d.cli(['hook', 'qemu', name, op, subop, '-'], { input: xml(name, uuid, diskPath) });
}

const SENTINEL = 'a5555555-5555-4555-8555-555555555555';

function held(h: Host): Array<{ disk: string; vm: { uuid: string } }> {
  return (JSON.parse(h.d.cli(['locks', '--json']).stdout) as Array<{ disk: string; vm: { uuid: string } }>).filter((l) => l.vm.uuid !== SENTINEL);
}

let marks = 0;
/** Wait until every event emitted so far is handled: the handler is one serial queue, so a sentinel VM's Started locks its disk only after them. */
async function settled(h: Host): Promise<void> {
  const name = `sentinel${++marks}`;
  h.virsh.on(`dumpxml ${name}`, xml(name, SENTINEL, disk(`${name}.img`), 99));
  h.virsh.emit(name, 'Started Booted');
  await until(`the events before ${name} handled`, () => (JSON.parse(h.d.cli(['locks', '--json']).stdout) as Array<{ disk: string }>).some((l) => l.disk.endsWith(`${name}.img`)));
}

test('17.1: given Crashed Crashloaded while QEMU runs (crash kernel writing the vmcore), then the lock stays and another host cannot start on the disk', async () => {
  const a = await host('hv-a');
  const b = await host('hv-b', { libvirt: false });
  const img = disk('web1.qcow2');
  assert.is(hook(a, 'web1', U1, img, 'prepare').code, 0);
  a.virsh.on('domuuid web1', U1 + '\n').on(`domstate ${U1}`, 'running\n');
  a.virsh.emit('web1', 'Crashed Crashloaded');
  await settled(a);
  assert.is(held(a).length, 1);
  await until('the log says why', () => /Crashed Crashloaded for VM web1 .* keeps its locks/.test(log(a.d)));
  const r = hook(b, 'web2', U2, img, 'prepare');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /held exclusively by VM web1/);
  // The domain is really gone (on_crash=destroy): now it goes.
  a.virsh.on(`domstate ${U1}`, 'shut off\n');
  a.virsh.emit('web1', 'Crashed Panicked');
  await until('released after shut off', () => held(a).length === 0);
  assert.is(hook(b, 'web2', U2, img, 'prepare').code, 0);
});

test('17.2: given vol-path fails during a reconnect\'s reconcile, then the running VM keeps its volume lock and another host is refused', async () => {
  const a = await host('hv-a');
  const b = await host('hv-b', { libvirt: false });
  const vol = disk('data.qcow2');
  a.virsh
    .on('list --all --uuid --name', `${U1} web1\n`)
    .on('list --uuid', `${U1}\n`)
    .on(`dumpxml ${U1}`, volumeXml('web1', U1, 7))
    .on('vol-path --pool vmpool data.qcow2', vol + '\n');
  a.virsh.disconnect();
  await until('the reconnect reconcile takes the volume', () => held(a).some((l) => l.disk === vol), 20_000);
  // The storage driver restarts: vol-path fails, exactly when libvirtd reconnects.
  a.virsh.fail('vol-path --pool vmpool data.qcow2', "error: failed to get pool 'vmpool'\nerror: Storage pool not found: no storage pool with matching name 'vmpool'");
  a.virsh.disconnect();
  await until('a reconcile that could not resolve the volume', () => /kept as unknown/.test(log(a.d)) || !held(a).some((l) => l.disk === vol), 20_000);
  assert.ok(held(a).some((l) => l.disk === vol), 'still held');
  const r = hook(b, 'web2', U2, vol, 'prepare');
  assert.is(r.code, 3, r.stderr);
});

test('17.3: given a late Stopped of the earlier run after the hook locked the new one, then the lock stays (domstate says running)', async () => {
  const a = await host('hv-a');
  const b = await host('hv-b', { libvirt: false });
  const img = disk('web1.qcow2');
  assert.is(hook(a, 'web1', U1, img, 'prepare').code, 0);
  a.virsh.on('domuuid web1', U1 + '\n').on(`domstate ${U1}`, 'running\n');
  a.virsh.emit('web1', 'Stopped Destroyed');
  await settled(a);
  assert.is(held(a).length, 1);
  assert.is(hook(b, 'web2', U2, img, 'prepare').code, 3);
});

test('17.3: given a transient name reused by another uuid, when the old run\'s Stopped arrives, then the old uuid\'s lock does not leak and the new one\'s stays', async () => {
  const a = await host('hv-a');
  const b = await host('hv-b', { libvirt: false });
  const oldImg = disk('old.qcow2');
  const newImg = disk('new.qcow2');
  assert.is(hook(a, 'web', U1, oldImg, 'prepare').code, 0);
  // The old transient run ends while its release end is lost (vmlockd restarted, hook failed); a new
  // transient domain with the same name and another uuid starts.
  assert.is(hook(a, 'web', U3, newImg, 'prepare').code, 0);
  a.virsh.on('domuuid web', U3 + '\n').on(`domstate ${U3}`, 'running\n');
  a.virsh.emit('web', 'Stopped Destroyed');
  await settled(a);
  assert.equal(held(a).map((l) => l.vm.uuid), [U3]);
  assert.is(hook(b, 'other', U2, oldImg, 'prepare').code, 0, 'the old disk is free');
  assert.is(hook(b, 'other2', 'a4444444-4444-4444-8444-444444444444', newImg, 'prepare').code, 3, 'the new run keeps its disk');
});

test('17.4: given web1 running on h1, when h2 gets migrate begin + prepare begin and then boots it (not a migration), then h2 reports the conflict at once instead of waiting for a hand-over', async () => {
  const h1 = await host('hv-1', { libvirt: false });
  const h2 = await host('hv-2');
  const img = disk('web1.qcow2');
  assert.is(hook(h1, 'web1', U1, img, 'prepare').code, 0);
  assert.is(hook(h2, 'web1', U1, img, 'migrate').code, 0);
  assert.is(hook(h2, 'web1', U1, img, 'prepare').code, 0);
  // What runs on h2 booted (an HA manager's start), it did not migrate in.
  h2.virsh.on('dumpxml web1', xml('web1', U1, img, 3));
  h2.virsh.emit('web1', 'Started Booted');
  await until('the conflict reported', () => /CONFLICT: VM web1 .* is running without its disk lock: .* on host hv-1/.test(log(h2.d)), 5000);
  assert.not.match(log(h2.d), /web1 .* \(migration hand-over\); retrying/);
  assert.equal(held(h2), []);
  // A failed incoming migration's release end forgets it: a later start is an ordinary acquire.
  assert.is(hook(h2, 'web1', U1, img, 'release', 'end').code, 0);
  const r = hook(h2, 'web1', U1, img, 'prepare');
  assert.is(r.code, 3, r.stderr);
  assert.match(r.stderr, /held exclusively by VM web1 .* on host hv-1/);
});

test('17.5: given a live migration with the hook alone, then the destination gets the lock once the source lets go, the source holds it until then, and a third host is refused throughout', async () => {
  const src = await host('hv-src');
  const dst = await host('hv-dst', { libvirt: false });
  const third = await host('hv-3', { libvirt: false });
  const img = disk('web1.qcow2');
  const intruder = () => hook(third, 'intruder', U2, img, 'prepare');
  // web1 runs on the source: a reconcile there (5 s after the connect) must see it so.
  src.virsh.on('domuuid web1', U1 + '\n').on(`domstate ${U1}`, 'running\n');
  assert.is(hook(src, 'web1', U1, img, 'prepare').code, 0);
  // Destination: libvirt's Prepare runs migrate begin then prepare begin while the source runs.
  assert.is(hook(dst, 'web1', U1, img, 'migrate').code, 0);
  const p = hook(dst, 'web1', U1, img, 'prepare');
  assert.is(p.code, 0, p.stderr);
  assert.is(intruder().code, 3, 'refused while the source runs');
  // The source pauses at the end of the memory copy: it keeps its lock (was: released here).
  src.virsh.on(`domstate ${U1}`, 'paused\n');
  src.virsh.emit('web1', 'Suspended Migrated');
  await settled(src);
  assert.equal(held(src).map((l) => l.vm.uuid), [U1]);
  assert.is(intruder().code, 3, 'refused while the source is paused for the hand-over');
  assert.equal(held(dst), [], 'the destination waits');
  // The destination resumed; the source's Confirm kills its QEMU: Stopped Migrated.
  src.virsh.on(`domstate ${U1}`, 'shut off\n');
  src.virsh.emit('web1', 'Stopped Migrated');
  await until('the destination holds web1\'s disk', () => held(dst).some((l) => l.vm.uuid === U1));
  assert.equal(held(src), []);
  assert.is(intruder().code, 3, 'refused: the destination holds it');
  await until('the log says so', () => /migration hand-over done, this host holds its disks/.test(log(dst.d)));
});

test('17.5 review: given an incoming migration whose VM is not on the destination (its libvirtd lost it, no release end came), then the destination stops waiting, says why, and does not take the disk when the source lets go', async () => {
  const p1 = await host('hv-p1', { libvirt: false });
  const p2 = await host('hv-p2');
  const third = await host('hv-3', { libvirt: false });
  const img = disk('web1.qcow2');
  assert.is(hook(p1, 'web1', U1, img, 'prepare').code, 0);
  assert.is(hook(p2, 'web1', U1, img, 'migrate').code, 0);
  assert.is(hook(p2, 'web1', U1, img, 'prepare').code, 0);
  // p2's libvirt does not know web1 (the scripted virsh answers "Domain not found" to its domstate).
  await until('p2 stops waiting and says why', () => /web1 .*stopped waiting for the migration hand-over from host hv-p1 .*virsh domstate says the VM is not on this host/.test(log(p2.d)), 30_000);
  assert.ok(p2.virsh.calls().includes(`domstate ${U1}`));
  // Later p1's VM stops: the disk is free, and p2 (with no VM) does not take it.
  assert.is(hook(p1, 'web1', U1, img, 'release', 'end').code, 0);
  const r = hook(third, 'web1', U1, img, 'prepare');
  assert.is(r.code, 0, `the VM can start again elsewhere: ${r.stderr}`);
  assert.equal(held(p2), []);
});

test('17.5 review: given the destination took the disk in the hand-over but libvirt then says the VM is not on this host, then it releases it again', async () => {
  const p1 = await host('hv-p1', { libvirt: false });
  const p2 = await host('hv-p2');
  const img = disk('web1.qcow2');
  assert.is(hook(p1, 'web1', U1, img, 'prepare').code, 0);
  assert.is(hook(p2, 'web1', U1, img, 'migrate').code, 0);
  assert.is(hook(p2, 'web1', U1, img, 'prepare').code, 0);
  // The source lets go at once (before domstate counts on p2): p2 takes the disk.
  assert.is(hook(p1, 'web1', U1, img, 'release', 'end').code, 0);
  await until('p2 took the disk', () => held(p2).some((l) => l.vm.uuid === U1) || /released them again/.test(log(p2.d)));
  // ... but web1 is not on p2 (domstate: not found): released, and the log says why.
  await until('p2 released it again', () => held(p2).length === 0 && /web1 .*took its disks in the migration hand-over, but virsh domstate says the VM is not on this host .*released them again/.test(log(p2.d)), 30_000);
  const again = await host('hv-4', { libvirt: false });
  assert.is(hook(again, 'web1', U1, img, 'prepare').code, 0, 'the VM can start elsewhere');
});

test('17.5 review: given a long incoming migration that libvirt says is in progress here (paused), then the destination keeps waiting past the domstate grace and keeps the disk it takes (running)', async () => {
  const p1 = await host('hv-p1', { libvirt: false });
  const p2 = await host('hv-p2');
  const img = disk('web1.qcow2');
  p2.virsh.on(`domstate ${U1}`, 'paused\n');
  assert.is(hook(p1, 'web1', U1, img, 'prepare').code, 0);
  assert.is(hook(p2, 'web1', U1, img, 'migrate').code, 0);
  assert.is(hook(p2, 'web1', U1, img, 'prepare').code, 0);
  await until('p2 asked libvirt twice', () => p2.virsh.calls().filter((c) => c === `domstate ${U1}`).length >= 2, 30_000);
  assert.not.match(log(p2.d), /stopped waiting/);
  p2.virsh.on(`domstate ${U1}`, 'running\n');
  assert.is(hook(p1, 'web1', U1, img, 'release', 'end').code, 0);
  await until('p2 holds the disk', () => held(p2).some((l) => l.vm.uuid === U1));
  await until('p2 checked that the VM is here', () => /web1 .*virsh domstate says it is on this host \(running\): it keeps the disks/.test(log(p2.d)) || /released them again/.test(log(p2.d)));
  assert.not.match(log(p2.d), /released them again/);
  assert.ok(held(p2).some((l) => l.vm.uuid === U1));
});

test.run();
