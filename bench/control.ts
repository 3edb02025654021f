// The control socket's acquire against a no-op request on the same keep-alive connection (issue 13:
// acquire p50 at most 1.3x `GET /v1/status`, p99 at most 1 ms), under both acknowledgements:
// `journal_sync = "fdatasync"` (the default: the acquire's reply waits for one fdatasync of the staging
// file, the status request for nothing) and `"write"` (the CPU and socket cost alone). Beside them, in
// the same run, the sync's own cost: a bare loop of 300-byte appends + fdatasync on the state
// directory's file system. Rounds alternate which mode goes first; every ratio is taken within a round.
//
//   node --import tsx bench/control.ts           full run, rewrites the bench:control table in bench/README.md
//   node --import tsx bench/control.ts --quick   fewer samples, one round, prints only
// Needs `npm run build`. VMLOCKD_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR" profiles the daemons.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { startBenchDaemon, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : 3;
const SAMPLES = QUICK ? 500 : 4_000;
const WARMUP = 200;
const SYNCS = QUICK ? 200 : 1_000;
type Mode = 'fdatasync' | 'write';

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function request(agent: http.Agent, socket: string, method: string, p: string, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, socketPath: socket, method, path: p, servername: '', headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} } as http.RequestOptions, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Measure {
  acquire: number[];
  status: number[];
  release: number[];
}

/** status, acquire, release on one keep-alive connection, one at a time; microseconds, sorted. */
async function measure(mode: Mode, dir: string): Promise<Measure> {
  const d = await startBenchDaemon(path.join(dir, mode), path.join(dir, mode, 'lockspace'), `bench-control-${mode}`, ['--journal-sync', mode]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const disk = path.join(dir, 'disk.img');
  const acquire = JSON.stringify({ vm: { uuid: '11111111-1111-4111-8111-111111111111', name: 'bench' }, disks: [{ path: disk }] });
  const release = JSON.stringify({ vm: { uuid: '11111111-1111-4111-8111-111111111111' } });
  const m: Measure = { acquire: [], status: [], release: [] };
  try {
    for (let i = 0; i < SAMPLES + WARMUP; i++) {
      let t = performance.now();
      if ((await request(agent, d.socket, 'GET', '/v1/status')) !== 200) throw new Error('status failed');
      const s = performance.now() - t;
      t = performance.now();
      if ((await request(agent, d.socket, 'POST', '/v1/acquire', acquire)) !== 200) throw new Error('acquire failed');
      const a = performance.now() - t;
      t = performance.now();
      if ((await request(agent, d.socket, 'POST', '/v1/release', release)) !== 200) throw new Error('release failed');
      const r = performance.now() - t;
      if (i < WARMUP) continue;
      m.status.push(s * 1000);
      m.acquire.push(a * 1000);
      m.release.push(r * 1000);
    }
  } finally {
    agent.destroy();
    d.proc.kill('SIGTERM');
    await new Promise((r) => d.proc.once('exit', r));
  }
  for (const k of ['acquire', 'status', 'release'] as const) m[k].sort((x, y) => x - y);
  return m;
}

/** A 300-byte line appended and fdatasync'ed per call, on the state directory's file system: microseconds, sorted. */
function bareSyncs(dir: string): number[] {
  const file = path.join(dir, 'sync-floor');
  const fd = fs.openSync(file, 'a');
  const line = Buffer.from('x'.repeat(299) + '\n');
  const out: number[] = [];
  try {
    for (let i = 0; i < SYNCS; i++) {
      const t = performance.now();
      fs.writeSync(fd, line);
      fs.fdatasyncSync(fd);
      out.push((performance.now() - t) * 1000);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  return out.sort((x, y) => x - y);
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-control-'));
  fs.writeFileSync(path.join(dir, 'disk.img'), 'image');
  const rounds: Array<Record<Mode, Measure> & { sync: number[] }> = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const order: Mode[] = r % 2 === 0 ? ['fdatasync', 'write'] : ['write', 'fdatasync'];
      const round = { sync: bareSyncs(dir) } as Record<Mode, Measure> & { sync: number[] };
      for (const mode of order) round[mode] = await measure(mode, dir);
      rounds.push(round);
      process.stderr.write(`round ${r + 1}: load ${os.loadavg()[0]!.toFixed(1)}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const us = (x: number) => `${Math.round(x).toLocaleString('en-US')} us`;
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const each = (f: (r: (typeof rounds)[number]) => number, fmt: (x: number) => string) => `${fmt(med(rounds.map(f)))}${ROUNDS > 1 ? ` (${rounds.map((r) => fmt(f(r))).join(', ')})` : ''}`;
  const x = (v: number) => `${v.toFixed(2)}x`;
  const row = (mode: Mode) => [
    `| acquire p50 / status p50, same connection, \`journal_sync = "${mode}"\` | ${each((r) => pct(r[mode].acquire, 50), us)} | ${each((r) => pct(r[mode].status, 50), us)} | ${each((r) => pct(r[mode].acquire, 50) / pct(r[mode].status, 50), x)} | <= 1.3x |`,
    `| acquire p99 / status p99, \`journal_sync = "${mode}"\` | ${each((r) => pct(r[mode].acquire, 99), us)} | ${each((r) => pct(r[mode].status, 99), us)} | ${each((r) => pct(r[mode].acquire, 99) / pct(r[mode].status, 99), x)} | acquire p99 <= 1 ms |`,
  ];
  const table = [
    `Measured ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} cores, Node ${process.version}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')} at the end; ${ROUNDS} round(s) of ${SAMPLES.toLocaleString('en-US')} status + acquire + release triples per mode on one keep-alive connection (after ${WARMUP} warm-up triples), alternating which mode goes first; median of the rounds (each round in brackets), every ratio taken within its round.`,
    '',
    '| figure | acquire | status (no-op) | ratio | target |',
    '|---|---|---|---|---|',
    ...row('fdatasync'),
    ...row('write'),
    `| the sync alone: 300-byte append + fdatasync on the state directory's file system, p50 / p99 (${SYNCS} calls per round) | ${each((r) => pct(r.sync, 50), us)} / ${each((r) => pct(r.sync, 99), us)} | - | - | - |`,
    `| acquire p50 with fdatasync minus acquire p50 with write (what the sync adds to the reply) | ${each((r) => pct(r.fdatasync.acquire, 50) - pct(r.write.acquire, 50), us)} | - | - | - |`,
  ].join('\n');
  process.stdout.write(`${table}\n`);
  if (!QUICK) writeReadmeSection('bench:control', table);
}

await main();
