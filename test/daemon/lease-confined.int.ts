// review25a F14: a domain's <lease> is locked as <target path>/<lockspace>/<key>, created by the
// root daemon. libvirt accepts <lockspace>../../../../tmp/x</lockspace> (virsh define + dumpxml on the
// test driver keep it), so before the fix the qemu hook's prepare begin made the daemon create a
// holder-record file, named by <key> and holding the domain's free-text <name>, in any existing
// directory (e.g. /etc/sudoers.d). Such a lease is now bad input: the VM does not start, nothing is made.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, tmpdir } from '../helpers/daemon.js';

const HOOK = path.join(ROOT, 'dist', 'cli', 'hook-main.js');

let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
});

test('a <lease> whose lockspace climbs out of its target path creates nothing outside it', async () => {
  const dir = tmpdir();
  const victim = path.join(dir, 'etc', 'sudoers.d');
  fs.mkdirSync(victim, { recursive: true });
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'hv-a' }).start();
  const up = '../'.repeat('/var/lib/libvirt/lockd'.split('/').length - 1);
  const xml =
    `<domain type='kvm'><name>vm ALL=(ALL) NOPASSWD: ALL</name><uuid>66666666-6666-4666-8666-666666666666</uuid><devices>` +
    `<lease><lockspace>${up}${victim.slice(1)}</lockspace><key>zz-vm</key><target path='/var/lib/libvirt/lockd'/></lease></devices></domain>`;
  const code = await new Promise<number | null>((resolve) => {
    const p = spawn(process.execPath, [HOOK, 'qemu', '--socket', d!.socket, '--', 'vmx', 'prepare', 'begin', '-'], { stdio: ['pipe', 'ignore', 'ignore'] });
    p.on('exit', resolve);
    p.stdin.end(xml);
  });
  const made = fs.readdirSync(victim);
  const content = made.length > 0 ? fs.readFileSync(path.join(victim, made[0]!), 'utf8').replace(/\0+$/, '').slice(0, 300) : '';
  assert.is.not(code, 0, 'prepare begin of a domain with such a lease is refused');
  assert.equal(made, [], `prepare begin (exit ${code}) created ${made.map((f) => path.join(victim, f)).join(', ')}: ${content}`);
});

test.run();
