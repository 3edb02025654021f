// The "found" lockspace scan (decisions/0002) must not adopt exclusive records naming this host
// that are stale, not grants the journal forgot (found by review 2): compaction keeps the generation floor.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, cli, tmpdir } from '../helpers/daemon.js';

const test = suite("found scan: stale records after compaction");
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function site() {
  const root = tmpdir('vmlockd-review2-found-');
  const ls = path.join(root, 'lockspace');
  const img = path.join(root, 'd1.img');
  fs.writeFileSync(img, 'x');
  const opts = (h: string) => ({ stateDir: path.join(root, `state-${h}`), lockspace: ls, hostId: h, socket: path.join(root, `${h}.sock`) });
  return { root, ls, img, opts };
}

const heldBy = (d: TestDaemon): string[] => (JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string } }>).map((l) => l.vm.uuid);

test('a lease lost and reported (LeaseLost) comes back as FOUND after `journal compact` and an unclean stop; another host is then refused the disk', async () => {
  const s = site();
  let a = new TestDaemon(s.opts('hA'));
  running.push(await a.start());
  assert.equal(a.cli(['acquire', '--vm', UUID1, s.img]).code, 0);
  await a.kill('SIGKILL');
  // Another owner that writes no record (virtlockd on another host) takes byte 0 while vmlockd is down.
  const lf = fs.readdirSync(s.ls).find((n) => /^[0-9a-f]{64}$/.test(n))!;
  const py = spawn('python3', ['-c', 'import fcntl,os,struct,sys,time\nfd=os.open(sys.argv[1],os.O_RDWR)\nfcntl.fcntl(fd,fcntl.F_OFD_SETLK,struct.pack("hhqqi",fcntl.F_WRLCK,0,0,1,0))\nprint("held",flush=True)\nsys.stdin.read()', path.join(s.ls, lf)], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise((r) => py.stdout.once('data', r));
  a = new TestDaemon(s.opts('hA'));
  running.push(await a.start());
  assert.equal(heldBy(a), [], 'the lease is lost while the other owner holds it');
  py.stdin.end();
  await new Promise((r) => py.once('exit', r));
  await a.kill('SIGTERM');
  const c = cli(['journal', 'compact', '--before', new Date(Date.now() + 60_000).toISOString(), '--state-dir', s.opts('hA').stateDir]);
  assert.equal(c.code, 0, c.stderr);
  a = new TestDaemon(s.opts('hA'));
  running.push(await a.start());
  await a.kill('SIGKILL');
  a = new TestDaemon(s.opts('hA'));
  running.push(await a.start());
  // The VM lost its lease long ago (reported); nothing this host holds was forgotten.
  assert.equal(heldBy(a), [], `a lost lease was adopted again as found: ${a.stderr}`);
  const b = new TestDaemon(s.opts('hB'));
  running.push(await b.start());
  assert.equal(b.cli(['acquire', '--vm', UUID2, s.img]).code, 0, 'another host is refused a disk nobody uses');
});

test.run();
