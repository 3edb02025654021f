// `audit --cluster`: catch-up of the local read cache from published segments, and every cluster
// question's latency after it.
//
//   node --import tsx bench/cluster-audit.ts            8 hosts x 1M facts; rewrites the cluster-audit section of bench/README.md
//   node --import tsx bench/cluster-audit.ts --quick    3 hosts x 50k facts; prints only
//   VMLOCKD_BENCH_CLUSTER=HOSTSxFACTS                   another size (e.g. 8x250000); prints only
//   --generate-only                                     write the fixture (once) and stop
//   VMLOCKD_BENCH_CLUSTER_DIR=DIR                       where the fixture and the cache go (default bench/out/;
//                                                       the 8 x 1M fixture is ~4 GiB: e.g. a directory under /tmp)
//
// The segments are a benchmark fixture: synthetic facts (a host's VMs starting and stopping, shared
// disks held by every host in shared mode, exclusive disks handed from host to host in time windows,
// 1% refusals, a daemon restart every 250k facts with a Reacquired per held lock), each chained with
// the journal's own hash function and written with the one encoder (src/journal/segment.ts) in 8 MiB
// segments, cached under bench/out/cluster-audit-<H>x<N>/ (gitignored).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CONFLICT_KINDS } from '../src/cli/audit-query.js';
import { ClusterCache } from '../src/cli/cluster-cache.js';
import { clusterFacts, clusterHolders, clusterOverlaps, clusterTimeline, type ClusterSources, type HostHistory } from '../src/cli/cluster-query.js';
import { GENESIS_HASH, chainHash, type ChainRow } from '../src/journal/schema.js';
import { encodeFact, encodeHeader, segmentFileName } from '../src/journal/segment.js';
import { mulberry32 } from '../test/helpers/prng.js';
import { segmentWriter } from '../test/helpers/segments.js';
import { ROOT, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
const CUSTOM = /^(\d+)x(\d+)$/.exec(process.env.VMLOCKD_BENCH_CLUSTER ?? '');
const HOSTS = CUSTOM ? Number(CUSTOM[1]) : QUICK ? 3 : 8;
const FACTS = CUSTOM ? Number(CUSTOM[2]) : QUICK ? 50_000 : 1_000_000;
const RUNS = QUICK ? 50 : 200;
const GENERATOR_VERSION = 1;
/**
 * `VMLOCKD_BENCH_CLUSTER_PAYLOAD=daemon`: each lock fact's payload also carries the resource fields a
 * daemon journals (resource, name, lockspace, kind, disk, path and the disk's `inode` identity), so the
 * schema-4 disk_names triggers find a key in it as in a real journal (the default payloads are the
 * short ones every figure before session 27 was measured with). A fixture of its own.
 */
const DAEMON_PAYLOADS = process.env.VMLOCKD_BENCH_CLUSTER_PAYLOAD === 'daemon';
const OUT = path.join(process.env.VMLOCKD_BENCH_CLUSTER_DIR ?? path.join(ROOT, 'bench', 'out'), `cluster-audit-${HOSTS}x${FACTS}${DAEMON_PAYLOADS ? '-daemon' : ''}`);
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const GAP_MS = 3000;
const WINDOW_MS = 6 * 3_600_000;
const MOVING = 64;
const SHARED = 32;
const VMS = 2000;

interface Meta {
  version: number;
  hosts: string[];
  disks: string[];
  vms: string[];
  firstAt: string;
  lastAt: string;
  /** Each host's live (last) segment and its size as generated: a run's appended facts are cut off again. */
  live: Record<string, { file: string; size: number }>;
}

function hostName(h: number): string {
  return `hv-${String(h).padStart(2, '0')}`;
}

/** One host's facts, chained, into its segments. */
function generateHost(lockspace: string, h: number, disks: Set<string>, vmNames: Set<string>): { lastAt: string } {
  const host = hostName(h);
  const rnd = mulberry32(1000 + h);
  const w = segmentWriter(lockspace, host, `${h.toString(16).padStart(2, '0')}00000000000001`.slice(0, 16), { segmentBytes: 8 * 1024 * 1024 });
  let seq = 0;
  let prev = GENESIS_HASH;
  let ms = T0 + h * 97;
  const ls = `/srv/vmlockd/lockspace`;
  const emit = (kind: string, at: string, disk: string | null, owner: { uuid: string; name: string } | null, payload: Record<string, unknown>) => {
    seq++;
    if (DAEMON_PAYLOADS && disk !== null) {
      const lockFile = `${ls}/${disk.length.toString(16)}${disk.replace(/\W/g, '').slice(-40)}`;
      let ino = 0;
      for (let i = 0; i < disk.length; i++) ino = (ino * 31 + disk.charCodeAt(i)) >>> 0;
      payload = { ...(payload.owner !== undefined ? { owner: payload.owner } : {}), resource: lockFile, name: disk.slice(disk.lastIndexOf('/') + 1), lockspace: ls, kind: 'file', disk, path: disk, inode: `2049:${ino}:1767225600`, ...payload };
    }
    const row: ChainRow = {
      seq,
      at,
      host,
      kind,
      resource: disk === null ? null : `${ls}/${disk.length.toString(16)}${disk.replace(/\W/g, '').slice(-40)}`,
      disk,
      owner: owner?.uuid ?? null,
      owner_name: owner?.name ?? null,
      payload: JSON.stringify(payload),
    };
    prev = chainHash(prev, row);
    w.add(row, prev);
  };
  const tick = () => {
    ms += Math.max(1, Math.round(-Math.log(1 - rnd()) * GAP_MS));
    return new Date(ms).toISOString();
  };
  const vms = Array.from({ length: VMS }, (_, i) => {
    const id = `${String(h).padStart(2, '0')}${String(i).padStart(5, '0')}`;
    const owner = { uuid: `5a1e0000-0000-4000-8000-${id.padStart(12, '0')}`, name: `vm-${id}` };
    const own = [`/var/lib/libvirt/images/vm-${id}-disk0.qcow2`, ...(i % 2 === 0 ? [`/var/lib/libvirt/images/vm-${id}-disk1.qcow2`] : [])];
    vmNames.add(owner.name);
    for (const d of own) disks.add(d);
    return { owner, own, shared: i < SHARED ? `/srv/shared/cluster-${String(i).padStart(3, '0')}.img` : undefined };
  });
  const running = new Set<number>();
  const held = new Map<string, { owner: { uuid: string; name: string }; mode: string }>();
  const started = (at: string) => emit('DaemonStarted', at, null, null, { pid: 1000 + seq, version: 'bench', lockspace: ls, held: held.size });
  started(tick());
  for (const [disk, x] of held) emit('Reacquired', tick(), disk, x.owner, { owner: x.owner, mode: x.mode, generation: 1 });
  // Exclusive disks moved between hosts: disk k belongs to host (window + k) % HOSTS during a window.
  let window = -1;
  const movers = Array.from({ length: MOVING }, (_, k) => ({ disk: `/srv/moving/mv-${String(k).padStart(3, '0')}.img`, owner: { uuid: `7e000000-0000-4000-8000-${String(k).padStart(12, '0')}`, name: `mover-${k}` } }));
  for (const m of movers) {
    disks.add(m.disk);
    vmNames.add(m.owner.name);
  }
  let nextRestart = 250_000;
  while (seq < FACTS) {
    const at = tick();
    const wnd = Math.floor((ms - T0) / WINDOW_MS);
    if (wnd !== window) {
      // Hand-over: release what this host held in the old window before taking the new window's disks
      // (the new window's holder on another host starts a minute in, so the intervals never meet).
      for (let k = 0; k < MOVING; k++) {
        const m = movers[k]!;
        if (window >= 0 && (window + k) % HOSTS === h && held.has(m.disk)) {
          emit('LockReleased', at, m.disk, m.owner, { owner: m.owner, source: 'virsh', reason: 'migrated' });
          held.delete(m.disk);
        }
      }
      window = wnd;
      continue;
    }
    if (ms - T0 - window * WINDOW_MS > 60_000) {
      const k = movers.findIndex((m, i) => (window + i) % HOSTS === h && !held.has(m.disk) && ms - T0 < (window + 1) * WINDOW_MS - 120_000);
      if (k >= 0 && rnd() < 0.2) {
        const m = movers[k]!;
        emit('LockAcquired', at, m.disk, m.owner, { owner: m.owner, mode: 'exclusive', source: 'virsh', generation: window + 1 });
        held.set(m.disk, { owner: m.owner, mode: 'exclusive' });
        continue;
      }
    }
    if (seq >= nextRestart) {
      nextRestart += 250_000;
      emit('DaemonStopped', at, null, null, { pid: 1000 + seq, reason: 'SIGTERM', held: held.size });
      started(tick());
      for (const [disk, x] of held) emit('Reacquired', tick(), disk, x.owner, { owner: x.owner, mode: x.mode, generation: 1 });
      continue;
    }
    const i = Math.floor(rnd() * VMS);
    const vm = vms[i]!;
    if (!running.has(i)) {
      emit('OwnerSeen', at, null, vm.owner, { owner: vm.owner, event: 'started', source: 'virsh' });
      if (rnd() < 0.01) {
        emit('LockRefused', at, vm.own[0]!, vm.owner, { owner: vm.owner, mode: 'exclusive', source: 'virsh', holder: { host: hostName((h + 1) % HOSTS), mode: 'exclusive' }, message: 'held elsewhere' });
        continue;
      }
      running.add(i);
      for (const d of vm.own) {
        emit('LockAcquired', at, d, vm.owner, { owner: vm.owner, mode: 'exclusive', source: 'virsh', generation: 1 });
        held.set(d, { owner: vm.owner, mode: 'exclusive' });
      }
      if (vm.shared !== undefined) {
        disks.add(vm.shared);
        emit('LockAcquired', at, vm.shared, vm.owner, { owner: vm.owner, mode: 'shared', source: 'virsh' });
        held.set(`${vm.shared}`, { owner: vm.owner, mode: 'shared' });
      }
    } else {
      running.delete(i);
      for (const d of [...vm.own, ...(vm.shared ? [vm.shared] : [])]) {
        emit('LockReleased', at, d, vm.owner, { owner: vm.owner, source: 'virsh', reason: 'stopped' });
        held.delete(d);
      }
    }
  }
  w.flush();
  return { lastAt: new Date(ms).toISOString() };
}

function generate(): Meta {
  const metaFile = path.join(OUT, 'meta.json');
  if (fs.existsSync(metaFile)) {
    const m = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as Meta;
    if (m.version === GENERATOR_VERSION) return m;
  }
  fs.rmSync(OUT, { recursive: true, force: true });
  const lockspace = path.join(OUT, 'lockspace');
  fs.mkdirSync(lockspace, { recursive: true });
  const disks = new Set<string>();
  const vms = new Set<string>();
  let lastAt = '';
  const t = performance.now();
  for (let h = 0; h < HOSTS; h++) {
    const r = generateHost(lockspace, h, disks, vms);
    if (r.lastAt > lastAt) lastAt = r.lastAt;
    process.stderr.write(`generated ${hostName(h)}: ${FACTS} facts (${((performance.now() - t) / 1000).toFixed(0)} s)\n`);
  }
  const live: Meta['live'] = {};
  for (let h = 0; h < HOSTS; h++) {
    const dir = path.join(lockspace, '.journal', hostName(h));
    const file = path.join(dir, fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort().pop()!);
    live[hostName(h)] = { file, size: fs.statSync(file).size };
  }
  const m: Meta = { version: GENERATOR_VERSION, hosts: Array.from({ length: HOSTS }, (_, h) => hostName(h)), disks: [...disks].sort(), vms: [...vms].sort(), firstAt: new Date(T0).toISOString(), lastAt, live };
  fs.writeFileSync(metaFile, JSON.stringify(m));
  return m;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function time(fn: () => unknown): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

/**
 * `--segments K`: only each host's first K segments of the fixture (hard links into another
 * lockspace), the fixture's size cut down when the whole of it would take too long on this machine.
 * The K-th segment ends in its seal: the reader waits for a next one, as at a live writer's end.
 */
function subset(meta: Meta, k: number): { lockspace: string; lastAt: string; live: Meta['live'] } {
  const from = path.join(OUT, 'lockspace', '.journal');
  const to = path.join(OUT, `lockspace-first-${k}`);
  fs.rmSync(to, { recursive: true, force: true });
  let lastAt = meta.firstAt;
  const live: Meta['live'] = {};
  for (const host of meta.hosts) {
    fs.mkdirSync(path.join(to, '.journal', host), { recursive: true });
    const segs = fs.readdirSync(path.join(from, host)).filter((f) => f.endsWith('.seg')).sort().slice(0, k);
    for (const f of segs) fs.linkSync(path.join(from, host, f), path.join(to, '.journal', host, f));
    const lastFile = path.join(to, '.journal', host, segs[segs.length - 1]!);
    const lines = fs.readFileSync(lastFile, 'utf8').trimEnd().split('\n');
    const lastFact = [...lines].reverse().map((l) => JSON.parse(l) as { t: string; at?: string }).find((l) => l.t === 'fact');
    if (lastFact?.at !== undefined && lastFact.at > lastAt) lastAt = lastFact.at;
    live[host] = { file: lastFile, size: fs.statSync(lastFile).size };
  }
  return { lockspace: to, lastAt, live };
}

function main(): void {
  const full = generate();
  if (process.argv.includes('--generate-only')) return;
  for (const x of Object.values(full.live)) fs.truncateSync(x.file, x.size);
  const k = process.argv.includes('--segments') ? Number(process.argv[process.argv.indexOf('--segments') + 1]) : undefined;
  const cut = k !== undefined ? subset(full, k) : undefined;
  const meta: Meta = cut === undefined ? full : { ...full, lastAt: cut.lastAt, live: cut.live };
  const lockspace = cut?.lockspace ?? path.join(OUT, 'lockspace');
  const cacheRoot = path.join(OUT, 'cache');
  fs.rmSync(cacheRoot, { recursive: true, force: true });
  const rows: Array<[string, string, string]> = [];
  let total = HOSTS * FACTS;

  // 1. A fresh cache reads everything.
  const cache = ClusterCache.open(cacheRoot, lockspace);
  const cpu0 = process.cpuUsage();
  const first = cache.catchUp();
  const cpu1 = process.cpuUsage(cpu0);
  if (first.problems.length > 0) throw new Error(JSON.stringify(first.problems));
  total = first.newFacts;
  const size = `${HOSTS}x${total / HOSTS >= 1e6 ? `${(total / HOSTS / 1e6).toFixed(1)}M` : `${Math.round(total / HOSTS / 1e3)}k`}`;
  const rate = (facts: number, ms: number) => Math.round(facts / (ms / 1000)).toLocaleString('en');
  const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
  rows.push([
    `catch-up from an empty cache: ${total.toLocaleString('en')} facts, ${HOSTS} hosts (decode + hash check + insert + index build)${cut ? `, the first ${k} segments of each host's ${FACTS.toLocaleString('en')}` : ''}`,
    `${rate(first.newFacts, first.ms)} facts/s wall (${(first.ms / 1000).toFixed(1)} s); ${rate(first.newFacts, cpuMs(cpu1))} facts/s of CPU time`,
    '>= 100,000 facts/s',
  ]);
  // 2. Nothing new: re-list every host directory, read each live segment from its offset to EOF.
  const idle: number[] = [];
  for (let i = 0; i < 20; i++) idle.push(cache.catchUp().ms);
  rows.push(['catch-up with nothing new (re-list, read to EOF)', `p50 ${pct(idle, 50).toFixed(1)} ms, p99 ${pct(idle, 99).toFixed(1)} ms`, '-']);
  // 3. Incremental: 5,000 more facts per host appended to the live segments (indexes in place).
  const extra = 5000;
  const undo: Array<() => void> = [];
  for (let h = 0; h < HOSTS; h++) undo.push(appendFacts(meta.live[hostName(h)]!.file, h, extra));
  const cpu2 = process.cpuUsage();
  const inc = cache.catchUp();
  const cpu3 = process.cpuUsage(cpu2);
  rows.push([
    `incremental catch-up: ${(extra * HOSTS).toLocaleString('en')} new facts into the filled cache (indexes in place)`,
    `${rate(inc.newFacts, inc.ms)} facts/s wall (${inc.ms.toFixed(0)} ms); ${rate(inc.newFacts, cpuMs(cpu3))} facts/s of CPU time`,
    '>= 100,000 facts/s',
  ]);

  // 4. Every question, after catch-up.
  const hosts: HostHistory[] = [];
  const byHost = new Map<string, HostHistory['chains'][number][]>();
  for (const c of cache.chains()) {
    const list = byHost.get(c.host) ?? [];
    list.push({ chain: c, journal: cache.openChain(c) });
    byHost.set(c.host, list);
  }
  for (const [host, chains] of byHost) hosts.push({ host, alive: true, chains });
  const cs: ClusterSources = { hosts, now: meta.lastAt };
  const rnd = mulberry32(7);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const moving = meta.disks.filter((d) => d.startsWith('/srv/moving/'));
  const span = Date.parse(meta.lastAt) - Date.parse(meta.firstAt);
  const randomAt = () => new Date(Date.parse(meta.firstAt) + Math.floor(rnd() * span)).toISOString();
  const dayBefore = (at: string) => new Date(Date.parse(at) - 86_400_000).toISOString();
  const questions: Array<[string, () => unknown]> = [
    ['`--disk D --at T` (any disk, any time)', () => clusterHolders(cs, pick(meta.disks), randomAt())],
    ['`--disk D --at T` (a disk moved between hosts)', () => clusterHolders(cs, pick(moving), randomAt())],
    ['`--disk D` history, newest 1000', () => clusterFacts(cs, { disk: pick(moving) }, 1000)],
    ['`--vm NAME` history, newest 1000', () => clusterFacts(cs, { owner: pick(meta.vms) }, 1000)],
    ['`--conflicts --since` (one day), newest 1000', () => {
      const at = randomAt();
      return clusterFacts(cs, { kinds: [...CONFLICT_KINDS], since: dayBefore(at), until: at }, 1000);
    }],
    ['`--timeline --disk D` (one day, a moved disk)', () => {
      const at = randomAt();
      return clusterTimeline(cs, pick(moving), dayBefore(at), at);
    }],
    ['`--overlaps --disk D` (a moved disk, whole history)', () => clusterOverlaps(cs, pick(moving))],
    ['`--follow` one poll (catch-up with nothing new + a query per chain)', () => {
      cache.catchUp();
      for (const h of hosts) for (const c of h.chains) c.journal.query({ kinds: ['LockRefused'], afterSeq: (c.chain.last?.seq ?? 50) - 50 });
    }],
  ];
  for (const [name, fn] of questions) {
    fn();
    const ts: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const c = process.cpuUsage();
      ts.push(time(fn));
      cpu.push(cpuMs(process.cpuUsage(c)));
    }
    // Wall time on a shared machine is mostly waiting for a core; the CPU time is what the question costs.
    rows.push([`${size}: ${name}`, `p50 ${pct(ts, 50).toFixed(2)} ms, p99 ${pct(ts, 99).toFixed(2)} ms (CPU time p50 ${pct(cpu, 50).toFixed(2)} ms, p99 ${pct(cpu, 99).toFixed(2)} ms)`, '<= 50 ms']);
  }
  // Every disk's whole history: a scan of every lock fact, minutes at millions of facts; measured on the smaller runs.
  if (total <= 1_000_000) {
  const overlapsAll = time(() => {
    const o = clusterOverlaps(cs, undefined);
    if (o.length !== 0) throw new Error(`the generated cluster is clean, yet ${o.length} overlaps: ${JSON.stringify(o[0])}`);
  });
  rows.push([`${HOSTS}x: \`--overlaps\` over every disk (whole history, one run)`, `${overlapsAll.toFixed(0)} ms (none found, as generated)`, '-']);
  }
  for (const h of hosts) for (const c of h.chains) c.journal.close();

  const cacheBytes = dirBytes(cacheRoot);
  const segBytes = dirBytes(lockspace);
  const load = os.loadavg()[0]!.toFixed(1);
  const head = `Measured ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} cores (${os.cpus()[0]?.model.split(' ')[0] ?? '?'}), load average ${load} at the end (a shared machine), Node ${process.version}; ${RUNS} runs per question, random disks, VMs and times, warm page cache; segments ${(segBytes / 2 ** 30).toFixed(2)} GiB, cache ${(cacheBytes / 2 ** 30).toFixed(2)} GiB.`;
  const table = ['| figure | value | target |', '|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
  process.stdout.write(`${head}\n\n${table}\n`);
  for (const u of undo) u();
  if (!QUICK && !CUSTOM) writeReadmeSection('bench:cluster-audit', `${head}\n\n${table}`);
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += fs.statSync(path.join(e.parentPath, e.name)).size;
  }
  return n;
}

/**
 * Appends `n` facts after host h's live segment `file`, continuing its chain (read back from the
 * segment): into it, or, when it ends in its seal, into a new segment after it. Returns the undo.
 */
function appendFacts(file: string, h: number, n: number): () => void {
  const size = fs.statSync(file).size;
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.trimEnd().split('\n');
  const last = JSON.parse(lines[lines.length - 1]!) as { t: string; seq?: number; last?: number; at?: string; hash: string };
  const beforeLast = last.t === 'seal' ? (JSON.parse(lines[lines.length - 2]!) as { at: string }) : undefined;
  const tail = { seq: last.t === 'seal' ? last.last! : last.seq!, at: beforeLast?.at ?? last.at!, hash: last.hash };
  let target = file;
  if (last.t === 'seal') {
    target = path.join(path.dirname(file), segmentFileName(path.basename(file).slice(0, 16), tail.seq + 1));
    fs.writeFileSync(target, encodeHeader({ host: hostName(h), journal: path.basename(file).slice(0, 16), first: tail.seq + 1, prev: tail.hash, created: tail.at }));
  }
  let prev: Buffer = Buffer.from(tail.hash, 'hex');
  let ms = Date.parse(tail.at);
  const out: string[] = [];
  for (let i = 1; i <= n; i++) {
    ms += 1000;
    const row: ChainRow = { seq: tail.seq + i, at: new Date(ms).toISOString(), host: hostName(h), kind: 'OwnerSeen', resource: null, disk: null, owner: '5a1e0000-0000-4000-8000-ffffffffffff', owner_name: 'late', payload: '{"event":"seen"}' };
    prev = chainHash(prev, row);
    out.push(encodeFact(row, prev).trimEnd());
  }
  fs.appendFileSync(target, out.join('\n') + '\n');
  return () => (target === file ? fs.truncateSync(file, size) : fs.rmSync(target));
}

main();
