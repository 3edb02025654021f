// The qemu hook's cost to a VM start: from spawning the hook process to its exit, for
// `prepare begin` (reads the XML, one round trip to a real daemon, a real OFD lock), beside a bare
// `node -e 0` start measured in the same run (the floor no Node hook can beat).
//
//   node --import tsx bench/hook.ts           full run, rewrites the hook table in bench/README.md
//   node --import tsx bench/hook.ts --quick   fewer samples, prints only
// Needs `npm run build`.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAIN, ROOT, writeReadmeSection } from './lib.js';

const HOOK_MAIN = path.join(ROOT, 'dist', 'cli', 'hook-main.js');
const QUICK = process.argv.includes('--quick');
const SAMPLES = QUICK ? 25 : 200;
const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Milliseconds from spawn to exit; rejects on a non-zero exit. */
function timed(args: string[], stdin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(process.execPath, args, { stdio: [stdin === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('exit', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${args.join(' ')} exited ${code}: ${err}`));
    });
    if (stdin !== undefined) p.stdin!.end(stdin);
  });
}

async function startDaemon(dir: string): Promise<{ proc: ChildProcess; socket: string }> {
  const socket = path.join(dir, 'vmlockd.sock');
  const proc = spawn(process.execPath, [MAIN, 'serve', '--state-dir', path.join(dir, 'state'), '--socket', socket, '--lockspace', path.join(dir, 'lockspace'), '--host-id', 'bench'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`daemon exited ${code}`)));
  });
  return { proc, socket };
}

interface Row {
  readonly what: string;
  readonly p50: number;
  readonly p99: number;
}

async function main(): Promise<void> {
  for (const f of [MAIN, HOOK_MAIN]) if (!fs.existsSync(f)) throw new Error(`${f} is missing: run npm run build`);
  // A no-op call exits 0 at once when `vmlockd hook` exists; before src/main.ts wires it, exit 2.
  const mainHasHook = await timed([MAIN, 'hook', 'qemu', 'x', 'start', 'begin', '-']).then(() => true, () => false);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-hook-'));
  const { proc, socket } = await startDaemon(dir);
  const disk = path.join(dir, 'disk.qcow2');
  fs.writeFileSync(disk, '');
  const uuid = '11111111-1111-4111-8111-111111111111';
  const xml = TEMPLATE.replace('NAME', 'bench-vm').replace('UUID', uuid).replace('DISK', disk);
  const hookArgs = (entry: string[], op: string, subop: string) => [...entry, 'qemu', '--socket', socket, '--', 'bench-vm', op, subop, '-'];
  const lean = [HOOK_MAIN];
  const full = [MAIN, 'hook'];

  const samples: Record<string, number[]> = { node: [], prepare: [], noop: [], release: [], prepareMain: [] };
  try {
    // Warm the page cache and the daemon before measuring.
    await timed(['-e', '0']);
    await timed(hookArgs(lean, 'prepare', 'begin'), xml);
    await timed(hookArgs(lean, 'release', 'end'), xml);
    // Interleaved, so drift in machine load hits every series alike.
    for (let i = 0; i < SAMPLES; i++) {
      samples.node!.push(await timed(['-e', '0']));
      samples.prepare!.push(await timed(hookArgs(lean, 'prepare', 'begin'), xml));
      samples.release!.push(await timed(hookArgs(lean, 'release', 'end'), xml));
      samples.noop!.push(await timed(hookArgs(lean, 'start', 'begin')));
      if (mainHasHook) {
        samples.prepareMain!.push(await timed(hookArgs(full, 'prepare', 'begin'), xml));
        await timed(hookArgs(lean, 'release', 'end'), xml);
      }
    }
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    fs.rmSync(dir, { recursive: true, force: true });
  }

  const row = (what: string, xs: number[]): Row => {
    const s = [...xs].sort((a, b) => a - b);
    return { what, p50: pct(s, 50), p99: pct(s, 99) };
  };
  const base = row('`node -e 0` (baseline: a bare Node start)', samples.node!);
  const rows = [
    base,
    row('hook `prepare begin` (dist/cli/hook-main.js): XML in, acquire, exit', samples.prepare!),
    row('hook `release end` (dist/cli/hook-main.js)', samples.release!),
    row('hook `start begin`, a no-op call (no stdin, no socket)', samples.noop!),
    ...(mainHasHook ? [row('`vmlockd hook` `prepare begin` through dist/main.js (loads the whole CLI)', samples.prepareMain!)] : []),
  ];
  const f = (ms: number) => `${ms.toFixed(1)} ms`;
  const table = [
    `Measured ${new Date().toISOString().slice(0, 16)}Z, ${SAMPLES} samples each, interleaved; ${os.cpus().length} CPUs, Node ${process.version}. Time from spawning the hook process to its exit, against a real daemon (file lockspace, real OFD lock, journaled).`,
    '',
    '| what | p50 | p99 | p50 minus baseline |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.what} | ${f(r.p50)} | ${f(r.p99)} | ${r === base ? '-' : `+${f(r.p50 - base.p50)}`} |`),
    ...(mainHasHook ? [] : ['', '(dist/main.js has no `hook` command yet, so the through-main.js row is missing.)']),
  ].join('\n');
  process.stdout.write(table + '\n');

  if (!QUICK) {
    writeReadmeSection('bench:hook', table);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/hook: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
