// review25a F9: nothing bounded the disks of one command. A domain defined with thousands of <disk>
// elements (6,000 are ~0.5 MiB of XML) made the qemu hook's prepare begin resolve and take every one
// in one synchronous turn (resolveCommand + Locker.prepare): no other client, protocol connection or
// verifier round was served meanwhile, and 20,000 spent RLIMIT_NOFILE so every other VM's acquire
// failed with EMFILE. Now one command names at most MAX_DISKS_PER_COMMAND disks (src/engine/command-bounds.ts):
// more is bad input, refused at once naming the count and the limit, no lock changed; as many as the
// limit still start.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_DISKS_PER_COMMAND } from '../../src/engine/command-bounds.js';
import { ROOT, TestDaemon, tmpdir } from '../helpers/daemon.js';
import { statusMs } from '../helpers/status-probe.js';

const HOOK = path.join(ROOT, 'dist', 'cli', 'hook-main.js');


/** Run prepare begin for a domain of `n` file disks while a second client keeps asking status. */
async function prepare(d: TestDaemon, dir: string, name: string, uuid: string, n: number): Promise<{ code: number | null; stderr: string; worst: number }> {
  const disks = Array.from({ length: n }, (_, i) => `<disk type='file' device='disk'><source file='${dir}/img/${name}-${i}.qcow2'/><target dev='vd${i}' bus='virtio'/></disk>`).join('');
  const xml = `<domain type='kvm'><name>${name}</name><uuid>${uuid}</uuid><devices>${disks}</devices></domain>`;
  const hook = spawn(process.execPath, [HOOK, 'qemu', '--socket', d.socket, '--timeout', '600', '--', name, 'prepare', 'begin', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  hook.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<number | null>((res) => hook.on('exit', (code) => res(code)));
  hook.stdin.end(xml);
  let finished = false;
  void done.then(() => (finished = true));
  let worst = 0;
  while (!finished) {
    worst = Math.max(worst, await statusMs(d.socket));
    await new Promise((r) => setTimeout(r, 50));
  }
  return { code: await done, stderr, worst };
}

let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
});

test('a domain with 6,000 disks is refused at once, naming the count and the limit; the daemon is not stalled and takes no lock', async () => {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'img'));
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'hv-a' }).start();
  const r = await prepare(d, dir, 'many', '55555555-5555-4555-8555-555555555555', 6000);
  const held = (JSON.parse(d.cli(['status', '--json']).stdout) as { locks: number }).locks;
  assert.ok(r.worst < 1000, `GET /v1/status waited ${r.worst} ms behind one prepare begin (hook exit ${r.code}, ${held} locks now held) ${r.stderr.slice(0, 200)}`);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`acquire names 6000 disks; at most ${MAX_DISKS_PER_COMMAND} per command`));
  assert.is(held, 0);
});

test('a domain with as many disks as the limit starts, every disk locked', async () => {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'img'));
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'hv-a' }).start();
  for (let i = 0; i < MAX_DISKS_PER_COMMAND; i++) fs.writeFileSync(path.join(dir, 'img', `full-${i}.qcow2`), '');
  const r = await prepare(d, dir, 'full', '66666666-6666-4666-8666-666666666666', MAX_DISKS_PER_COMMAND);
  assert.is(r.code, 0, r.stderr);
  assert.is((JSON.parse(d.cli(['status', '--json']).stdout) as { locks: number }).locks, MAX_DISKS_PER_COMMAND);
  console.log(`  ${MAX_DISKS_PER_COMMAND} disks in one prepare begin: GET /v1/status waited at most ${r.worst} ms meanwhile`);
});

test.run();
