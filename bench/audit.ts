// Audit queries, journal append cost and daemon start-up on large generated journals.
//
//   node --import tsx bench/audit.ts           1M and 10M facts; rewrites the audit section of bench/README.md
//   node --import tsx bench/audit.ts --quick   100k facts; prints only
//   node --import tsx bench/audit.ts --startup only the daemon start-up rows on the 10M journal; prints only
//
// The journals are generated once and cached under bench/out/audit-<N>/ (gitignored): a simulated
// host with 8,000 VMs (12,000 disks of their own, 200 disks shared by five VMs each, a few
// misconfigured VMs sharing another's disk), refusals by other hosts, a daemon restart every 250k
// facts (Reacquired for every held lock, a few LeaseLost), ending with exactly 10,000 held locks and
// a snapshot. Facts are built by the engine (`fact`, `toRow`), folded by `evolve` for the snapshot,
// hashed by the journal's own chain function and bulk-inserted with the indexes built afterwards.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { CONFLICT_KINDS, DISK_KINDS, LOCK_KINDS, holdersAt, queryFacts, timeline, type AuditSources } from '../src/cli/audit-query.js';
import { fact, type NewFact } from '../src/engine/facts.js';
import { toRow } from '../src/engine/journal-port.js';
import { sha256Hex } from '../src/engine/resolve.js';
import { evolve, initialState, toSnapshot, type State } from '../src/engine/state.js';
import type { HolderInfo, Mode, Owner } from '../src/engine/types.js';
import { AUDIT_INDEXES, GENESIS_HASH, Journal, OWNERS_BACKFILL, chainHash } from '../src/journal/journal.js';
import { initLockspaces } from '../src/cli/lockspace-init.js';
import { MAIN, ROOT, writeReadmeSection } from './lib.js';
import { mulberry32 } from '../test/helpers/prng.js';

const OUT = path.join(ROOT, 'bench', 'out');
const QUICK = process.argv.includes('--quick');
/** `--startup`: only the daemon start-up rows (time, memory), printed. */
const STARTUP_ONLY = process.argv.includes('--startup');
const SIZES = QUICK ? [100_000] : [1_000_000, 10_000_000];
const RUNS = QUICK ? 50 : 200;
const STARTS = QUICK ? 1 : 3;
const HELD_TARGET = 10_000;
const HOST = 'bench-host';
/** The third resident-memory reading of a start, this long after "listening on" (BENCH_LATER_MS). */
const LATER_MS = Number(process.env.BENCH_LATER_MS ?? 15_000);
/** Bump when the generated shape changes: cached journals of another version are rebuilt. */
const GENERATOR_VERSION = 5;

interface Row {
  readonly what: string;
  readonly value: string;
  readonly baseline: string;
  readonly target: string;
}

// ---------------------------------------------------------------- generation

interface Disk {
  readonly path: string;
  readonly resource: string;
  readonly name: string;
}

interface Vm {
  readonly owner: Owner;
  readonly disks: ReadonlyArray<{ disk: Disk; mode: Mode }>;
}

interface Meta {
  version: number;
  facts: number;
  lockspace: string;
  firstAt: string;
  lastAt: string;
  disks: string[];
  vms: string[];
  held: number;
}

/** A swap-remove set of small integers: O(1) add, delete and random pick. */
class Pool {
  private readonly items: number[] = [];
  private readonly at = new Map<number, number>();
  get size(): number {
    return this.items.length;
  }
  add(v: number): void {
    if (this.at.has(v)) return;
    this.at.set(v, this.items.length);
    this.items.push(v);
  }
  delete(v: number): void {
    const i = this.at.get(v);
    if (i === undefined) return;
    const last = this.items.pop()!;
    if (last !== v) {
      this.items[i] = last;
      this.at.set(last, i);
    }
    this.at.delete(v);
  }
  pick(r: () => number): number {
    return this.items[Math.floor(r() * this.items.length)]!;
  }
}

