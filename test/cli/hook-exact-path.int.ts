// The qemu hook locks a disk under the exact name libvirt holds (review25a F8). The domain XML parser ran
// with trimValues (src/events/domain-xml.ts), which trimmed ATTRIBUTE values too: <source file='/x/a.img '/>
// (libvirt keeps and writes the trailing space: `virsh define` + `dumpxml` on the test driver shows
// it) is locked as '/x/a.img', another file. A second VM reaching the real file by another name (a
// symlink, resolved by realpath to '/x/a.img ') gets the real lock file: both are granted.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, UUID2, tmpdir } from '../helpers/daemon.js';
import { runHook } from '../helpers/hook-run.js';

const hook = (socket: string, name: string, xml: string) => runHook(socket, [name, 'prepare', 'begin', '-'], xml);
const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');


let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
});

test('a disk file whose name ends in a space is locked under its own name by the hook', async () => {
  const dir = tmpdir();
  const disk = path.join(dir, 'a.img '); // the real image; QEMU opens exactly this
  fs.writeFileSync(disk, 'image');
  const link = path.join(dir, 'link.img');
  fs.symlinkSync('a.img ', link);
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'hv-a' }).start();
  const r1 = await hook(d.socket, 'vm1', TEMPLATE.replace('NAME', 'vm1').replace('UUID', UUID1).replace('DISK', disk));
  assert.is(r1.code, 0, r1.stderr);
  const r2 = await hook(d.socket, 'vm2', TEMPLATE.replace('NAME', 'vm2').replace('UUID', UUID2).replace('DISK', link));
  const locks = (JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ disk: string; vm: { name: string } }>).map((l) => `${l.vm.name}: ${JSON.stringify(l.disk)}`);
  assert.ok(r2.code !== 0, `both VMs were granted the one image ${JSON.stringify(disk)}: ${locks.join('; ')}`);
  assert.equal(locks, [`vm1: ${JSON.stringify(fs.realpathSync(disk))}`]);
  assert.match(r2.stderr, /vm1/);
});

test.run();
