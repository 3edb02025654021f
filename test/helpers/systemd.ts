// A real systemd user manager for tests, confined by systemd-sandbox (docs/ci.md: never an
// unconfined `systemd --user`, it adopts every process of the machine), and the shipped units
// rewritten only where a sandbox needs it.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tmpdir, until } from './daemon.js';

// The workplace's own sandbox tool (../shared/tools) where it exists; on a machine without it, the
// byte-identical copy kept in the project (CI runs on a clean clone that has no ../shared).
const SHARED_SANDBOX = path.join(ROOT, '..', 'shared', 'tools', 'systemd-sandbox');
export const SANDBOX = fs.existsSync(SHARED_SANDBOX) ? SHARED_SANDBOX : path.join(ROOT, 'test', 'helpers', 'systemd-sandbox');

export interface Ran {
  code: number;
  out: string;
}

export class Sandbox {
  private stopped = false;
  readonly pid: number;

  private constructor(readonly dir: string) {
    this.pid = Number(fs.readFileSync(path.join(dir, 'mgr.pid'), 'utf8'));
  }

  static start(dir: string): Sandbox {
    fs.mkdirSync(dir, { recursive: true });
    const r = run('start', dir);
    if (r.code !== 0) throw new Error(`systemd-sandbox start: ${r.out}`);
    return new Sandbox(dir);
  }

  /** systemctl --user ARGS inside the sandbox. */
  ctl(...args: string[]): Ran {
    return run('ctl', this.dir, ...args);
  }

  /**
   * The same without blocking this process's event loop: a test whose clients run in this process
   * must use it while they run (a client that connected but cannot write its request while
   * spawnSync waits looks to the daemon like a client that never speaks).
   */
  ctlAsync(...args: string[]): Promise<Ran> {
    return new Promise((resolve) => {
      const p = spawn(SANDBOX, ['ctl', this.dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      p.stderr!.on('data', (b: Buffer) => (out += b.toString()));
      p.on('close', (code) => resolve({ code: code ?? -1, out }));
    });
  }

  async showAsync(unit: string, prop: string): Promise<string> {
    const out = (await this.ctlAsync('show', '-p', prop, unit)).out;
    return new RegExp(`^${prop}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  }

  /** A path inside the manager's private mount namespace (its /run), seen from this process. */
  inside(p: string): string {
    return `/proc/${this.pid}/root${p}`;
  }

  install(name: string, text: string): void {
    fs.writeFileSync(path.join(this.dir, 'units', name), text);
  }

  show(unit: string, prop: string): string {
    const out = this.ctl('show', '-p', prop, unit).out;
    return new RegExp(`^${prop}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  }

  stop(): Ran {
    if (this.stopped) return { code: 0, out: '' };
    this.stopped = true;
    return run('stop', this.dir);
  }
}

function run(cmd: 'start' | 'stop' | 'ctl', dir: string, ...args: string[]): Ran {
  const r = spawnSync(SANDBOX, [cmd, dir, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** A shipped unit file from contrib/systemd. */
export function shippedUnit(name: string): string {
  return fs.readFileSync(path.join(ROOT, 'contrib', 'systemd', name), 'utf8');
}

/**
 * Replace (or drop, with null) the first line of `key=` in `section` of a unit, or add it there.
 * Every other line stays as shipped.
 */
export function setUnitKey(unit: string, section: string, key: string, value: string | null): string {
  const lines = unit.split('\n');
  const i = lines.findIndex((l) => l.startsWith(`${key}=`));
  if (i >= 0) {
    if (value === null) lines.splice(i, 1);
    else lines[i] = `${key}=${value}`;
    return lines.join('\n');
  }
  if (value === null) return unit;
  const s = lines.indexOf(`[${section}]`);
  if (s < 0) throw new Error(`no [${section}] in the unit`);
  lines.splice(s + 1, 0, `${key}=${value}`);
  return lines.join('\n');
}

/**
 * What a process sends on its datagram sockets (sd_notify) while it runs, seen by strace: the
 * manager of the sandbox has no journald to log what it received, and its console goes nowhere.
 * Only sendmsg stops the process (seccomp-bpf), so a watchdog keeps its timing.
 */
export async function traceSends(pid: number, file: string): Promise<{ stop(): Promise<string> }> {
  const st = spawn('strace', ['-f', '--seccomp-bpf', '-e', 'trace=sendmsg', '-s', '1024', '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<void>((r) => st.once('exit', () => r()));
  await until('strace attached', () => err.includes(`Process ${pid} attached`) || st.exitCode !== null);
  if (st.exitCode !== null) throw new Error(`strace -p ${pid}: ${err}`);
  return {
    stop: async () => {
      st.kill('SIGINT');
      await exited;
      return fs.readFileSync(file, 'utf8');
    },
  };
}

/**
 * The files a systemd test's daemon works on: a fresh root with a lockspace path, four empty disk
 * images and host a's state directory. The sandbox shares the host's filesystem, so these paths
 * mean the same inside it.
 */
export function sandboxHost(prefix: string): { root: string; lockspace: string; disks: string[]; state: string } {
  const root = tmpdir(prefix);
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const disks = [1, 2, 3, 4].map((i) => path.join(images, `d${i}.qcow2`));
  for (const d of disks) fs.writeFileSync(d, '');
  return { root, lockspace, disks, state: path.join(root, 'state-a') };
}