function generate(dir: string, n: number): Meta {
  fs.rmSync(dir, { recursive: true, force: true });
  const stateDir = path.join(dir, 'state');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(stateDir, { recursive: true });
  fs.mkdirSync(lockspace, { recursive: true });
  const file = path.join(stateDir, 'journal.db');
  Journal.open(file, { host: HOST }).close();

  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  db.pragma('cache_size = -1048576');
  // Index maintenance row by row costs ~50 us a fact here; one sort per index at the end is ~10x cheaper.
  for (const ix of AUDIT_INDEXES) db.exec(`DROP INDEX ${ix.name}`);
  const insert = db.prepare(`INSERT INTO facts (seq, at, host, kind, resource, disk, owner, owner_name, payload, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);

  const rnd = mulberry32(42);
  const diskOf = (p: string): Disk => {
    const name = sha256Hex(p);
    return { path: p, name, resource: path.join(lockspace, name) };
  };
  const VMS = 8000;
  const shared: Disk[] = Array.from({ length: 200 }, (_, i) => diskOf(`/var/lib/libvirt/images/shared/cluster-${String(i).padStart(3, '0')}.img`));
  const own: Disk[] = [];
  void own;
  const vms: Vm[] = [];
  for (let i = 0; i < VMS; i++) {
    const id = String(i).padStart(5, '0');
    const disks: Array<{ disk: Disk; mode: Mode }> = [];
    const d0 = diskOf(`/var/lib/libvirt/images/vm-${id}-disk0.qcow2`);
    own.push(d0);
    disks.push({ disk: d0, mode: 'exclusive' });
    if (i % 2 === 0) {
      const d1 = diskOf(`/var/lib/libvirt/images/vm-${id}-disk1.qcow2`);
      own.push(d1);
      disks.push({ disk: d1, mode: 'exclusive' });
    }
    if (i < 1000) disks.push({ disk: shared[i % 200]!, mode: 'shared' });
    vms.push({ owner: { uuid: `5a1e0000-0000-4000-8000-${String(i).padStart(12, '0')}`, name: `vm-${id}` }, disks });
  }
  // Misconfigured: 2% of the VMs point their first disk at another VM's, so both cannot run at once.
  for (let k = 0; k < VMS / 50; k++) {
    const i = 1000 + k * 7;
    const other = vms[(i + 3) % VMS]!;
    vms[i] = { owner: vms[i]!.owner, disks: [{ disk: other.disks[0]!.disk, mode: 'exclusive' }, ...vms[i]!.disks.slice(1)] };
  }

  const state: State = initialState();
  const holders = new Map<string, { mode: Mode; owners: Map<number, { since: string; gen?: number }> }>();
  const generation = new Map<string, number>();
  const heldBy = new Map<number, Set<Disk>>();
  const running = new Pool();
  const stopped = new Pool();
  for (let i = 0; i < VMS; i++) stopped.add(i);

  let seq = 0;
  let prev = GENESIS_HASH;
  let ms = Date.parse('2025-01-01T00:00:00.000Z');
  const firstAt = new Date(ms).toISOString();
  let batch: unknown[][] = [];
  const flush = db.transaction((rows: unknown[][]) => {
    for (const r of rows) insert.run(...r);
  });
  const seenDisks = new Set<string>();
  const seenVms = new Set<string>();
  const emit = (f: NewFact) => {
    const row = toRow(f);
    if (row.disk) seenDisks.add(row.disk);
    if (row.ownerName) seenVms.add(row.ownerName);
    const json = JSON.stringify(row.payload);
    seq++;
    const r = { seq, at: row.at, host: HOST, kind: row.kind, resource: row.resource ?? null, disk: row.disk ?? null, owner: row.owner ?? null, owner_name: row.ownerName ?? null, payload: json };
    prev = chainHash(prev, r);
    batch.push([seq, r.at, HOST, r.kind, r.resource, r.disk, r.owner, r.owner_name, json, prev]);
    // Fold exactly what a replay would see: the stored JSON, not the object.
    evolve(state, { seq, host: HOST, kind: f.kind, at: f.at, payload: JSON.parse(json) } as never);
    if (batch.length >= 50_000) {
      flush(batch);
      batch = [];
    }
  };
  const fields = (d: Disk) => ({ resource: d.resource, name: d.name, lockspace, kind: 'file' as const, disk: d.path, path: d.path });
  const tick = () => {
    ms += Math.max(1, Math.round(-Math.log(1 - rnd()) * 3000));
    return new Date(ms).toISOString();
  };
  const otherHost = (): HolderInfo => {
    const o = vms[Math.floor(rnd() * VMS)]!.owner;
    return { host: `host-${1 + Math.floor(rnd() * 15)}`, owner: o, mode: 'exclusive', since: new Date(ms - 3_600_000).toISOString(), generation: 1 + Math.floor(rnd() * 50) };
  };

  const start = (i: number) => {
    const vm = vms[i]!;
    const at = tick();
    emit(fact('OwnerSeen', at, { owner: vm.owner, event: 'started', source: 'virsh' }));
    // Another host holds one of the disks: 1% of starts.
    if (rnd() < 0.01) {
      const d = vm.disks[0]!.disk;
      const holder = otherHost();
      emit(fact('LockRefused', at, { ...fields(d), owner: vm.owner, mode: vm.disks[0]!.mode, source: 'virsh', holder, message: `disk ${d.path} is held exclusively by VM ${holder.owner!.name} on host ${holder.host}` }));
      return;
    }
    for (const { disk, mode } of vm.disks) {
      const h = holders.get(disk.path);
      if (h !== undefined && (h.mode === 'exclusive' || mode === 'exclusive')) {
        const [otherIdx, info] = [...h.owners][0]!;
        const holder: HolderInfo = { host: HOST, owner: vms[otherIdx]!.owner, mode: h.mode, since: info.since, ...(info.gen !== undefined ? { generation: info.gen } : {}) };
        emit(fact('LockRefused', at, { ...fields(disk), owner: vm.owner, mode, source: 'virsh', holder, message: `disk ${disk.path} is held by VM ${holder.owner!.name}` }));
        return;
      }
    }
    const mine = new Set<Disk>();
    for (const { disk, mode } of vm.disks) {
      let gen: number | undefined;
      if (mode === 'exclusive') {
        gen = (generation.get(disk.path) ?? 0) + 1;
        generation.set(disk.path, gen);
      }
      emit(fact('LockAcquired', at, { ...fields(disk), owner: vm.owner, mode, source: 'virsh', ...(gen !== undefined ? { generation: gen } : {}) }));
      let h = holders.get(disk.path);
      if (h === undefined) holders.set(disk.path, (h = { mode, owners: new Map() }));
      h.owners.set(i, { since: at, ...(gen !== undefined ? { gen } : {}) });
      mine.add(disk);
    }
    heldBy.set(i, mine);
    stopped.delete(i);
    running.add(i);
  };
  const drop = (i: number, disk: Disk) => {
    const h = holders.get(disk.path)!;
    h.owners.delete(i);
    if (h.owners.size === 0) holders.delete(disk.path);
  };
  const stop = (i: number) => {
    const vm = vms[i]!;
    const at = tick();
    for (const disk of heldBy.get(i) ?? []) {
      emit(fact('LockReleased', at, { ...fields(disk), owner: vm.owner, source: 'virsh', reason: 'stopped' }));
      drop(i, disk);
    }
    heldBy.delete(i);
    running.delete(i);
    stopped.add(i);
  };
  const restart = () => {
    const at = tick();
    emit(fact('DaemonStopped', at, { pid: 4242, reason: 'SIGTERM', held: holders.size }));
    const at2 = tick();
    emit(fact('DaemonStarted', at2, { pid: 4243, version: '0.1.0', lockspace, held: holders.size }));
    for (const [p, h] of [...holders]) {
      for (const [i, info] of [...h.owners]) {
        const disk = [...heldBy.get(i)!].find((d) => d.path === p)!;
        const owner = vms[i]!.owner;
        if (rnd() < 0.002) {
          emit(fact('LeaseLost', at2, { ...fields(disk), owner, mode: h.mode, holder: otherHost(), reason: 'taken by another owner while vmlockd was down' }));
          drop(i, disk);
          heldBy.get(i)!.delete(disk);
        } else {
          let gen = info.gen;
          if (h.mode === 'exclusive') {
            gen = (generation.get(p) ?? 0) + 1;
            generation.set(p, gen);
            info.gen = gen;
          }
          emit(fact('Reacquired', at2, { ...fields(disk), owner, mode: h.mode, ...(gen !== undefined ? { generation: gen } : {}) }));
        }
      }
    }
  };

  const restartEvery = Math.min(250_000, Math.floor(n / 2));
  let nextRestart = restartEvery;
  const t0 = performance.now();
  while (seq < n) {
    if (seq >= nextRestart) {
      restart();
      nextRestart += restartEvery;
      continue;
    }
    if (holders.size < HELD_TARGET) start(stopped.pick(rnd));
    else stop(running.pick(rnd));
    if (seq % 1_000_000 < 5 && seq > 5) process.stderr.write(`  ${seq.toLocaleString('en-US')} facts, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  }
  // Land on exactly HELD_TARGET held locks: stop VMs, then start one-disk VMs until the count is exact.
  while (holders.size > HELD_TARGET) stop(running.pick(rnd));
  for (let tries = 0; holders.size < HELD_TARGET && tries < 100_000; tries++) {
    const i = stopped.pick(rnd);
    if (vms[i]!.disks.length === 1 && !holders.has(vms[i]!.disks[0]!.disk.path)) start(i);
  }
  if (batch.length > 0) flush(batch);
  process.stderr.write(`  ${seq.toLocaleString('en-US')} facts inserted in ${((performance.now() - t0) / 1000).toFixed(0)} s; building indexes\n`);
  const t1 = performance.now();
  for (const ix of AUDIT_INDEXES) db.exec(ix.sql);
  db.exec(OWNERS_BACKFILL);
  process.stderr.write(`  indexes built in ${((performance.now() - t1) / 1000).toFixed(0)} s\n`);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();

  const j = Journal.open(file, { host: HOST });
  j.writeSnapshot(seq, toSnapshot(state));
  const report = j.verifyChain();
  j.close();
  if (!report.ok) throw new Error(`generated journal does not verify: ${report.problems.join('; ')}`);
  if (state.resources.size !== HELD_TARGET) throw new Error(`generated journal holds ${state.resources.size} locks, wanted ${HELD_TARGET}`);
  const meta: Meta = {
    version: GENERATOR_VERSION,
    facts: seq,
    lockspace,
    firstAt,
    lastAt: new Date(ms).toISOString(),
    // Questions about disks and VMs the journal knows (a 100k journal has not seen every VM start).
    disks: [...seenDisks].filter((_, i) => i % 10 === 0),
    vms: [...seenVms].filter((_, i) => i % 20 === 0),
    held: state.resources.size,
  };
  fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta));
  return meta;
}

