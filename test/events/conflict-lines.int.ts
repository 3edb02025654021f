// Every CONFLICT log line carries the same fields, whichever source reports it: event=Conflict, the
// disk, the VM that should hold it, the holder (its VM and host) and the seq of the journaled fact it
// reports (a LockRefused here; the verifier's LeaseLost in test/daemon/log-conflict.int.ts). Real
// daemons: the qemu hook's migration take-over and the libvirt event stream (a scripted virsh).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, tmpdir, until } from '../helpers/daemon.js';
import { ScriptedVirsh } from '../helpers/scripted-virsh.js';

const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');
const U1 = 'c1111111-1111-4111-8111-111111111111';
const U2 = 'c2222222-2222-4222-8222-222222222222';

/** Domain XML with these disks (vda, vdb, ...); `id` makes it a running domain's live XML. */
function xml(name: string, uuid: string, disks: string[], id?: number): string {
  const one = /<disk type='file' device='disk'>[\s\S]*?<\/disk>/.exec(TEMPLATE)![0];
  const all = disks.map((d, i) => one.replace('DISK', d).replace("dev='vda'", `dev='vd${String.fromCharCode(97 + i)}'`)).join('\n    ');
  const x = TEMPLATE.replace(one, all).replace('NAME', name).replace('UUID', uuid);
  return id === undefined ? x : x.replace("<domain type='qemu'>", `<domain type='qemu' id='${id}'>`);
}

let root: string;
const running: TestDaemon[] = [];
test.before.each(() => {
  root = tmpdir('vmlockd-conflict-lines-');
});
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
  fs.rmSync(root, { recursive: true, force: true });
});

interface Host {
  readonly d: TestDaemon;
  readonly virsh: ScriptedVirsh;
}

async function host(id: string, libvirt: boolean): Promise<Host> {
  const dir = path.join(root, id);
  fs.mkdirSync(dir);
  const virsh = new ScriptedVirsh(path.join(dir, 'virsh'));
  virsh.on('list --all --uuid --name', '\n').on('list --uuid', '\n');
  const conf = path.join(dir, 'vmlockd.conf');
  fs.writeFileSync(conf, `log_level = "info"\nlog_format = "json"\n${libvirt ? 'libvirt_uri = "test:///scripted"\n' : ''}`);
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(root, 'lockspace'), hostId: id, env: virsh.env(), extra: ['--config', conf] });
  running.push(d);
  await d.start();
  if (libvirt) await until(`${id}: first reconcile`, () => /reconciled:/.test(d.stderr + d.stdout));
  return { d, virsh };
}

function disk(name: string): string {
  const p = path.join(root, name);
  if (!fs.existsSync(p)) fs.writeFileSync(p, 'image');
  return p;
}

function hook(h: Host, name: string, uuid: string, disks: string[], op: string, subop = 'begin') {
  return h.d.cli(['hook', 'qemu', name, op, subop, '-'], { input: xml(name, uuid, disks) });
}

function lines(d: TestDaemon): Array<Record<string, unknown>> {
  return (d.stdout + d.stderr)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The CONFLICT lines, once there is one; each checked to carry every field, its seq the LockRefused's. */
async function conflictLines(d: TestDaemon): Promise<Array<Record<string, unknown>>> {
  const found = await until('a CONFLICT line', () => {
    const c = lines(d).filter((l) => l.event === 'Conflict');
    return c.length > 0 ? c : undefined;
  }, 30_000);
  const refused = lines(d).filter((l) => l.event === 'LockRefused');
  for (const c of found) {
    assert.match(String(c.msg), /^CONFLICT: /);
    for (const k of ['disk', 'vm', 'holder', 'holderHost']) assert.type(c[k], 'string', `${k} on the CONFLICT line: ${JSON.stringify(c)}`);
    assert.type(c.seq, 'number', `seq on the CONFLICT line: ${JSON.stringify(c)}`);
    assert.ok(refused.some((r) => r.seq === c.seq && r.disk === c.disk && r.vm === c.vm), `the seq is the LockRefused's of that disk and VM: ${JSON.stringify(c)} / ${JSON.stringify(refused)}`);
  }
  return found;
}

test('the libvirt event stream: a VM that runs while another VM holds its disk gets a CONFLICT line with disk, VM, holder, holder host and the LockRefused seq', async () => {
  const h1 = await host('hv-1', false);
  const h2 = await host('hv-2', true);
  const img = disk('shared.qcow2');
  assert.is(hook(h1, 'web2', U2, [img], 'prepare').code, 0);
  // web1 booted on hv-2 without its hook (or its hook failed open): the event stream reports it.
  h2.virsh.on('dumpxml web1', xml('web1', U1, [img], 3));
  h2.virsh.emit('web1', 'Started Booted');
  const [c, ...more] = await conflictLines(h2.d);
  assert.equal(more, []);
  assert.is(c!.disk, img);
  assert.is(c!.vm, 'web1');
  assert.is(c!.holder, 'web2');
  assert.is(c!.holderHost, 'hv-1');
  assert.match(String(c!.msg), /CONFLICT: VM web1 .* is running without its disk lock: disk .*shared.qcow2 is held/);
});

test('the qemu hook: a migration hand-over that finds another VM holding a disk gets a CONFLICT line with disk, VM, holder, holder host and the LockRefused seq (once the source let go)', async () => {
  const src = await host('hv-src', false);
  const dst = await host('hv-dst', false);
  const third = await host('hv-3', false);
  const a = disk('a.qcow2');
  const b = disk('b.qcow2');
  // web1 runs on the source holding a; its destination XML has a and b (b free at prepare).
  assert.is(hook(src, 'web1', U1, [a], 'prepare').code, 0);
  assert.is(hook(dst, 'web1', U1, [a, b], 'migrate').code, 0);
  const p = hook(dst, 'web1', U1, [a, b], 'prepare');
  assert.is(p.code, 0, p.stderr);
  // While the destination waits for a, another VM on a third host takes b (an attempt of the
  // destination that tries b before a holds b for an instant: retry until it is taken).
  await until('web2 on hv-3 takes b', () => hook(third, 'web2', U2, [b], 'prepare').code === 0, 30_000);
  // The source lets go of a (its Confirm): the destination's next attempt finds b held by web2.
  assert.is(hook(src, 'web1', U1, [a], 'release', 'end').code, 0);
  const [c, ...more] = await conflictLines(dst.d);
  assert.equal(more, []);
  assert.is(c!.disk, b);
  assert.is(c!.vm, 'web1');
  assert.is(c!.holder, 'web2');
  assert.is(c!.holderHost, 'hv-3');
  assert.match(String(c!.msg), /CONFLICT: VM web1 .* migrated in, but its disks are not this VM's to take over: disk .*b.qcow2 is held/);
});

test.run();
