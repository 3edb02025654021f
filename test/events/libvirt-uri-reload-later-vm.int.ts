// review25c F2 (regression test, fixed by the `vouched` set): 37d5198 (review25a F2) keeps, after a live libvirt_uri change, the locks held BEFORE the
// new stream started (the `unvouched` set is filled once, in the handler's constructor). A VM the
// qemu hook starts AFTER the change (libvirtd still runs VMs here and calls the hook, whatever
// libvirt_uri says) is not in that set: the new stream's next reconcile (settle, 5 s after connect;
// then every 5 min) asks the other libvirt, hears "no such domain" and releases the running VM's
// lock; a second VM is then granted its disk.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, UUID2, UUID3, tmpdir, until } from '../helpers/daemon.js';
import { runHook } from '../helpers/hook-run.js';

const hook = runHook;
const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');


let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
});

test('libvirt_uri set live to another libvirt, then a VM started by the hook: the new stream\'s reconcile keeps its lock', async () => {
  const dir = tmpdir();
  const disk1 = path.join(dir, 'disk1.qcow2');
  const disk3 = path.join(dir, 'disk3.qcow2');
  fs.writeFileSync(disk1, '');
  fs.writeFileSync(disk3, '');
  const conf = path.join(dir, 'vmlockd.conf');
  fs.writeFileSync(conf, `log_level = 2\nfile_lockspace_dir = "${path.join(dir, 'ls')}"\n`);
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), hostId: 'hv-a', extra: ['--config', conf] }).start();
  const r1 = await hook(d.socket, ['vm1', 'prepare', 'begin', '-'], TEMPLATE.replace('NAME', 'vm1').replace('UUID', UUID1).replace('DISK', disk1));
  assert.is(r1.code, 0, r1.stderr);
  fs.appendFileSync(conf, 'libvirt_uri = "test:///default"\n');
  await until('libvirt_uri applied', () => JSON.parse(d!.cli(['status', '--json']).stdout).libvirtUri === 'test:///default', 20_000);
  await until('the reconnect reconciled', () => /reconciled:/.test(d!.stderr), 30_000);
  const before = d.stderr.match(/reconciled:/g)!.length;
  // libvirtd (the real one, still calling the hook) starts vm3 on this host now.
  const r3 = await hook(d.socket, ['vm3', 'prepare', 'begin', '-'], TEMPLATE.replace('NAME', 'vm3').replace('UUID', UUID3).replace('DISK', disk3));
  assert.is(r3.code, 0, r3.stderr);
  assert.is((JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string } }>).filter((l) => l.vm.uuid === UUID3).length, 1);
  // The stream's next reconcile (the settle one, 5 s after the connect).
  await until('another reconcile', () => (d!.stderr.match(/reconciled:/g)?.length ?? 0) > before, 30_000);
  const locks = (JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string } }>).filter((l) => l.vm.uuid === UUID3);
  const other = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk3]);
  assert.is(locks.length, 1, `vm3 (running, no release end) lost its lock to the other libvirt's reconcile; vm2's acquire: ${other.stdout}${other.stderr}\n${d.stderr.slice(-1500)}`);
  assert.is(other.code, 3, other.stdout + other.stderr);
});

test.run();