function cached(n: number): { dir: string; meta: Meta } {
  const dir = path.join(OUT, `audit-${n >= 1_000_000 ? `${n / 1_000_000}m` : `${n / 1000}k`}`);
  const metaFile = path.join(dir, 'meta.json');
  try {
    const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as Meta;
    // Facts record the lockspace's absolute path: a moved checkout needs a fresh journal.
    if (meta.version === GENERATOR_VERSION && meta.lockspace === path.join(dir, 'lockspace') && meta.facts >= n) {
      acceptLockspace(dir);
      return { dir, meta };
    }
  } catch {
    // not generated yet
  }
  process.stderr.write(`generating ${n.toLocaleString('en-US')} facts in ${dir} (cached for later runs)\n`);
  const meta = generate(dir, n);
  acceptLockspace(dir);
  return { dir, meta };
}

/**
 * The generated lockspace has its id file and the state directory knows it (`vmlockd lockspace
 * init`): a daemon refuses a lockspace without one when its journal holds locks there (a cluster
 * filesystem that is not mounted). Idempotent: a fixture generated before that check gets it here.
 */
function acceptLockspace(dir: string): void {
  initLockspaces(path.join(dir, 'state'), [path.join(dir, 'lockspace')]);
}

// ---------------------------------------------------------------- measurement

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function ms(x: number): string {
  return x >= 100 ? `${Math.round(x)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`;
}

