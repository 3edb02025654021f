// review31b (par31, decision 0030): the parallel catch-up where a thread cannot be created. A process
// under a task limit (a systemd unit's TasksMax, a container's pids.max: the pids cgroup) that the
// serial catch-up fits in answers every question with VMLOCKD_CLUSTER_THREADS=1; with loader threads
// (the default: the machine's parallelism) the same question fails outright, 'vmlockd: EAGAIN', exit
// 1, in ~0.4 s (measured 23:56 UTC: serial peak 11 tasks; pids.max 12, 13 and 14 with threads 2, 3
// and 16 all failed; 15 answered). The thread's start throws out of catchUp instead of the chain
// being loaded on the main thread, as the serial path would.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, tmpdir } from '../helpers/daemon.js';
import { publishLockChain as publish } from '../helpers/lock-chain.js';



function setup(prefix: string) {
  const root = tmpdir(prefix);
  const ls = path.join(root, 'lockspace');
  const home = path.join(root, 'home');
  const state = path.join(root, 'state');
  fs.mkdirSync(home);
  fs.mkdirSync(state);
  const env = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock'), VMLOCKD_TEST_CLUSTER_PARALLEL_BYTES: '1', VMLOCKD_TEST_CLUSTER_WORKER_DIE: '' };
  const serial = { ...env, VMLOCKD_CLUSTER_THREADS: '1' };
  const parallel = { ...env, VMLOCKD_CLUSTER_THREADS: '3' };
  return { root, ls, state, serial, parallel };
}


/** A pids cgroup of our own (v1 pids controller or v2 with pids enabled), removed by the caller. */
function pidsCgroup(name: string): string {
  const v1 = '/sys/fs/cgroup/pids';
  const v2 = '/sys/fs/cgroup';
  const base = fs.existsSync(path.join(v1, 'cgroup.procs')) ? v1 : fs.existsSync(path.join(v2, 'cgroup.controllers')) && fs.readFileSync(path.join(v2, 'cgroup.subtree_control'), 'utf8').includes('pids') ? v2 : undefined;
  assert.ok(base !== undefined, 'a pids cgroup controller to limit the question\'s tasks');
  const dir = path.join(base, name);
  fs.mkdirSync(dir);
  return dir;
}

test('under a task limit the serial catch-up fits in, the threaded question answers as the serial one (no EAGAIN)', () => {
  const s = setup('vmlockd-r31b-tasks-');
  publish(s.ls, 'hv-a', 'a000000000000001', 1, 3000, 128 * 1024);
  publish(s.ls, 'hv-b', 'b000000000000001', 2, 3000, 128 * 1024);
  publish(s.ls, 'hv-c', 'c000000000000001', 3, 3000, 128 * 1024);
  const cg = pidsCgroup(`vmlockd-r31b-${process.pid}`);
  try {
    const ask = (env: NodeJS.ProcessEnv, cache: string) => {
      const args = [MAIN, 'audit', '--cluster', '--lockspace', s.ls, '--cache', path.join(s.root, cache), '--json', '--limit', '0', '--disk', '/srv/shared/d10.img'];
      const r = spawnSync('sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec "$0" "$@"`, process.execPath, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
    // The serial catch-up's own peak of tasks, unlimited.
    const free = ask(s.serial, 'measure');
    assert.is(free.code, 0, free.stderr);
    const peak = Number(fs.readFileSync(path.join(cg, 'pids.peak'), 'utf8'));
    assert.ok(peak > 1, `pids.peak ${peak}`);
    fs.writeFileSync(path.join(cg, 'pids.max'), String(peak + 1));
    const serial = ask(s.serial, 'serial');
    assert.is(serial.code, 0, `the serial catch-up fits in ${peak + 1} tasks: ${serial.stderr}`);
    for (const n of [2, 3]) {
      const p = ask({ ...s.serial, VMLOCKD_CLUSTER_THREADS: String(n) }, `threads-${n}`);
      assert.is(p.code, 0, `threads=${n} under pids.max ${peak + 1} (the serial peak ${peak}): the question failed: ${p.stderr}`);
      assert.is(p.stdout, serial.stdout, `threads=${n}: the same answer as the serial catch-up`);
    }
  } finally {
    fs.rmdirSync(cg);
  }
  fs.rmSync(s.root, { recursive: true, force: true });
});

test.run();
