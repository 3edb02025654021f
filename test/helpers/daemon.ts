// Real daemon processes for integration tests: spawn `node dist/main.js serve`, talk to it with the
// real CLI, kill it with real signals.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MAIN = path.join(ROOT, 'dist', 'main.js');

export function tmpdir(prefix = 'vmlockd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function cli(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  // maxBuffer: spawnSync's default (1 MiB) kills a longer answer mid-output, at a point that depends on
  // how the pipe was read (cluster-cache-threads.int.ts compared two such cuts of a 1.7 MB answer and
  // failed 1 run in ~4).
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', input: opts.input, env: { ...process.env, ...opts.env }, timeout: 30_000, maxBuffer: 256 * 1024 * 1024 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface DaemonOptions {
  readonly stateDir: string;
  readonly lockspace?: string;
  readonly hostId?: string;
  readonly socket?: string;
  readonly extra?: string[];
  /** Extra environment for the daemon process (e.g. a PATH with a scripted `virsh` first). */
  readonly env?: NodeJS.ProcessEnv;
}

/** Every daemon a test started dies with the test run, even after a failed assertion. */
const live = new Set<TestDaemon>();
process.on('exit', () => {
  for (const d of live) d.proc?.kill('SIGKILL');
});

export class TestDaemon {
  proc?: ChildProcess;
  stdout = '';
  stderr = '';
  exit?: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly socket: string;

  constructor(readonly opts: DaemonOptions) {
    this.socket = opts.socket ?? path.join(opts.stateDir, 'vmlockd.sock');
  }

  args(): string[] {
    const o = this.opts;
    return [
      'serve',
      '--state-dir',
      o.stateDir,
      '--socket',
      this.socket,
      ...(o.lockspace !== undefined ? ['--lockspace', o.lockspace] : []),
      ...(o.hostId ? ['--host-id', o.hostId] : []),
      ...(o.extra ?? []),
    ];
  }

  /** Start and wait for the "listening on" line; rejects with the daemon's output if it exits first. */
  async start(timeoutMs = 15_000): Promise<this> {
    this.stdout = '';
    this.stderr = '';
    // VMLOCKD_NODE_ARGS: extra Node flags for the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it.
    const nodeArgs = process.env.VMLOCKD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
    const proc = spawn(process.execPath, [...nodeArgs, MAIN, ...this.args()], { stdio: ['ignore', 'pipe', 'pipe'], ...(this.opts.env ? { env: { ...process.env, ...this.opts.env } } : {}) });
    this.proc = proc;
    live.add(this);
    this.exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`daemon did not start in ${timeoutMs} ms\n${this.stdout}\n${this.stderr}`)), timeoutMs);
      const check = () => {
        if (this.stdout.includes('listening on')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on('data', check);
      void this.exit!.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited (code ${code}, signal ${signal}) before listening\n${this.stdout}\n${this.stderr}`));
      });
    });
    return this;
  }

  cli(args: string[], opts: { input?: string } = {}): CliResult {
    return cli([...args, '--socket', this.socket], opts);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return (await this.exit) ?? { code: null, signal: null };
    this.proc.kill(signal);
    return this.exit!;
  }
}

export async function startDaemon(opts: DaemonOptions): Promise<TestDaemon> {
  return new TestDaemon(opts).start();
}


export const UUID1 = '11111111-1111-4111-8111-111111111111';
export const UUID2 = '22222222-2222-4222-8222-222222222222';
export const UUID3 = '33333333-3333-4333-8333-333333333333';

/** Poll `probe` until it returns something truthy; fail naming `what` after `timeoutMs`. */
/** Poll `probe` (sync or async: a promise is awaited, never taken as truthy itself) until it gives a truthy value. */
export async function until<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
