// Shared by the benchmarks: a real daemon process on a fresh state dir, and bench/README.md's sections.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const MAIN = path.join(ROOT, 'dist', 'main.js');

/** Start `vmlockd serve` in `dir` and resolve once it listens. */
export async function startBenchDaemon(dir: string, lockspace: string, hostId: string, extra: readonly string[] = [], main: string = MAIN): Promise<{ proc: ChildProcess; socket: string }> {
  const socket = path.join(dir, 'vmlockd.sock');
  // VMLOCKD_NODE_ARGS: extra Node flags for the daemon (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
  const nodeArgs = process.env.VMLOCKD_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const proc = spawn(process.execPath, [...nodeArgs, main, 'serve', '--state-dir', path.join(dir, 'state'), '--lockspace', lockspace, '--socket', socket, '--host-id', hostId, ...extra], {
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

/**
 * Replace what stands between `<!-- STEM:start -->` and `<!-- STEM:end -->` in bench/README.md with
 * `body`. Each benchmark owns one such section; a README without its markers is an error, so one
 * benchmark can never overwrite another's figures.
 */
export function writeReadmeSection(stem: string, body: string): void {
  const readme = path.join(ROOT, 'bench', 'README.md');
  const text = fs.readFileSync(readme, 'utf8');
  const start = `<!-- ${stem}:start -->`;
  const end = `<!-- ${stem}:end -->`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`bench/README.md lacks the ${start} ... ${end} markers`);
  fs.writeFileSync(readme, `${text.slice(0, i + start.length)}\n${body.trimEnd()}\n${text.slice(j)}`);
  process.stderr.write(`bench/README.md: ${stem} section updated\n`);
}
