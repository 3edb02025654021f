// The real qemu hook client (dist/cli/hook-main.js) run as libvirt runs it: `qemu -- ARGS`, the
// domain XML on stdin; its exit code and stderr.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from './daemon.js';

export const HOOK = path.join(ROOT, 'dist', 'cli', 'hook-main.js');

export function runHook(socket: string, args: string[], xml: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [HOOK, 'qemu', '--socket', socket, '--', ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('exit', (code) => resolve({ code, stderr }));
    p.stdin.end(xml);
  });
}
