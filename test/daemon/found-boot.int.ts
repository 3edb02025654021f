// The found scan (decisions/0002) after a start whose journal cannot say which boot it last ran in
// (a lost or new state directory): a holder record written before this boot began guards a VM that
// died with the host and is not taken (found by review 2: such a start took every pre-crash record,
// and an HA manager could not restart those VMs elsewhere); one written in this boot still is.
// The boot time is /proc/stat's btime; VMLOCKD_PROC_STAT_FILE stands in for it (a reboot cannot be
// done in a test), as VMLOCKD_BOOT_ID_FILE does for the boot id in reboot.int.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, tmpdir, until } from '../helpers/daemon.js';

const test = suite('found scan: records from before this boot');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

const heldBy = (d: TestDaemon): string[] => (JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string } }>).map((l) => l.vm.uuid);

/** A host that held a disk, was SIGKILLed, and lost its state directory whole. */
async function crashedHost() {
  const root = tmpdir('vmlockd-found-boot-');
  const img = path.join(root, 'd1.img');
  fs.writeFileSync(img, 'x');
  const opts = (h: string, env?: NodeJS.ProcessEnv) => ({ stateDir: path.join(root, `state-${h}`), lockspace: path.join(root, 'lockspace'), hostId: h, socket: path.join(root, `${h}.sock`), ...(env ? { env } : {}) });
  const a = new TestDaemon(opts('hA'));
  running.push(await a.start());
  assert.equal(a.cli(['acquire', '--vm', UUID1, img]).code, 0);
  await a.kill('SIGKILL');
  fs.rmSync(opts('hA').stateDir, { recursive: true });
  const stat = (bootSecs: number) => {
    const f = path.join(root, `stat-${bootSecs}`);
    fs.writeFileSync(f, `cpu  1 2 3 4\nbtime ${bootSecs}\nprocesses 1\n`);
    return { VMLOCKD_PROC_STAT_FILE: f };
  };
  return { img, opts, stat };
}

test('a new state directory after a reboot: the records from before the boot are logged, not taken; another host gets the disk', async () => {
  const s = await crashedHost();
  // The host "rebooted" after the grant: this boot began after the record was written.
  const a = new TestDaemon(s.opts('hA', s.stat(Math.ceil(Date.now() / 1000) + 2)));
  running.push(await a.start());
  assert.equal(heldBy(a), [], `a record from before this boot was taken: ${a.stderr}`);
  await until('the start log line', () => /1 record\(s\) naming this host were written before this boot .*not taken/.test(a.stderr), 15_000);
  assert.not.match(a.stderr, /FOUND/);
  const b = new TestDaemon(s.opts('hB'));
  running.push(await b.start());
  assert.equal(b.cli(['acquire', '--vm', UUID2, s.img]).code, 0, 'another host is refused the disk of a VM that died with its host');
});

test('a new state directory in the same boot: the record is found again (same boot, the VM may still run)', async () => {
  const s = await crashedHost();
  const a = new TestDaemon(s.opts('hA', s.stat(Math.floor(Date.now() / 1000) - 3600)));
  running.push(await a.start());
  assert.equal(heldBy(a), [UUID1], a.stderr);
  await until('the start log line', () => /FOUND 1 lock/.test(a.stderr), 15_000);
});

test("a boot time that cannot be read: nothing is taken without the journal's proof, and the log says why", async () => {
  const s = await crashedHost();
  const a = new TestDaemon(s.opts('hA', { VMLOCKD_PROC_STAT_FILE: '/nonexistent/stat' }));
  running.push(await a.start());
  assert.equal(heldBy(a), []);
  await until('the start log line', () => /at an unknown time \(the boot time cannot be read\)/.test(a.stderr), 15_000);
});

test.run();
