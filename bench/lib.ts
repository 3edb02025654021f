// Shared by the benchmarks: a real daemon process on a fresh state dir.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const MAIN = path.join(ROOT, 'dist', 'main.js');

/** Start `vmlockd serve` in `dir` and resolve once it listens. */
export async function startBenchDaemon(dir: string, lockspace: string, hostId: string): Promise<{ proc: ChildProcess; socket: string }> {
  const socket = path.join(dir, 'vmlockd.sock');
  // VMLOCKD_NODE_ARGS: extra Node flags for the daemon (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
  const nodeArgs = process.env.VMLOCKD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, MAIN, 'serve', '--state-dir', path.join(dir, 'state'), '--lockspace', lockspace, '--socket', socket, '--host-id', hostId], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    proc.once('exit', (c) => reject(new Error(`daemon exited ${c}`)));
  });
  return { proc, socket };
}