/** Runs `fn` `runs` times (after a few warm-ups), each with the i-th input; p50, p99 and the mean result size. */
function time<T>(runs: number, input: (i: number) => T, fn: (x: T) => number): { p50: number; p99: number; rows: number } {
  for (let i = 0; i < 5; i++) fn(input(runs + i));
  const t: number[] = [];
  let rows = 0;
  for (let i = 0; i < runs; i++) {
    const x = input(i);
    const t0 = performance.now();
    rows += fn(x);
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { p50: pct(t, 50), p99: pct(t, 99), rows: rows / runs };
}

function auditQueries(n: number, dir: string, meta: Meta, rows: Row[]): void {
  const file = path.join(dir, 'state', 'journal.db');
  const live = Journal.open(file, { host: 'bench', readonly: true });
  const raw = new Database(file, { readonly: true });
  const rawFetch = raw.prepare('SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload FROM facts WHERE seq > ? ORDER BY seq LIMIT ?');
  const src: AuditSources = { live };
  const rnd = mulberry32(7);
  const t0 = Date.parse(meta.firstAt);
  const t1 = Date.parse(meta.lastAt);
  const pick = <T>(list: readonly T[]) => list[Math.floor(rnd() * list.length)]!;
  const randomTime = () => new Date(t0 + rnd() * (t1 - t0)).toISOString();
  const size = `${n / 1_000_000 >= 1 ? `${n / 1_000_000}M` : `${n / 1000}k`}`;
  const baseline = (count: number) => {
    const k = Math.max(1, Math.round(count));
    const last = meta.facts - k;
    const r = time(RUNS, () => Math.floor(rnd() * last), (from) => rawFetch.all(from, k).length);
    return `${ms(r.p50)} raw fetch of ${k} rows`;
  };
  const add = (what: string, r: { p50: number; p99: number; rows: number }) => {
    rows.push({ what: `${size}: ${what} (~${Math.round(r.rows)} rows)`, value: `p50 ${ms(r.p50)}, p99 ${ms(r.p99)}`, baseline: baseline(r.rows), target: n >= 10_000_000 ? '<= 20 ms' : '-' });
  };

  add('`--disk D --at T` who held it', time(RUNS, () => [pick(meta.disks), randomTime()] as const, ([d, at]) => {
    if (!live.knowsDisk(d)) throw new Error(`bench disk ${d} unknown`);
    return holdersAt(src, d, at).length;
  }));
  add('`--disk D` history, newest 1000', time(RUNS, () => pick(meta.disks), (d) => {
    live.knowsDisk(d);
    return queryFacts(src, { disk: d, kinds: [...DISK_KINDS], limit: 1000, newest: true }).length;
  }));
  add('`--vm NAME` history, newest 1000', time(RUNS, () => pick(meta.vms), (name) => {
    if (!live.knowsOwner(name)) throw new Error(`bench VM ${name} unknown`);
    return queryFacts(src, { owner: name, limit: 1000, newest: true }).length;
  }));
  const month = new Date(t1 - 30 * 86_400_000).toISOString();
  add('`--conflicts --since` (last 30 days), newest 1000', time(RUNS, () => month, (since) => queryFacts(src, { kinds: [...CONFLICT_KINDS], since, limit: 1000, newest: true }).length));
  add('`--host H --kind LockAcquired --since --until` (one day), newest 100', time(RUNS, () => randomTime(), (since) => {
    const until = new Date(Date.parse(since) + 86_400_000).toISOString();
    return queryFacts(src, { host: HOST, kinds: ['LockAcquired'], since, until, limit: 100, newest: true }).length;
  }));
  add('`--timeline --disk D` (last 30 days)', time(RUNS, () => pick(meta.disks), (d) => {
    const t = timeline(src, d, month, meta.lastAt);
    return t.intervals.length + t.events.length;
  }));
  const lastSeq = live.lastSeq();
  add('`--follow` one poll (50 new facts, kinds filter)', time(RUNS, () => lastSeq - 50 - Math.floor(rnd() * 1000), (after) => live.query({ kinds: [...LOCK_KINDS], afterSeq: after, untilSeq: after + 50 }).length));
  raw.close();
  live.close();
}

/** Journal.append (hash chain included) beside raw inserts of the same rows into the same schema, without the chain. */
function appendCost(rows: Row[]): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-append-'));
  const N = QUICK ? 20_000 : 100_000;
  const make = (i: number) => {
    const disk = `/var/lib/libvirt/images/vm-${i % 5000}-disk0.qcow2`;
    const name = sha256Hex(disk);
    const owner = { uuid: `5a1e0000-0000-4000-8000-${String(i % 5000).padStart(12, '0')}`, name: `vm-${i % 5000}` };
    return toRow(fact('LockAcquired', new Date(1_764_064_800_000 + i).toISOString(), { resource: `/var/lib/vmlockd/lockspace/${name}`, name, lockspace: '/var/lib/vmlockd/lockspace', kind: 'file', disk, path: disk, owner, mode: 'exclusive', source: 'virsh', generation: i }));
  };
  const input = Array.from({ length: N }, (_, i) => make(i));
  try {
    const j = Journal.open(path.join(dir, 'journal.db'), { host: HOST });
    let t = performance.now();
    for (let i = 0; i < N; i += 1000) j.append(input.slice(i, i + 1000));
    const journalRate = N / ((performance.now() - t) / 1000);
    const one = QUICK ? 2000 : 10_000;
    t = performance.now();
    for (let i = 0; i < one; i++) j.append([input[i]!]);
    const journalOne = ((performance.now() - t) * 1000) / one;
    j.close();

    // The same schema without the chain: the journal's own tables, rows inserted by seq as append does.
    const plain = Journal.open(path.join(dir, 'plain.db'), { host: HOST });
    plain.close();
    const db = new Database(path.join(dir, 'plain.db'));
    db.pragma('synchronous = NORMAL');
    const ins = db.prepare('INSERT INTO facts (at, host, kind, resource, disk, owner, owner_name, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    const tx = db.transaction((batch: typeof input) => {
      for (const r of batch) ins.run(r.at, HOST, r.kind, r.resource ?? null, r.disk ?? null, r.owner ?? null, r.ownerName ?? null, JSON.stringify(r.payload));
    });
    t = performance.now();
    for (let i = 0; i < N; i += 1000) tx(input.slice(i, i + 1000));
    const rawRate = N / ((performance.now() - t) / 1000);
    t = performance.now();
    for (let i = 0; i < one; i++) tx([input[i]!]);
    const rawOne = ((performance.now() - t) * 1000) / one;
    db.close();

    let prev = GENESIS_HASH;
    t = performance.now();
    for (let i = 0; i < N; i++) {
      const r = input[i]!;
      prev = chainHash(prev, { seq: i + 1, at: r.at, host: HOST, kind: r.kind, resource: r.resource ?? null, disk: r.disk ?? null, owner: r.owner ?? null, owner_name: r.ownerName ?? null, payload: JSON.stringify(r.payload) });
    }
    const hashUs = ((performance.now() - t) * 1000) / N;
    const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
    rows.push({ what: `Journal.append, batches of 1000 (${fmt(N)} LockAcquired rows, hash chain)`, value: `${fmt(journalRate)} rows/s`, baseline: `${fmt(rawRate)} rows/s raw batched inserts, same schema, no chain (${((journalRate / rawRate) * 100).toFixed(0)}%)`, target: '-' });
    rows.push({ what: 'Journal.append, one fact per transaction', value: `${journalOne.toFixed(0)} us/fact`, baseline: `${rawOne.toFixed(0)} us raw single-row transaction`, target: '-' });
    rows.push({ what: 'hash chain alone (canonical row + sha256)', value: `${hashUs.toFixed(2)} us/fact`, baseline: '-', target: '-' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- start-up

/** A process's user+system CPU milliseconds so far (/proc/PID/stat, 10 ms ticks). */
function procCpuMs(pid: number): number {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** Spawn `vmlockd serve`, time spawn -> "listening on", read RSS then and 1 s later, SIGTERM. */
async function startOnce(stateDir: string, lockspace: string, nodeFlags: string[] = [], main = MAIN): Promise<{ ms: number; rss: number; settled: number; later: number; retaken: number; moved: number; cpu: number }> {
  const sock = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-start-')), 'd.sock');
  const t0 = performance.now();
  const proc = spawn(process.execPath, [...nodeFlags, main, 'serve', '--state-dir', stateDir, '--lockspace', lockspace, '--socket', sock, '--host-id', HOST], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let cpuAtListen = NaN;
  const elapsed = await new Promise<number>((resolve, reject) => {
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('listening on')) {
        cpuAtListen = procCpuMs(proc.pid!);
        resolve(performance.now() - t0);
      }
    });
    void exited.then(() => reject(new Error(`daemon exited before listening:\n${out}\n${err}`)));
  });
  const rss = rssMb(proc.pid!);
  // A large re-take is staged (durable) and moves into SQLite in batches while the daemon serves:
  // time until the staging file holds nothing the database lacks.
  const reader = Journal.open(path.join(stateDir, 'journal.db'), { host: 'bench', readonly: true });
  let moved = NaN;
  try {
    for (let i = 0; i < 1500; i++) {
      if (reader.stagedTail() === null) {
        moved = performance.now() - t0;
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    reader.close();
  }
  await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - t0 - elapsed))));
  const settled = rssMb(proc.pid!);
  // Once start-up's burst is over, the daemon collects its garbage once (src/daemon/collect.ts).
  await new Promise((r) => setTimeout(r, Math.max(0, LATER_MS - (performance.now() - t0 - elapsed))));
  const later = rssMb(proc.pid!);
  proc.kill('SIGTERM');
  await exited;
  fs.rmSync(path.dirname(sock), { recursive: true, force: true });
  // The daemon logs at warning level by default; its DaemonStarted fact says how many locks it held.
  const j = Journal.open(path.join(stateDir, 'journal.db'), { host: 'bench', readonly: true });
  const started = j.query({ kinds: ['DaemonStarted'], limit: 1, newest: true })[0];
  j.close();
  const retaken = (started?.payload as { held?: number } | undefined)?.held ?? -1;
  return { ms: elapsed, rss, settled, later, retaken, moved, cpu: cpuAtListen };
}

