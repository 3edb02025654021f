// `serve --takeover` with many held locks (issue 11): the time from spawning the new daemon to its
// UP (the old daemon's exit follows it at once), split into the hand-off's phases, while a second
// host hammers `acquire` on a sample of the held disks through the whole hand-off: the gap check
// (it must get none). Baseline in the same run: a plain restart (SIGTERM, then a start that re-takes
// every lock from the journal), during which the second host is not hammering.
//
//   node --import tsx bench/takeover.ts           10,000 locks, 3 take-overs; rewrites its table in bench/README.md
//   node --import tsx bench/takeover.ts --quick   1,000 locks, 1 take-over; prints only
// Needs `npm run build`.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { call } from '../src/cli/client.js';
import { MAIN, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
// BENCH_TAKEOVER_LOCKS / BENCH_TAKEOVER_ROUNDS: other sizes (then nothing is written to the README).
const LOCKS = Number(process.env.BENCH_TAKEOVER_LOCKS) || (QUICK ? 1_000 : 10_000);
const ROUNDS = Number(process.env.BENCH_TAKEOVER_ROUNDS) || (QUICK ? 1 : 3);
const WRITE = !QUICK && !process.env.BENCH_TAKEOVER_LOCKS && !process.env.BENCH_TAKEOVER_ROUNDS;
const PER_REQUEST = 500;
const SAMPLE = 16;

interface Daemon {
  readonly proc: ChildProcess;
  readonly socket: string;
  /** Log lines with the ms since the epoch they carry. */
  readonly lines: Array<{ t: number; text: string }>;
  readonly exit: Promise<number | null>;
  /** performance.now() when "listening on" was printed (or null before). */
  listeningAt: number | null;
}

function serve(dir: string, lockspace: string, hostId: string, conf: string, extra: string[] = []): Daemon {
  const socket = path.join(dir, 'vmlockd.sock');
  const nodeArgs = process.env.VMLOCKD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, MAIN, 'serve', '--state-dir', path.join(dir, 'state'), '--lockspace', lockspace, '--socket', socket, '--host-id', hostId, '--config', conf, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const d: Daemon = { proc, socket, lines: [], exit: new Promise((r) => proc.once('exit', (c) => r(c))), listeningAt: null };
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    if (d.listeningAt === null && out.includes('listening on')) d.listeningAt = performance.now();
  });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err += s;
    let i: number;
    while ((i = err.indexOf('\n')) >= 0) {
      const line = err.slice(0, i);
      err = err.slice(i + 1);
      const t = Date.parse(line.slice(0, 24));
      d.lines.push({ t: Number.isNaN(t) ? Date.now() : t, text: line });
    }
  });
  return d;
}

