// A LockClient in its own process, driven over stdin/stdout: for a client with another uid (virtlockd
// run as nobody accepts only nobody) or an owner process that registers its own pid, as QEMU does.
//
// Controller: `const r = await RemoteClient.spawn(socket, { uid })`, then `await r.do({ op: 'acquire', ... })`.
// Child: `node --import tsx test/helpers/remote-client.ts` reads one JSON command per line.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LockClient, LockRpcError } from '../../src/events/virtlockd/client.js';

export type Command =
  | { op: 'register'; uuid: string; name: string; id?: number; pid?: number | 'self' }
  | { op: 'createLockspace'; path: string }
  | { op: 'acquire'; path: string; name: string; shared?: boolean; autocreate?: boolean }
  | { op: 'release'; path: string; name: string }
  | { op: 'restrict' }
  | { op: 'close' };

export type Result = { ok: true } | { ok: false; code?: number; domain?: number; message: string };

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');

export class RemoteClient {
  private lines: string[] = [];
  private waiters: Array<(l: string) => void> = [];
  /** Every signal the child saw (it reports them on stdout), so a test can assert none was sent. */
  readonly signals: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly proc: ChildProcess) {
    const rl = readline.createInterface({ input: proc.stdout! });
    rl.on('line', (l) => {
      if (l.startsWith('SIGNAL ')) return void this.signals.push(l.slice(7));
      const w = this.waiters.shift();
      if (w) w(l);
      else this.lines.push(l);
    });
    this.exited = new Promise((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  static async spawn(socket: string, opts: { uid?: number } = {}): Promise<RemoteClient> {
    const drop = opts.uid !== undefined && opts.uid !== process.getuid?.() ? ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups'] : [];
    const argv = [...drop, process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url)];
    const proc = spawn(argv[0]!, argv.slice(1), {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp', SOCK: socket, REMOTE_CLIENT: '1' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const r = new RemoteClient(proc);
    const hello = await r.next(15_000);
    if (hello !== 'CONNECTED') throw new Error(`remote client did not connect: ${hello}`);
    return r;
  }

  private next(timeoutMs: number): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('remote client did not answer')), timeoutMs);
      this.waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
      void this.exited.then(() => {
        clearTimeout(timer);
        resolve('EXITED');
      });
    });
  }

  async do(cmd: Command): Promise<Result> {
    this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
    const l = await this.next(15_000);
    if (l === 'EXITED') return { ok: false, message: 'remote client exited' };
    return JSON.parse(l) as Result;
  }

  /** Ends the process without closing the connection first (the kernel closes it, as when QEMU dies). */
  async kill(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

async function child(): Promise<void> {
  for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) process.on(s, () => process.stdout.write(`SIGNAL ${s}\n`));
  const c = await LockClient.connect(process.env.SOCK!);
  process.stdout.write('CONNECTED\n');
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = JSON.parse(line) as Command;
    let result: Result = { ok: true };
    try {
      switch (cmd.op) {
        case 'register':
          await c.register({ uuid: cmd.uuid, name: cmd.name, id: cmd.id ?? 1, pid: cmd.pid === 'self' || cmd.pid === undefined ? process.pid : cmd.pid });
          break;
        case 'createLockspace':
          await c.createLockspace(cmd.path);
          break;
        case 'acquire':
          await c.acquire(cmd.path, cmd.name, { shared: cmd.shared ?? false, autocreate: cmd.autocreate ?? false });
          break;
        case 'release':
          await c.release(cmd.path, cmd.name);
          break;
        case 'restrict':
          await c.restrict();
          break;
        case 'close':
          await c.close();
          break;
        default: {
          const _exhaustive: never = cmd;
          throw new Error(`unknown op ${JSON.stringify(_exhaustive)}`);
        }
      }
    } catch (e) {
      result = e instanceof LockRpcError ? { ok: false, code: e.code, domain: e.domain, message: e.message } : { ok: false, message: (e as Error).message };
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  }
}

if (process.env.REMOTE_CLIENT === '1' && process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  child().catch((e: unknown) => {
    process.stdout.write(`FAILED ${(e as Error).message}\n`);
    process.exit(1);
  });
}
