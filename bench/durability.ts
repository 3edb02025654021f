// What an acknowledgement that survives the state directory's filesystem costs (issue 11.4,
// docs/decisions/0002): the same daemon with `journal_sync = "write"` (a reply waits for write(2)
// into the staging file) and `journal_sync = "fdatasync"` (it waits for the line to be on disk; one
// fdatasync per group of commands), in the same run, alternating which goes first.
//
//   node --import tsx bench/durability.ts            full run, rewrites its section of bench/README.md
//   node --import tsx bench/durability.ts --quick    a smaller run that only prints
import { fdatasyncSync } from 'node:fs';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { startBenchDaemon, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
const N = {
  /** Sequential acquire+release pairs, one client. */
  seq: QUICK ? 300 : 3000,
  /** Concurrent clients, and pairs per client. */
  clients: 16,
  perClient: QUICK ? 40 : 300,
  raw: QUICK ? 500 : 3000,
  rounds: QUICK ? 1 : 3,
};
type Mode = 'write' | 'fdatasync';

function uuid(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

function request(agent: http.Agent, socket: string, p: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = http.request(
      { agent, socketPath: socket, method: 'POST', path: p, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** One client: `n` acquire+release pairs of its own disk, one call at a time; the acquires' latencies in us. */
async function client(socket: string, images: string, id: number, n: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const disk = path.join(images, `d${id}.qcow2`);
  if (!fs.existsSync(disk)) fs.writeFileSync(disk, '');
  const vm = { uuid: uuid(id), name: `vm${id}` };
  const lat: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const a = await request(agent, socket, '/v1/acquire', { vm, disks: [{ path: disk }] });
    lat.push((performance.now() - t0) * 1000);
    const r = await request(agent, socket, '/v1/release', { vm });
    if (a !== 200 || r !== 200) throw new Error(`acquire ${a}, release ${r}`);
  }
  agent.destroy();
  return lat;
}

interface Measure {
  seqPairs: number;
  seqP50: number;
  seqP99: number;
  concPairs: number;
}

async function measure(mode: Mode): Promise<Measure> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-durable-'));
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const { proc, socket } = await startBenchDaemon(dir, path.join(dir, 'lockspace'), 'bench', ['--journal-sync', mode]);
  try {
    await client(socket, images, 0, 100); // warm the JIT, the lock file, the connection
    let t0 = performance.now();
    const lat = (await client(socket, images, 1, N.seq)).sort((a, b) => a - b);
    const seqPairs = (N.seq / (performance.now() - t0)) * 1000;
    t0 = performance.now();
    await Promise.all(Array.from({ length: N.clients }, (_, k) => client(socket, images, 100 + k, N.perClient)));
    const concPairs = ((N.clients * N.perClient) / (performance.now() - t0)) * 1000;
    const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]!;
    return { seqPairs, seqP50: pct(50), seqP99: pct(99), concPairs };
  } finally {
    proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One staged line (~300 bytes) per call: write(2) alone, and write + fdatasync: the floor of each mode. */
function rawLines(sync: boolean): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-durable-raw-'));
  const fd = fs.openSync(path.join(dir, 'stage'), 'a');
  const line = Buffer.from(`${'x'.repeat(299)}\n`);
  const t0 = performance.now();
  for (let i = 0; i < N.raw; i++) {
    fs.writeSync(fd, line);
    if (sync) fdatasyncSync(fd);
  }
  const rate = (N.raw / (performance.now() - t0)) * 1000;
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
  return rate;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));

async function main(): Promise<void> {
  const runs: Record<Mode, Measure[]> = { write: [], fdatasync: [] };
  for (let r = 0; r < N.rounds; r++) {
    const order: Mode[] = r % 2 === 0 ? ['write', 'fdatasync'] : ['fdatasync', 'write'];
    for (const mode of order) {
      const m = await measure(mode);
      runs[mode].push(m);
      process.stderr.write(`round ${r + 1} ${mode}: ${fmt(m.seqPairs)} pairs/s (1 client, acquire p50 ${fmt(m.seqP50)} us), ${fmt(m.concPairs)} pairs/s (${N.clients} clients)\n`);
    }
  }
  const rawWrite = rawLines(false);
  const rawSync = rawLines(true);
  const med = (mode: Mode, k: keyof Measure) => median(runs[mode].map((m) => m[k]));
  const span = (mode: Mode, k: keyof Measure) => {
    const xs = runs[mode].map((m) => m[k]);
    return xs.length > 1 ? ` (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` : '';
  };
  // The load on this shared machine changes from one minute to the next: the ratio of the two modes
  // measured back to back in one round is steadier than the ratio of two medians.
  const perRound = (k: keyof Measure) => runs.fdatasync.map((m, r) => m[k] / runs.write[r]![k]);
  const ratio = (k: keyof Measure) => {
    const xs = perRound(k);
    const p = (x: number) => `${(x * 100).toFixed(0)}%`;
    return `${p(median(xs))}${xs.length > 1 ? ` (${xs.map(p).join(', ')})` : ''}`;
  };
  const times = (k: keyof Measure) => {
    const xs = perRound(k);
    return `${median(xs).toFixed(2)}x${xs.length > 1 ? ` (${xs.map((x) => `${x.toFixed(2)}x`).join(', ')})` : ''}`;
  };
  const rows = [
    `| acquire+release pairs/s, 1 client (${N.seq} pairs, keep-alive control socket) | ${fmt(med('fdatasync', 'seqPairs'))}${span('fdatasync', 'seqPairs')} | ${fmt(med('write', 'seqPairs'))}${span('write', 'seqPairs')} | ${ratio('seqPairs')} |`,
    `| acquire p50, 1 client | ${fmt(med('fdatasync', 'seqP50'))} us${span('fdatasync', 'seqP50')} | ${fmt(med('write', 'seqP50'))} us${span('write', 'seqP50')} | ${times('seqP50')} |`,
    `| acquire p99, 1 client | ${fmt(med('fdatasync', 'seqP99'))} us | ${fmt(med('write', 'seqP99'))} us | ${times('seqP99')} |`,
    `| acquire+release pairs/s, ${N.clients} clients (${N.perClient} pairs each, one call outstanding per client) | ${fmt(med('fdatasync', 'concPairs'))}${span('fdatasync', 'concPairs')} | ${fmt(med('write', 'concPairs'))}${span('write', 'concPairs')} | ${ratio('concPairs')} |`,
    `| raw: one 300-byte line appended per call, lines/s (the floor of each mode) | ${fmt(rawSync)} (write + fdatasync: ${(1000 / rawSync).toFixed(2)} ms) | ${fmt(rawWrite)} (write) | ${((rawSync / rawWrite) * 100).toFixed(1)}% |`,
  ];
  const load = os.loadavg().map((l) => l.toFixed(1)).join(' / ');
  const stamp = `Measured ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} cores (load average at the end ${load}: the machine is shared), Node ${process.version}, state directory on ${stateFs()}; ${N.rounds} round(s), alternating which mode runs first; median (and range) of the rounds; the ratio is taken within each round (the two modes back to back).`;
  const table = [stamp, '', '| figure | `journal_sync = "fdatasync"` (default) | `journal_sync = "write"` (before) | fdatasync / write, median of the rounds\' own ratios (each round) |', '|---|---|---|---|', ...rows].join('\n');
  process.stdout.write(`${table}\n`);
  if (!QUICK) writeReadmeSection('bench:durability', table);
}

/** The filesystem the benchmark's state directories live on (fdatasync on tmpfs would cost nothing). */
function stateFs(): string {
  try {
    const dir = fs.realpathSync(os.tmpdir());
    const lines = fs.readFileSync('/proc/self/mounts', 'utf8').trim().split('\n').map((l) => l.split(' '));
    const best = lines.filter((l) => dir === l[1] || dir.startsWith(`${l[1] === '/' ? '' : l[1]}/`)).sort((a, b) => b[1]!.length - a[1]!.length)[0];
    return best ? `${best[2]} (${best[0]})` : 'unknown';
  } catch {
    return 'unknown';
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