async function listening(d: Daemon, timeoutMs = 600_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (d.listeningAt === null) {
    if (d.proc.exitCode !== null) throw new Error(`daemon exited ${d.proc.exitCode}: ${d.lines.map((l) => l.text).join('\n')}`);
    if (Date.now() > end) throw new Error('daemon did not start');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The time of the first log line of `d` containing `what`. */
function logged(d: Daemon, what: string): number {
  const l = d.lines.find((x) => x.text.includes(what));
  if (!l) throw new Error(`no log line with ${JSON.stringify(what)}:\n${d.lines.map((x) => x.text).join('\n')}`);
  return l.t;
}

function hammer(socket: string, disks: string[]) {
  const out = { attempts: 0, stolen: [] as string[], on: true };
  const done = (async () => {
    while (out.on) {
      for (const d of disks) {
        try {
          const r = await call(socket, 'POST', '/v1/acquire', { vm: { uuid: '99999999-9999-4999-8999-999999999999', name: 'other-host' }, disks: [{ path: d }] });
          out.attempts++;
          if (r.status === 200 && (r.body as { status?: string }).status === 'ok') out.stolen.push(d);
        } catch {
          // the other host's own daemon is not the one restarting: count nothing
        }
      }
    }
  })();
  return { out, stop: async () => ((out.on = false), await done) };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const range = (xs: number[]): string => (xs.length === 1 ? s(xs[0]!) : `${s(median(xs))} (${s(Math.min(...xs))}-${s(Math.max(...xs))})`);

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-takeover-'));
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const conf = path.join(root, 'vmlockd.conf');
  fs.writeFileSync(conf, 'log_level = "info"\n');
  const disks = Array.from({ length: LOCKS }, (_, i) => path.join(images, `d${i}.img`));
  for (const d of disks) fs.writeFileSync(d, '');
  const dirA = path.join(root, 'a');
  let cur = serve(dirA, lockspace, 'bench-a', conf);
  await listening(cur);
  const t0 = performance.now();
  for (let i = 0; i < LOCKS; i += PER_REQUEST) {
    const vm = { uuid: `00000000-0000-4000-8000-${String(i / PER_REQUEST).padStart(12, '0')}`, name: `vm${i / PER_REQUEST}` };
    const r = await call(cur.socket, 'POST', '/v1/acquire', { vm, disks: disks.slice(i, i + PER_REQUEST).map((p) => ({ path: p })) });
    if ((r.body as { status?: string }).status !== 'ok') throw new Error(`acquire: ${JSON.stringify(r.body).slice(0, 300)}`);
  }
  process.stderr.write(`${LOCKS} locks taken in ${s(performance.now() - t0)}\n`);
  const other = serve(path.join(root, 'b'), lockspace, 'bench-b', conf);
  await listening(other);
  const sample = Array.from({ length: SAMPLE }, (_, k) => disks[Math.floor((k * LOCKS) / SAMPLE)]!);

  const total: number[] = [];
  const toListening: number[] = [];
  const phases = { connect: [] as number[], stopped: [] as number[], adopted: [] as number[], up: [] as number[] };
  let attempts = 0;
  const stolen: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const h = hammer(other.socket, sample);
    while (h.out.attempts < SAMPLE) await new Promise((r) => setTimeout(r, 5));
    const spawned = performance.now();
    const spawnedWall = Date.now();
    const next = serve(dirA, lockspace, 'bench-a', conf, ['--takeover']);
    const old = cur;
    await listening(next);
    const code = await old.exit;
    const gone = performance.now();
    if (code !== 0) throw new Error(`the old daemon exited ${code}`);
    const seen = h.out.attempts;
    while (h.out.attempts < seen + SAMPLE) await new Promise((r) => setTimeout(r, 5));
    await h.stop();
    attempts += h.out.attempts;
    stolen.push(...h.out.stolen);
    total.push(gone - spawned);
    toListening.push(next.listeningAt! - spawned);
    // The phases, from the two daemons' log lines (ms since the epoch).
    const sentAt = logged(old, 'takeover: sent');
    const doneAt = logged(old, 'takeover: handed over');
    const adoptedAt = logged(next, 'took over');
    const upAt = logged(old, 'takeover: the new daemon is up');
    phases.connect.push(sentAt - spawnedWall);
    phases.stopped.push(doneAt - sentAt);
    phases.adopted.push(adoptedAt - doneAt);
    phases.up.push(upAt - adoptedAt);
    process.stderr.write(`take-over ${round + 1}: ${s(gone - spawned)} to the old daemon's exit (listening at ${s(next.listeningAt! - spawned)}); other host: ${h.out.attempts} attempts, ${h.out.stolen.length} granted\n`);
    cur = next;
  }

  // Baseline: a plain restart re-taking every lock from the journal (no hammer: the locks are free meanwhile).
  const stopAt = performance.now();
  cur.proc.kill('SIGTERM');
  await cur.exit;
  const plain = serve(dirA, lockspace, 'bench-a', conf);
  await listening(plain);
  const restart = plain.listeningAt! - stopAt;
  process.stderr.write(`plain restart: ${s(restart)} from SIGTERM to listening\n`);
  plain.proc.kill('SIGTERM');
  other.proc.kill('SIGTERM');
  await Promise.all([plain.exit, other.exit]);
  fs.rmSync(root, { recursive: true, force: true });

  const rows = [
    [`take-over of ${LOCKS.toLocaleString('en')} locks: spawn of \`serve --takeover\` to UP (the old daemon's exit), ${ROUNDS} run(s)`, range(total), `${s(restart)} plain restart (SIGTERM to listening, re-taking every lock; the locks are free meanwhile)`],
    ['... of which: spawn to TAKEOVER answered (Node start, config, connect) + lock descriptors sent', range(phases.connect), '-'],
    ['... the old daemon stops (answers in flight, journals DaemonStopped, snapshot) and sends the rest (DONE)', range(phases.stopped), '-'],
    ['... the new daemon opens the journal and adopts every lock', range(phases.adopted), '-'],
    ['... journals the start, listens, starts its sources, says UP', range(phases.up), '-'],
    ['spawn to the new daemon listening', range(toListening), '-'],
    [`gap: acquires by another host granted during the take-overs (of ${attempts} tried on ${SAMPLE} held disks)`, String(stolen.length), 'must be 0'],
  ];
  const table = ['| figure | value | baseline (same run) |', '|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
  const stamp = `Measured ${new Date().toISOString().slice(0, 16)}Z on ${os.cpus().length} cores, Node ${process.version}.`;
  process.stdout.write(`\n${stamp}\n\n${table}\n`);
  if (WRITE) writeReadmeSection('bench:takeover', `${stamp}\n\n${table}`);
  if (stolen.length > 0) {
    process.stderr.write(`GAP: another host acquired ${stolen.join(', ')} during a take-over\n`);
    process.exitCode = 1;
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
