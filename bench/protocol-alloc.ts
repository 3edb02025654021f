// JS heap allocated per virtlockd-protocol call on the daemon's main thread (issue 13, proto26).
//
//   node --import tsx bench/protocol-alloc.ts [DIR ...]   DIR: a built tree (DIR/dist/main.js); default this one
//
// Per DIR (alternating when several, BENCH_ROUNDS rounds, default 3): a fresh daemon with
// bench/alloc-preload.mjs, the C client (bench/protocol-client.c) runs WARMUP pairs (ACQUIRE AUTOCREATE +
// RELEASE, default 4000), then the preload counts while it runs PAIRS more (default 2000). Prints
// bytes per call (a pair is two calls) and GCs per 1,000 calls. ALLOC_SAMPLE=1: also the top allocation
// sites (self bytes per call, HeapProfiler sampling including collected objects); ALLOC_TOP=N of them.
// ALLOC_CLIENTS=16: that many clients.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ACQUIRE_FLAG, PROC, encodeCall } from '../src/events/virtlockd/codec.js';
import { ROOT } from './lib.js';

const DIRS = process.argv.slice(2).length > 0 ? process.argv.slice(2) : [ROOT];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = Number(process.env.WARMUP ?? 4000);
const PAIRS = Number(process.env.PAIRS ?? 2000);
const CLIENTS = Number(process.env.ALLOC_CLIENTS ?? 1);
const SAMPLE = process.env.ALLOC_SAMPLE === '1';
const TOP = Number(process.env.ALLOC_TOP ?? 25);
const PRELOAD = path.join(ROOT, 'bench', 'alloc-preload.mjs');

interface Node {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: Node[];
}

function buildClient(work: string): string {
  const bin = path.join(work, 'protocol-client');
  const r = spawnSync(process.env.CC ?? 'cc', ['-O2', '-pthread', '-o', bin, path.join(ROOT, 'bench', 'protocol-client.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc: ${r.stderr}`);
  return bin;
}

function frames(work: string, ls: string): string {
  const f: Buffer[] = [encodeCall(PROC.CREATE_LOCKSPACE, 0, { path: ls })];
  for (let i = 0; i < CLIENTS; i++) {
    const hex = (i + 1).toString(16).padStart(12, '0');
    f.push(encodeCall(PROC.REGISTER, 0, { owner: { uuid: `c0000000-0000-4000-8000-${hex}`, name: `cbench-${i}`, id: i + 1, pid: 910000 + i }, flags: 0 }));
    f.push(encodeCall(PROC.ACQUIRE_RESOURCE, 0, { path: ls, name: `lease-${i}`, flags: ACQUIRE_FLAG.AUTOCREATE }));
    f.push(encodeCall(PROC.RELEASE_RESOURCE, 0, { path: ls, name: `lease-${i}`, flags: 0 }));
  }
  const file = path.join(work, 'frames.bin');
  writeFileSync(file, Buffer.concat(f));
  return file;
}

function run(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d));
    p.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv[0]} exited ${code}`))));
  });
}

async function once(dir: string, bin: string): Promise<{ perCall: number; gcsPerK: number; profile?: Node }> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-alloc-'));
  const socket = path.join(work, 'run', 'virtlockd-sock');
  const out = path.join(work, 'alloc.json');
  const ls = path.join(work, 'lockspace');
  const file = frames(work, ls);
  const p = spawn(process.execPath, ['--import', PRELOAD, path.join(dir, 'dist', 'main.js'), 'serve', '--state-dir', path.join(work, 'state'), '--socket', path.join(work, 'vmlockd.sock'), '--lockspace', ls, '--host-id', 'bench', '--virtlockd-socket', socket], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ALLOC_OUT: out, ALLOC_SAMPLE: SAMPLE ? '1' : '0' },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let s = '';
      p.stdout!.on('data', (d: Buffer) => {
        s += d;
        if (s.includes('listening on')) resolve();
      });
      p.once('exit', (code) => reject(new Error(`daemon exited ${code}`)));
    });
    await run([bin, socket, file, String(CLIENTS), String(WARMUP), '0']);
    p.kill('SIGWINCH');
    await new Promise((r) => setTimeout(r, 300));
    await run([bin, socket, file, String(CLIENTS), String(PAIRS), '0']);
    p.kill('SIGWINCH');
    for (let i = 0; i < 200 && !existsSync(out); i++) await new Promise((r) => setTimeout(r, 50));
    const r = JSON.parse(readFileSync(out, 'utf8')) as { allocated: number; gcs: number; head?: Node };
    const calls = 2 * PAIRS * CLIENTS;
    return { perCall: r.allocated / calls, gcsPerK: (1000 * r.gcs) / calls, ...(r.head ? { profile: r.head } : {}) };
  } finally {
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await gone;
    rmSync(work, { recursive: true, force: true });
  }
}

function sites(head: Node, calls: number): string[] {
  const by = new Map<string, number>();
  let total = 0;
  const walk = (n: Node, stack: string[]): void => {
    const f = n.callFrame;
    const here = `${f.functionName || '(anon)'} ${f.url.replace(/^file:\/\/.*?\/(dist|src|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
    if (n.selfSize > 0) {
      // attribute to the nearest frame in our own code, and show the leaf
      const own = [...stack, here].reverse().find((s) => / (dist|src)\//.test(s)) ?? here;
      const key = own === here ? here : `${own}  <- ${here}`;
      by.set(key, (by.get(key) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c, [...stack, here]);
  };
  walk(head, []);
  return [`sampled ${(total / calls).toFixed(0)} B/call`, ...[...by].sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([k, v]) => `${(v / calls).toFixed(0).padStart(6)} B  ${k}`)];
}

async function main(): Promise<void> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'vmlockd-alloc-bin-'));
  chmodSync(work, 0o755);
  const bin = buildClient(work);
  const results = new Map<string, number[]>(DIRS.map((d) => [d, []]));
  process.stdout.write(`uptime: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; ${CLIENTS} client(s), ${WARMUP} warm-up pairs, ${PAIRS} counted\n`);
  for (let r = 0; r < ROUNDS; r++) {
    for (const dir of DIRS) {
      const res = await once(dir, bin);
      results.get(dir)!.push(res.perCall);
      process.stdout.write(`round ${r + 1} ${dir}: ${res.perCall.toFixed(0)} B/call, ${res.gcsPerK.toFixed(2)} GCs per 1,000 calls\n`);
      if (res.profile) for (const l of sites(res.profile, 2 * PAIRS * CLIENTS)) process.stdout.write(`  ${l}\n`);
    }
  }
  for (const [dir, v] of results) {
    const s = [...v].sort((a, b) => a - b);
    process.stdout.write(`${dir}: median ${s[Math.floor(s.length / 2)]!.toFixed(0)} B/call (${v.map((x) => x.toFixed(0)).join(', ')})\n`);
  }
  process.stdout.write(`uptime: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
  rmSync(work, { recursive: true, force: true });
}

await main();
