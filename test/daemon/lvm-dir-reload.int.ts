// lvm_lockspace_dir reloaded while an acquire waits for lvs (review25a F5, HIGH). The LV UUID is
// looked up before the critical section under the naming rules in force when the lookup started; a
// reload landing meanwhile is applied (no lock is held yet). The pipeline now checks, in the same
// turn as the critical section, that the rules are still those, and looks up again if not
// (src/engine/pipeline.ts lookUpThenHandle). Before, the acquire took the LV in the OLD directory
// while the daemon said the new one was in force, and a host on the new directory took it too.
// lvs is slow on a busy LVM host; here a scripted `lvs` (first in PATH) sleeps 3 s.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, UUID1, UUID2, tmpdir, until } from '../helpers/daemon.js';

const LV_UUID = 'aBcDeF-1234-5678-9abc-defg-hijk-lmnopq';
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function cliAsync(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    p.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    p.on('exit', (code) => resolve({ code, out }));
  });
}

test('lvm_lockspace_dir reloaded while an acquire waits for lvs: the LV is locked under the new directory, not the old', async () => {
  const dir = tmpdir();
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  const slow = path.join(dir, 'slow');
  const started = path.join(dir, 'lvs-started');
  fs.writeFileSync(path.join(bin, 'lvs'), `#!/bin/sh\n[ -e ${slow} ] && touch ${started} && sleep 3\necho "  ${LV_UUID}"\n`, { mode: 0o755 });
  const env = { PATH: `${bin}:${process.env.PATH}` };
  const shared = path.join(dir, 'shared');
  const lvmOld = path.join(shared, 'lvm-old');
  const lvmNew = path.join(shared, 'lvm-new');
  const conf = path.join(dir, 'a.conf');
  fs.writeFileSync(conf, `file_lockspace_dir = "${path.join(shared, 'files')}"\nlvm_lockspace_dir = "${lvmOld}"\n`);
  const a = await new TestDaemon({ stateDir: path.join(dir, 'state-a'), hostId: 'hv-a', env, extra: ['--config', conf] }).start();
  running.push(a);
  const lv = '/dev/vg-fix25a/lv0'; // named by its LV UUID only; the device node is never opened
  fs.writeFileSync(slow, '');
  const pending = cliAsync(['acquire', '--vm', UUID1, '--name', 'vm1', '--create', lv, '--socket', a.socket]);
  await until('lvs runs', () => fs.existsSync(started), 20_000);
  fs.writeFileSync(conf, `file_lockspace_dir = "${path.join(shared, 'files')}"\nlvm_lockspace_dir = "${lvmNew}"\n`);
  await until('the reload applied', () => JSON.parse(a.cli(['status', '--json']).stdout).config?.lvmLockspaceDir === lvmNew, 20_000);
  const first = await pending;
  fs.rmSync(slow);
  assert.is(first.code, 0, first.out);
  const locks = JSON.parse(a.cli(['locks', '--json']).stdout) as Array<{ lockspace: string; resource: string }>;
  assert.equal(
    locks.map((l) => l.lockspace),
    [lvmNew],
    `vm1 was granted ${lv} in ${locks.map((l) => l.resource).join(', ')} while lvm_lockspace_dir = ${lvmNew} was in force`,
  );
  // Host hv-b follows the setting now in force (the cluster moved its LVM lockspace).
  const b = await new TestDaemon({ stateDir: path.join(dir, 'state-b'), hostId: 'hv-b', env, extra: ['--lockspace', path.join(shared, 'files'), '--config', conf] }).start();
  running.push(b);
  const second = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', '--create', lv]);
  assert.is(second.code, 3, `vm1 on hv-a holds ${lv} and vm2 on hv-b was granted it too: ${second.stdout}${second.stderr}`);
});

test.run();