/**
 * `when` says what the host did just before: a daemon restart on a running host finds the lock files'
 * metadata in the kernel's caches; right after reading the whole journal (the audit queries' warm-up)
 * much of it has been pushed out.
 */
async function startup(n: number, dir: string, rows: Row[], when: string): Promise<void> {
  const size = `${n / 1_000_000 >= 1 ? `${n / 1_000_000}M` : `${n / 1000}k`} (${when})`;
  const bare: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    bare.push(performance.now() - t);
  }
  bare.sort((a, b) => a - b);
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-empty-'));
  const emptyRuns = [];
  for (let i = 0; i < STARTS; i++) emptyRuns.push(await startOnce(path.join(empty, 'state'), path.join(empty, 'lockspace')));
  fs.rmSync(empty, { recursive: true, force: true });
  const runs = [];
  const before = process.env.BENCH_BEFORE;
  if (before !== undefined) {
    // BENCH_BEFORE=DIR: another build's restarts on the same fixture, alternating with this build's
    // (which goes first alternates too); spawn to "listening on", this build / before per pair.
    const pairs = Number(process.env.BENCH_ROUNDS ?? 4);
    for (let i = 0; i < pairs; i++) {
      const order = i % 2 === 0 ? ['this', 'before'] : ['before', 'this'];
      const t: Record<string, number> = {};
      const c: Record<string, number> = {};
      for (const b of order) {
        const r = await startOnce(path.join(dir, 'state'), path.join(dir, 'lockspace'), [], b === 'this' ? MAIN : path.join(before, 'dist', 'main.js'));
        t[b] = r.ms;
        c[b] = r.cpu;
      }
      process.stdout.write(
        `restart pair ${i + 1}: this build ${Math.round(t.this!)} ms (CPU ${Math.round(c.this!)} ms), before ${Math.round(t.before!)} ms (CPU ${Math.round(c.before!)} ms), ratio ${(t.this! / t.before!).toFixed(2)}x wall, ${(c.this! / c.before!).toFixed(2)}x CPU (load ${os.loadavg()[0]!.toFixed(1)})\n`,
      );
    }
  }
  for (let i = 0; i < STARTS; i++) runs.push(await startOnce(path.join(dir, 'state'), path.join(dir, 'lockspace')));
  const med = <K extends 'ms' | 'rss' | 'settled' | 'later' | 'moved'>(list: Array<Record<K, number>>, k: K) => list.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
  const retaken = runs.map((r) => r.retaken);
  if (retaken.some((r) => r !== HELD_TARGET)) process.stderr.write(`warning: re-took ${retaken.join(', ')} locks, expected ${HELD_TARGET} each start\n`);
  rows.push({
    what: `${size}: daemon start, spawn to "listening on", ${retaken[0]} locks re-taken (median of ${STARTS})`,
    value: `${Math.round(med(runs, 'ms'))} ms`,
    baseline: `${Math.round(med(emptyRuns, 'ms'))} ms empty state dir; ${Math.round(bare[2]!)} ms \`node -e 0\``,
    target: '<= 1 s',
  });
  rows.push({
    what: `${size}: daemon resident memory after start-up (at "listening on" / 1 s later / ${LATER_MS / 1000} s later)`,
    value: `${Math.round(med(runs, 'rss'))} / ${Math.round(med(runs, 'settled'))} / ${Math.round(med(runs, 'later'))} MB`,
    baseline: `${Math.round(med(emptyRuns, 'rss'))} / ${Math.round(med(emptyRuns, 'settled'))} / ${Math.round(med(emptyRuns, 'later'))} MB empty state dir`,
    target: '<= 150 MB',
  });
  rows.push({
    what: `${size}: spawn to every start-up fact moved from the staging file into SQLite (batches while serving)`,
    value: `${Math.round(med(runs, 'moved'))} ms`,
    baseline: `${Math.round(med(runs, 'ms'))} ms to "listening on" (above)`,
    target: '-',
  });
}

