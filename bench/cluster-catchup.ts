// The cluster read cache's catch-up alone, for same-run A/B between two source trees (bench/README.md,
// cluster history): a fresh cache filled from a bench/cluster-audit.ts fixture, then (optionally) a few
// facts appended per host read into the filled cache. CPU time in process (`process.cpuUsage`).
//
//   node --import tsx bench/cluster-catchup.ts LOCKSPACE [--tree DIR] [--cache DIR] [--incremental N] [--split K] [--threads N]
//   node --import tsx bench/cluster-catchup.ts LOCKSPACE --ab 1,2 [--rounds 2] [--dist]
//
// LOCKSPACE: a fixture's lockspace (e.g. /tmp/x/cluster-audit-2x100000/lockspace, written by
// `VMLOCKD_BENCH_CLUSTER=2x100000 VMLOCKD_BENCH_CLUSTER_DIR=/tmp/x node --import tsx bench/cluster-audit.ts
// --generate-only`). --tree: the source tree whose src/cli/cluster-cache.ts is measured (default this
// one). --split K: the cache first reads each host's first K segments (hard links in a lockspace of
// its own), then the rest in a second catch-up, measured as `split*` (a large catch-up into a
// non-empty cache). --threads N: VMLOCKD_CLUSTER_THREADS for the catch-ups (the parallel catch-up,
// decision 0030; default: as the environment says). --ab A,B: only catch-ups from an empty cache, with
// A threads then B threads, alternating, --rounds times each (a same-run A/B); one line per run and one
// with each side's figures. CPU time is the process's (every thread's). Prints one JSON line.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chainHash, type ChainRow } from '../src/journal/schema.js';
import { encodeFact } from '../src/journal/segment.js';
import { ROOT } from './lib.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
};
const lockspace = args[0];
if (lockspace === undefined || lockspace.startsWith('--')) throw new Error('usage: cluster-catchup.ts LOCKSPACE [--tree DIR] [--cache DIR] [--incremental N]');
const tree = path.resolve(opt('--tree') ?? ROOT);
const cacheRoot = path.resolve(opt('--cache') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'catchup-')));
const incremental = Number(opt('--incremental') ?? 0);
const split = opt('--split') === undefined ? undefined : Number(opt('--split'));
if (opt('--threads') !== undefined) process.env.VMLOCKD_CLUSTER_THREADS = opt('--threads');
const ab = opt('--ab')?.split(',');

