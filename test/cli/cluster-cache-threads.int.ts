// The parallel catch-up of the cluster read cache (decision 0030): chains loaded on loader threads
// (VMLOCKD_CLUSTER_THREADS=3, and VMLOCKD_TEST_CLUSTER_PARALLEL_BYTES=1 so every chain with anything
// to read goes to one) answer exactly what the serial catch-up (VMLOCKD_CLUSTER_THREADS=1) answers:
// the same facts, the same problems named the same way, in the same order. A loader thread that dies
// without an answer is named as the chain's problem and its build file removed, the other chains are
// read; a catch-up SIGKILLed mid-load leaves a cache the next one completes.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, cli, tmpdir, until } from '../helpers/daemon.js';
import { T0, publishLockChain as publish } from '../helpers/lock-chain.js';



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

/** Every question kind the compare runs: an answer as of a time, overlaps, a timeline, conflicts, a VM's history, all facts since. */
function questions(): string[][] {
  const at = new Date(T0 + 1_500 * 1000).toISOString();
  return [
    ['--disk', '/srv/shared/d10.img', '--at', at, '--json'],
    ['--disk', '/srv/shared/d20.img', '--json', '--limit', '0'],
    ['--overlaps', '--disk', '/srv/shared/d30.img', '--json'],
    ['--timeline', '--disk', '/srv/shared/d30.img', '--width', '100', '--since', new Date(T0).toISOString(), '--until', new Date(T0 + 86_400_000).toISOString()],
    ['--conflicts', '--json', '--limit', '0'],
    ['--vm', 'vm-2-17', '--json', '--limit', '0'],
    ['--json', '--limit', '400', '--since', new Date(T0 + 2_500 * 1000).toISOString()],
  ];
}

