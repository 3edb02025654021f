// issue 17 (smaller): a holder record is evidence only while its writer's lock is the one held. A
// vmlockd SIGKILLed while holding a disk leaves its "exclusive" record; when another process then
// holds byte 0 with a classic POSIX lock (virtlockd does, F_SETLK), `who`, `cluster` and the
// migration check must not name the dead vmlockd's VM as the holder. Real daemons, a real classic
// lock (python3's fcntl.lockf, a separate process), real files.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, cli, tmpdir, until } from '../helpers/daemon.js';

const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');
const xml = (name: string, uuid: string, disk: string): string => TEMPLATE.replace('NAME', name).replace('UUID', uuid).replace('DISK', disk);

let dir: string;
const procs: ChildProcess[] = [];
const daemons: TestDaemon[] = [];

test.before.each(() => {
  dir = tmpdir('vmlockd-record-trust-');
});

test.after.each(async () => {
  for (const p of procs.splice(0)) p.kill('SIGKILL');
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A process holding a classic POSIX write lock on byte 0 of `file`, as virtlockd does. */
async function classicLock(file: string): Promise<ChildProcess> {
  const p = spawn('python3', ['-c', 'import fcntl,sys,time\nf=open(sys.argv[1],"r+")\nfcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB, 1, 0)\nprint("locked", flush=True)\ntime.sleep(600)', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await until('the classic lock', () => out.includes('locked') || p.exitCode !== null);
  assert.ok(out.includes('locked'), out);
  return p;
}

test('given a SIGKILLed vmlockd\'s record under a classic lock (virtlockd), then who, cluster and the migration check do not name the dead holder', async () => {
  const lockspace = path.join(dir, 'lockspace');
  const disk = path.join(dir, 'web1.qcow2');
  fs.writeFileSync(disk, 'image');
  const a = await new TestDaemon({ stateDir: path.join(dir, 'a'), lockspace, hostId: 'hv-a' }).start();
  daemons.push(a);
  assert.is(a.cli(['hook', 'qemu', 'web1', 'prepare', 'begin', '-'], { input: xml('web1', UUID1, disk) }).code, 0);
  const before = JSON.parse(cli(['who', disk, '--json', '--lockspace', lockspace]).stdout) as { file: string; holders: Array<{ host: string }> };
  assert.is(before.holders[0]?.host, 'hv-a');
  await a.kill('SIGKILL');
  // A virtlockd host takes the disk: classic F_SETLK on byte 0; the dead vmlockd's record stays.
  await classicLock(before.file);
  const w = JSON.parse(cli(['who', disk, '--json', '--lockspace', lockspace]).stdout) as { state: string; holders: unknown[] };
  assert.is(w.state, 'exclusive');
  assert.equal(w.holders, [], 'the dead vmlockd is not named');
  assert.match(cli(['who', disk, '--lockspace', lockspace]).stdout, /a holder that writes no record \(virtlockd\?\)/);
  const c = cli(['cluster', '--lockspace', lockspace]).stdout;
  assert.not.match(c, /web1/);
  assert.match(c, /with no record \(virtlockd\?\)/);
  // The migration check on another host: the disk is not "this same VM on the source host".
  const b = await new TestDaemon({ stateDir: path.join(dir, 'b'), lockspace, hostId: 'hv-b' }).start();
  daemons.push(b);
  const m = b.cli(['hook', 'qemu', 'web1', 'migrate', 'begin', '-'], { input: xml('web1', UUID1, disk) });
  assert.is(m.code, 3, m.stderr);
});

test.run();