/**
 * Reads the file once so the figures are for a warm page cache, the steady state of a host's
 * journal; without it they measure whatever else the machine read last (one cold disk read per row).
 */
function warm(file: string): void {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (!fs.existsSync(MAIN)) throw new Error('run `npm run build` first');
  fs.mkdirSync(OUT, { recursive: true });
  const rows: Row[] = [];
  if (STARTUP_ONLY) {
    // Only the start-up rows, on the largest journal; prints, never writes the README.
    const n = SIZES[SIZES.length - 1]!;
    await startup(n, cached(n).dir, rows, 'restart');
  } else {
    appendCost(rows);
    for (const n of SIZES) {
      const { dir, meta } = cached(n);
      const last = n === SIZES[SIZES.length - 1];
      if (last) await startup(n, dir, rows, 'restart');
      const fileMb = fs.statSync(path.join(dir, 'state', 'journal.db')).size / 1024 / 1024;
      process.stderr.write(`audit queries on ${meta.facts.toLocaleString('en-US')} facts (${Math.round(fileMb)} MB)\n`);
      warm(path.join(dir, 'state', 'journal.db'));
      auditQueries(n, dir, meta, rows);
      if (last) await startup(n, dir, rows, 'right after reading the whole journal');
    }
  }
  const table = ['| figure | value | baseline (same run) | target |', '|---|---|---|---|', ...rows.map((r) => `| ${r.what} | ${r.value} | ${r.baseline} | ${r.target} |`)].join('\n');
  const stamp = `Measured ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown cpu'}), Node ${process.version}${QUICK ? ', quick run' : ''}; ${RUNS} runs per query, random disks, VMs and times, warm page cache.`;
  process.stdout.write(`${stamp}\n\n${table}\n`);
  if (!QUICK && !STARTUP_ONLY) {
    writeReadmeSection('bench:audit', `${stamp}\n\n${table}`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