/** The answers of every question on `cache`, and journal verify --cluster's, each as {code, stdout, stderr}. */
function answers(ls: string, state: string, cache: string, env: NodeJS.ProcessEnv): Array<{ q: string; code: number; stdout: string; stderr: string }> {
  const out = questions().map((q) => ({ q: q.join(' '), ...cli(['audit', '--cluster', '--lockspace', ls, '--cache', cache, ...q], { env }) }));
  out.push({ q: 'journal verify --cluster', ...cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--cache', cache, '--state-dir', state, '--json'], { env }) });
  return out;
}

function sameAnswers(a: ReturnType<typeof answers>, b: ReturnType<typeof answers>, what: string): void {
  for (let i = 0; i < a.length; i++) {
    assert.is(a[i]!.code, b[i]!.code, `${what}: ${a[i]!.q}: exit code (${a[i]!.stderr} / ${b[i]!.stderr})`);
    assert.ok(a[i]!.code >= 0, `${what}: ${a[i]!.q}: the question ran to its end (not killed: timeout or output cut)`);
    assert.ok(a[i]!.stdout.length > 2, `${what}: ${a[i]!.q} answered something`);
    // Times of now (a crash window's end for a daemon not restarted since, when vanished facts were
    // noticed), verify's timing and the cache's directory (named in verify's reasons) aside.
    const norm = (s: string): string => s.replace(/"(ms|elapsedMs|seconds)":\s*[0-9.]+/g, '"$1":0').replace(/(vmlockd-cache-threads[^/]*)\/[^/\s"]+\//g, '$1/CACHE/').replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z/g, (t) => (Date.parse(t) > T0 + 86_400_000 * 60 ? 'NOW' : t));
    assert.is(norm(a[i]!.stdout), norm(b[i]!.stdout), `${what}: ${a[i]!.q}: the parallel catch-up answers otherwise than the serial one`);
    assert.is(norm(a[i]!.stderr), norm(b[i]!.stderr), `${what}: ${a[i]!.q}: stderr\n${a[i]!.stderr}\n---\n${b[i]!.stderr}`);
  }
}

test('threads=3 (every chain on a loader thread) answers every question as threads=1, a damaged chain named the same way', () => {
  const s = setup('vmlockd-cache-threads-');
  // Five chains over four hosts (hv-d has two journals), several segments each.
  publish(s.ls, 'hv-a', 'a000000000000001', 1, 3000, 128 * 1024);
  publish(s.ls, 'hv-b', 'b000000000000001', 2, 3000, 128 * 1024);
  publish(s.ls, 'hv-c', 'c000000000000001', 3, 2000, 128 * 1024);
  publish(s.ls, 'hv-d', 'd000000000000001', 4, 1500, 128 * 1024);
  publish(s.ls, 'hv-d', 'd000000000000002', 5, 500, 64 * 1024);
  const serialCache = path.join(s.root, 'cache-serial');
  const parallelCache = path.join(s.root, 'cache-parallel');
  sameAnswers(answers(s.ls, s.state, parallelCache, s.parallel), answers(s.ls, s.state, serialCache, s.serial), 'fresh caches');

  // A problem in one chain: a fact altered in place in hv-c's second segment (its chain hash no longer
  // matches), and facts appended to hv-a (an incremental catch-up beside it). Fresh caches and the
  // caches above, each way.
  const dir = path.join(s.ls, '.journal', 'hv-c');
  const seg = fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[1]!;
  const text = fs.readFileSync(path.join(dir, seg), 'utf8');
  const i = text.indexOf('"LockAcquired"', text.length >> 1);
  fs.writeFileSync(path.join(dir, seg), text.slice(0, i) + '"LockReleased"' + text.slice(i + '"LockAcquired"'.length));
  publish(s.ls, 'hv-e', 'e000000000000001', 6, 800, 64 * 1024);
  const p = answers(s.ls, s.state, parallelCache, s.parallel);
  sameAnswers(p, answers(s.ls, s.state, serialCache, s.serial), 'warm caches, a damaged chain');
  sameAnswers(answers(s.ls, s.state, path.join(s.root, 'fresh-p'), s.parallel), answers(s.ls, s.state, path.join(s.root, 'fresh-s'), s.serial), 'fresh caches, a damaged chain');
  assert.match(p[0]!.stderr, new RegExp(`host hv-c: journal c000000000000001: segment ${seg}`), `the damaged chain is named: ${p[0]!.stderr}`);
  fs.rmSync(s.root, { recursive: true, force: true });
});

test('a loader thread that dies without an answer: its chain named, its build removed, the others read; the next catch-up completes it', () => {
  const s = setup('vmlockd-cache-threads-died-');
  publish(s.ls, 'hv-a', 'a000000000000001', 1, 3000, 128 * 1024);
  publish(s.ls, 'hv-b', 'b000000000000001', 2, 3000, 128 * 1024);
  publish(s.ls, 'hv-c', 'c000000000000001', 3, 3000, 128 * 1024);
  const cache = path.join(s.root, 'cache');
  const ask = (c: string): string[] => ['audit', '--cluster', '--lockspace', s.ls, '--cache', c, '--json', '--limit', '0', '--since', new Date(T0 + 2_800 * 1000).toISOString()];
  const q = ask(cache);
  // hv-b's loader ends its thread after its first batch (cluster-cache-worker.ts's test hook).
  const died = cli(q, { env: { ...s.parallel, VMLOCKD_TEST_CLUSTER_WORKER_DIE: 'hv-b' } });
  assert.match(died.stderr, /host hv-b: segment b000000000000001-0+1\.seg: cannot read journal b000000000000001 \(.*\): the catch-up worker died/, died.stderr);
  const hosts = (JSON.parse(died.stdout) as Array<{ host: string }>).map((f) => f.host);
  const whole = (JSON.parse(cli(ask(path.join(s.root, 'whole')), { env: s.serial }).stdout) as Array<{ host: string }>).map((f) => f.host);
  assert.ok(whole.filter((h) => h === 'hv-a').length > 0);
  assert.is(hosts.filter((h) => h === 'hv-a').length, whole.filter((h) => h === 'hv-a').length, 'hv-a read');
  assert.is(hosts.filter((h) => h === 'hv-c').length, whole.filter((h) => h === 'hv-c').length, 'hv-c read');
  assert.is(hosts.filter((h) => h === 'hv-b').length, 0, 'nothing of hv-b answered: its build was never linked in');
  const left = fs.readdirSync(cache, { recursive: true }).map(String).filter((f) => f.includes('.build-'));
  assert.equal(left, [], 'the dead loader\'s build file removed');
  // Serially, no loader: the hook never runs, nothing dies.
  const serial = cli(q, { env: { ...s.serial, VMLOCKD_TEST_CLUSTER_WORKER_DIE: 'hv-b' } });
  assert.not.match(serial.stderr, /worker died/);
  // The next catch-up reads hv-b: the same answers as a fresh serial cache.
  sameAnswers(answers(s.ls, s.state, cache, s.parallel), answers(s.ls, s.state, path.join(s.root, 'fresh'), s.serial), 'after the dead loader');
  fs.rmSync(s.root, { recursive: true, force: true });
});

test('a parallel catch-up SIGKILLed mid-load leaves a cache the next one completes', async () => {
  const s = setup('vmlockd-cache-threads-killed-');
  const FACTS = 45_000; // ~20 MiB a host: bulk loaded, in many commits
  publish(s.ls, 'hv-a', 'a000000000000001', 1, FACTS, 4 * 1024 * 1024);
  publish(s.ls, 'hv-b', 'b000000000000001', 2, FACTS, 4 * 1024 * 1024);
  publish(s.ls, 'hv-c', 'c000000000000001', 3, FACTS, 4 * 1024 * 1024);
  const cache = path.join(s.root, 'cache');
  const p = spawn(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', s.ls, '--cache', cache, '--overlaps'], { env: { ...process.env, ...s.parallel }, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => p.on('exit', () => resolve()));
  try {
    // Killed once two chains are being built at once (two build files past 1 MiB: a loader's and another's).
    await until('two chains loading at once', () => {
      if (p.exitCode !== null) throw new Error('the question answered before it could be killed: make the fixture bigger');
      const builds = fs.existsSync(cache) ? fs.readdirSync(cache, { recursive: true }).map(String).filter((f) => /\.db\.build-/.test(f)) : [];
      return builds.filter((f) => {
        try {
          return fs.statSync(path.join(cache, f)).size > 1024 * 1024;
        } catch {
          return false;
        }
      }).length >= 2;
    }, 120_000);
  } finally {
    p.kill('SIGKILL');
    await exited;
  }
  sameAnswers(answers(s.ls, s.state, cache, s.parallel), answers(s.ls, s.state, path.join(s.root, 'fresh'), s.serial), 'after a SIGKILL');
  const left = fs.readdirSync(cache, { recursive: true }).map(String).filter((f) => f.includes('.build-'));
  assert.equal(left, [], 'no build left behind');
  fs.rmSync(s.root, { recursive: true, force: true });
});

test('the free-space floor counts the chains loading in parallel: one that would fit alone waits for the next catch-up', () => {
  const s = setup('vmlockd-cache-threads-floor-');
  publish(s.ls, 'hv-a', 'a000000000000001', 1, 9000, 1024 * 1024);
  publish(s.ls, 'hv-b', 'b000000000000001', 2, 9000, 1024 * 1024);
  const bytes = (h: string): number => fs.readdirSync(path.join(s.ls, '.journal', h)).reduce((n, f) => n + fs.statSync(path.join(s.ls, '.journal', h, f)).size, 0);
  const seg = Math.max(bytes('hv-a'), bytes('hv-b'));
  const mnt = path.join(s.root, 'small');
  fs.mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mnt], { encoding: 'utf8' });
  assert.is(m.status, 0, `mount a real 64 MiB tmpfs: ${m.stderr}`);
  try {
    // Free: the floor (6.4 MiB) and 2.5x a chain's segment bytes. Checked alone, a chain is admitted
    // (its load's room, 2.4x its segment bytes for a new chain, fits above the floor: loadRoom,
    // review28c F4); beside hv-a loading on a thread (that room kept for it), hv-b is not: the serial
    // path would have admitted it after hv-a, with what hv-a left.
    const st = fs.statfsSync(mnt);
    const floor = Math.floor((st.blocks * st.bsize) / 10);
    fs.writeFileSync(path.join(mnt, 'fill'), Buffer.alloc(st.bavail * st.bsize - floor - Math.floor(2.5 * seg)));
    const cache = path.join(mnt, 'cache');
    const q = ['audit', '--cluster', '--lockspace', s.ls, '--cache', cache, '--json', '--limit', '0', '--since', new Date(T0 + 8_900 * 1000).toISOString()];
    const r = cli(q, { env: s.parallel });
    assert.match(r.stderr, /host hv-b: .*journal b000000000000001 of host hv-b is not read into the cluster cache .*: its load may take \d+ MiB there, and \d+ MiB is free above its floor of \d+ MiB \(\d+ MiB free, \d+ MiB of it kept for the chains loading in parallel\)/, r.stderr);
    const hosts = (JSON.parse(r.stdout) as Array<{ host: string }>).map((f) => f.host);
    assert.ok(hosts.includes('hv-a') && !hosts.includes('hv-b'), `hv-a read, hv-b left for later: ${[...new Set(hosts)].join(', ')}`);
    // Room again: hv-b is read.
    fs.truncateSync(path.join(mnt, 'fill'), 0);
    const r2 = cli(q, { env: s.parallel });
    assert.not.match(r2.stderr, /under its floor|not read into the cluster cache/, r2.stderr);
    assert.ok((JSON.parse(r2.stdout) as Array<{ host: string }>).some((f) => f.host === "hv-b"), `hv-b read: ${r2.stderr} ${r2.stdout.slice(0, 300)} ${fs.readdirSync(cache, { recursive: true }).join(" ")}`);
  } finally {
    spawnSync('umount', [mnt]);
  }
  fs.rmSync(s.root, { recursive: true, force: true });
});

test.run();