// --dist: the tree's build (dist/, as the CLI runs it: `npm run build` first). A loader thread started
// from source registers tsx and compiles the module graph again: ~700 ms of CPU time per thread
// against ~150-200 ms built (session 31), which a from-source A/B would count against the threads.
const entry = args.includes('--dist') ? path.join(tree, 'dist', 'cli', 'cluster-cache.js') : path.join(tree, 'src', 'cli', 'cluster-cache.ts');
const { ClusterCache } = (await import(pathToFileURL(entry).href)) as typeof import('../src/cli/cluster-cache.js');
fs.rmSync(cacheRoot, { recursive: true, force: true });
const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
if (ab !== undefined) {
  const rounds = Number(opt('--rounds') ?? 2);
  const runs: Array<{ threads: string; facts: number; wallMs: number; cpuMs: number; rateWall: number; rateCpu: number; load: string }> = [];
  for (let r = 0; r < rounds; r++) {
    for (const threads of ab) {
      process.env.VMLOCKD_CLUSTER_THREADS = threads;
      const c = ClusterCache.open(cacheRoot, lockspace);
      const load = os.loadavg()[0]!.toFixed(1);
      const u0 = process.cpuUsage();
      const rep = c.catchUp();
      const u1 = process.cpuUsage(u0);
      if (rep.problems.length > 0) throw new Error(JSON.stringify(rep.problems.slice(0, 3)));
      const run = { threads, facts: rep.newFacts, wallMs: Math.round(rep.ms), cpuMs: Math.round(cpuMs(u1)), rateWall: Math.round(rep.newFacts / (rep.ms / 1000)), rateCpu: Math.round(rep.newFacts / (cpuMs(u1) / 1000)), load };
      runs.push(run);
      process.stdout.write(`${JSON.stringify(run)}\n`);
      fs.rmSync(cacheRoot, { recursive: true, force: true });
    }
  }
  const side = (t: string) => runs.filter((x) => x.threads === t);
  process.stdout.write(`${JSON.stringify(Object.fromEntries(ab.map((t) => [`threads=${t}`, { rateWall: side(t).map((x) => x.rateWall), rateCpu: side(t).map((x) => x.rateCpu) }])))}\n`);
  process.exit(0);
}
let splitOut: Record<string, unknown> = {};
if (split !== undefined) {
  // The first K segments of each host, then the rest: both catch-ups into the same cache directory.
  const part = fs.mkdtempSync(path.join(os.tmpdir(), 'catchup-split-'));
  const from = path.join(lockspace, '.journal');
  const rest: Array<[string, string]> = [];
  for (const host of fs.readdirSync(from).sort()) {
    fs.mkdirSync(path.join(part, '.journal', host), { recursive: true });
    const segs = fs.readdirSync(path.join(from, host)).filter((f) => f.endsWith('.seg')).sort();
    segs.forEach((f, i) => (i < split ? fs.linkSync(path.join(from, host, f), path.join(part, '.journal', host, f)) : rest.push([path.join(from, host, f), path.join(part, '.journal', host, f)])));
  }
  try {
    const c = ClusterCache.open(cacheRoot, part);
    const a = c.catchUp();
    for (const [src, dst] of rest) fs.linkSync(src, dst);
    const s0 = process.cpuUsage();
    const b = c.catchUp();
    const s1 = process.cpuUsage(s0);
    if (a.problems.length + b.problems.length > 0) throw new Error(JSON.stringify([...a.problems, ...b.problems].slice(0, 3)));
    splitOut = { splitFirst: a.newFacts, splitFacts: b.newFacts, splitCpuMs: Math.round((s1.user + s1.system) / 1000), splitRateCpu: Math.round(b.newFacts / ((s1.user + s1.system) / 1e6)) };
  } finally {
    fs.rmSync(part, { recursive: true, force: true });
    fs.rmSync(cacheRoot, { recursive: true, force: true });
  }
}
const cache = ClusterCache.open(cacheRoot, lockspace);
const c0 = process.cpuUsage();
const first = cache.catchUp();
const c1 = process.cpuUsage(c0);
if (first.problems.length > 0) throw new Error(JSON.stringify(first.problems.slice(0, 3)));
const out: Record<string, unknown> = {
  tree,
  facts: first.newFacts,
  wallMs: Math.round(first.ms),
  cpuMs: Math.round(cpuMs(c1)),
  rateCpu: Math.round(first.newFacts / (cpuMs(c1) / 1000)),
  load: os.loadavg()[0]!.toFixed(1),
  ...splitOut,
};
if (incremental > 0) {
  // N facts appended after each host's newest segment's last fact (undone after).
  const undo: Array<() => void> = [];
  const dir = path.join(lockspace, '.journal');
  for (const host of fs.readdirSync(dir).sort()) {
    const segs = fs.readdirSync(path.join(dir, host)).filter((f) => f.endsWith('.seg')).sort();
    const file = path.join(dir, host, segs[segs.length - 1]!);
    const size = fs.statSync(file).size;
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    const last = JSON.parse(lines[lines.length - 1]!) as { t: string; seq: number; at: string; hash: string };
    if (last.t !== 'fact') throw new Error(`${file}: ends in a ${last.t}, not a fact (use a fixture whose newest segment is open)`);
    let prev: Buffer = Buffer.from(last.hash, 'hex');
    let ms = Date.parse(last.at);
    const text: string[] = [];
    for (let i = 1; i <= incremental; i++) {
      ms += 1000;
      const k = i % 3;
      const row: ChainRow = {
        seq: last.seq + i,
        at: new Date(ms).toISOString(),
        host,
        kind: k === 0 ? 'OwnerSeen' : k === 1 ? 'LockAcquired' : 'LockReleased',
        resource: k === 0 ? null : `/srv/vmlockd/lockspace/late${i % 500}`,
        disk: k === 0 ? null : `/var/lib/libvirt/images/late-${i % 500}.qcow2`,
        owner: `5a1e0000-0000-4000-8000-${String(i % 500).padStart(12, '0')}`,
        owner_name: `late-${i % 500}`,
        payload: JSON.stringify({ owner: { uuid: `5a1e0000-0000-4000-8000-${String(i % 500).padStart(12, '0')}`, name: `late-${i % 500}` }, mode: 'exclusive', source: 'virsh' }),
      };
      prev = chainHash(prev, row);
      text.push(encodeFact(row, prev).trimEnd());
    }
    fs.appendFileSync(file, text.join('\n') + '\n');
    undo.push(() => fs.truncateSync(file, size));
  }
  try {
    const c2 = process.cpuUsage();
    const inc = cache.catchUp();
    const c3 = process.cpuUsage(c2);
    if (inc.problems.length > 0) throw new Error(JSON.stringify(inc.problems.slice(0, 3)));
    out.incFacts = inc.newFacts;
    out.incCpuMs = Math.round(cpuMs(c3));
    out.incRateCpu = Math.round(inc.newFacts / (cpuMs(c3) / 1000));
  } finally {
    for (const u of undo) u();
  }
}
process.stdout.write(`${JSON.stringify(out)}\n`);
if (opt('--cache') === undefined) fs.rmSync(cacheRoot, { recursive: true, force: true });
