// uri26 (decision 0025): a daemon restarted with a wrong libvirt_uri released, at its first reconcile,
// the locks of every VM that libvirt did not know, the qemu hook's included: running VMs lost their
// locks and another host could take their disks. Now a reconcile releases a VM's locks on "gone" only
// if the libvirt saying so is the one that vouched for the VM (journaled LibvirtVouched) or, for the
// hook's locks, the libvirt the hook serves (this host's qemu:///system).
//
// libvirt's test driver stands in for two libvirts here: test:///FILE loads its domains from FILE in
// every virsh process, so node.xml is "this host's libvirt" (vmA runs there) and empty.xml a libvirt
// that knows none of this host's VMs. test/e2e/libvirt-restart-uri.e2e.ts does the same with a real
// libvirtd, real QEMU VMs and the real hook.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, UUID2, UUID3, tmpdir, until } from '../helpers/daemon.js';
import { runHook } from '../helpers/hook-run.js';

const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');

interface LockRow {
  disk: string;
  vm: { uuid: string };
  source: string;
}
interface Kept {
  vm: string;
  reason: string;
  vouchedBy: { uri: string } | null;
}

const daemons: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
});

function nodeXml(domains: Array<{ name: string; uuid: string; disk: string }>): string {
  return `<node>\n${domains
    .map((d) => `  <domain type='test'><name>${d.name}</name><uuid>${d.uuid}</uuid><memory>65536</memory><os><type>hvm</type></os>
    <devices><disk type='file' device='disk'><source file='${d.disk}'/><target dev='vda'/></disk></devices></domain>\n`)
    .join('')}</node>\n`;
}

function setup() {
  const dir = tmpdir('vmlockd-uri26-');
  const lockspace = path.join(dir, 'lockspace');
  const state = path.join(dir, 'state');
  const right = path.join(dir, 'node.xml');
  const wrong = path.join(dir, 'empty.xml');
  fs.writeFileSync(wrong, nodeXml([]));
  const start = async (uri: string | undefined): Promise<TestDaemon> => {
    const d = new TestDaemon({ stateDir: state, lockspace, hostId: 'hv-a', extra: ['--log-level', 'info', ...(uri ? ['--libvirt', uri] : [])] });
    daemons.push(d);
    return d.start();
  };
  const otherHost = async (): Promise<TestDaemon> => {
    const b = new TestDaemon({ stateDir: path.join(dir, 'b'), lockspace, hostId: 'hv-b' });
    daemons.push(b);
    return b.start();
  };
  return { dir, right, wrong, start, otherHost };
}

const locksOf = (d: TestDaemon, uuid: string): LockRow[] => (JSON.parse(d.cli(['locks', '--json']).stdout) as LockRow[]).filter((l) => l.vm.uuid === uuid);
const keptOf = (d: TestDaemon): Kept[] => (JSON.parse(d.cli(['status', '--json']).stdout) as { libvirt: { keptLocksOf: Kept[] } | null }).libvirt?.keptLocksOf ?? [];
const reconciled = (d: TestDaemon): Promise<unknown> => until('the first reconcile', () => /reconciled:/.test(d.stderr), 60_000);

test('an event-stream-locked VM: a restart on a libvirt that does not know it keeps its lock; one on its own libvirt after it stopped releases it', async () => {
  const { dir, right, wrong, start, otherHost } = setup();
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, '');
  const vmA = { name: 'vmA', uuid: UUID1, disk };
  fs.writeFileSync(right, nodeXml([vmA]));
  let d = await start(`test://${right}`);
  await until('the reconcile to lock running vmA', () => locksOf(d, UUID1).length === 1, 60_000);
  await reconciled(d);
  await d.kill('SIGKILL');

  d = await start(`test://${wrong}`);
  await reconciled(d);
  const held = locksOf(d, UUID1);
  const b = await otherHost();
  const other = b.cli(['acquire', '--vm', UUID2, '--name', 'intruder', disk]);
  assert.is(held.length, 1, `vmA (running) lost its lock at a restart with a wrong libvirt_uri; the other host's acquire: ${other.code} ${other.stdout}${other.stderr}\n${d.stderr.slice(-2000)}`);
  assert.is(other.code, 3, other.stdout + other.stderr);
  await until('the warning naming vmA and both libvirts', () => d.stderr.includes(`VM vmA (uuid ${UUID1}) is not running`) && d.stderr.includes(`answered for by libvirt test://${right}`) && d.stderr.includes(`this is test://${wrong}`), 10_000);
  assert.equal(keptOf(d).map((k) => [k.vm, k.reason, k.vouchedBy?.uri]), [[UUID1, 'other-libvirt', `test://${right}`]]);
  await d.kill('SIGKILL');

  // vmA is destroyed while no daemon runs; a restart on its own libvirt releases its lock.
  fs.writeFileSync(right, nodeXml([]));
  d = await start(`test://${right}`);
  await until('vmA released', () => locksOf(d, UUID1).length === 0, 60_000);
  const audit = JSON.parse(d.cli(['audit', '--vm', UUID1, '--json']).stdout) as Array<{ kind: string; payload: { source?: string } }>;
  assert.is(audit.filter((f) => f.kind === 'LockReleased').pop()?.payload.source, 'virsh-reconcile');
  assert.ok(audit.some((f) => f.kind === 'LibvirtVouched'));
  const now = b.cli(['acquire', '--vm', UUID2, '--name', 'next', disk]);
  assert.is(now.code, 0, now.stdout + now.stderr);
});

test('a hook-locked VM: a restart on a libvirt the hook does not serve keeps its lock and says so in status', async () => {
  const { dir, wrong, start, otherHost } = setup();
  const disk = path.join(dir, 'h.qcow2');
  fs.writeFileSync(disk, '');
  let d = await start(undefined);
  const r = await runHook(d.socket, ['vmH', 'prepare', 'begin', '-'], TEMPLATE.replace('NAME', 'vmH').replace('UUID', UUID3).replace('DISK', disk));
  assert.is(r.code, 0, r.stderr);
  await d.kill('SIGKILL');

  d = await start(`test://${wrong}`);
  await reconciled(d);
  const held = locksOf(d, UUID3);
  const b = await otherHost();
  const other = b.cli(['acquire', '--vm', UUID2, '--name', 'intruder', disk]);
  assert.is(held.length, 1, `vmH (running, started through the hook) lost its lock at a restart with a wrong libvirt_uri; the other host's acquire: ${other.code} ${other.stdout}${other.stderr}\n${d.stderr.slice(-2000)}`);
  assert.is(held[0]!.source, 'hook');
  assert.is(other.code, 3, other.stdout + other.stderr);
  assert.equal(keptOf(d).map((k) => [k.vm, k.reason]), [[UUID3, 'not-hook-libvirt']]);
  assert.match(d.stderr, 'the qemu hook took its locks for qemu:///system on host');
});

test.run();
