// review31b (par31, decision 0030): the parallel catch-up under an address-space limit (RLIMIT_AS:
// `ulimit -v`, systemd's LimitAS=) that the serial catch-up runs well within. Each loader thread is a
// V8 isolate that reserves its own virtual memory (its CodeRange) at start; past the limit V8 aborts
// the whole process: 'Fatal process OOM in Failed to reserve virtual memory for CodeRange', SIGTRAP,
// exit 133, no answer. Measured 00:00 UTC on 3 hosts x 20000 facts: threads=1 answered at 1.2, 1.5
// and 2 GB; threads=2 and 3 aborted at 1.2, 1.5 and 2 GB, threads=16 at 3 GB; all answered at 6 GB.
// A thread's start that cannot be afforded must leave the chain to the main thread, never kill it.
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



/** 2 GB of address space: the serial catch-up answers within it (checked below). */
const LIMIT_KB = 2_000_000;

test('under ulimit -v the serial catch-up answers within, the threaded question answers as the serial one (no V8 abort)', () => {
  const s = setup('vmlockd-r31b-as-');
  publish(s.ls, 'hv-a', 'a000000000000001', 1, 3000, 128 * 1024);
  publish(s.ls, 'hv-b', 'b000000000000001', 2, 3000, 128 * 1024);
  publish(s.ls, 'hv-c', 'c000000000000001', 3, 3000, 128 * 1024);
  const ask = (env: NodeJS.ProcessEnv, cache: string) => {
    const args = [MAIN, 'audit', '--cluster', '--lockspace', s.ls, '--cache', path.join(s.root, cache), '--json', '--limit', '0', '--disk', '/srv/shared/d10.img'];
    const r = spawnSync('sh', ['-c', `ulimit -v ${LIMIT_KB} && exec "$0" "$@"`, process.execPath, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: r.status ?? -1, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  };
  const serial = ask(s.serial, 'serial');
  assert.is(serial.code, 0, `the serial catch-up answers under ulimit -v ${LIMIT_KB}: ${serial.stderr}`);
  for (const n of [2, 3]) {
    const p = ask({ ...s.serial, VMLOCKD_CLUSTER_THREADS: String(n) }, `threads-${n}`);
    assert.is(p.code, 0, `threads=${n} under ulimit -v ${LIMIT_KB}: exit ${p.code} (signal ${p.signal}): ${p.stderr.slice(0, 300)}`);
    assert.is(p.stdout, serial.stdout, `threads=${n}: the same answer as the serial catch-up`);
  }
  fs.rmSync(s.root, { recursive: true, force: true });
});

test.run();
