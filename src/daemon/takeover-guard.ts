// `serve --takeover` of a daemon systemd runs: refused. The new process would run outside the unit
// (systemd would see its main process exit, stop the unit and empty the descriptor store, or restart
// it beside the new one); the upgrade there is `systemctl restart vmlockd`, during which the store
// keeps every lock (docs/decisions/0012).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VmlockdError } from '../engine/errors.js';

/** The NOTIFY_SOCKET a process was started with (/proc/PID/environ), or undefined. */
export function notifySocketOf(pid: number, read: (p: string) => Buffer = (p) => fs.readFileSync(p)): string | undefined {
  let env: Buffer;
  try {
    env = read(`/proc/${pid}/environ`);
  } catch {
    return undefined;
  }
  for (const kv of env.toString('utf8').split('\0')) if (kv.startsWith('NOTIFY_SOCKET=')) return kv.slice('NOTIFY_SOCKET='.length) || undefined;
  return undefined;
}

/**
 * Throws when the daemon running on `stateDir` (its pid file) was started by a service manager
 * and this process was not started by the same one.
 */
export function refuseTakeoverUnderManager(stateDir: string, env: NodeJS.ProcessEnv = process.env): void {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(stateDir, 'vmlockd.pid'), 'utf8').trim());
  } catch {
    return; // none running: a normal start
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return;
  const theirs = notifySocketOf(pid);
  if (theirs === undefined || theirs === env.NOTIFY_SOCKET) return;
  throw new VmlockdError(
    'VMLOCKD_ERR_ALREADY_RUNNING',
    `--takeover refused: the running vmlockd (pid ${pid}) is systemd's (NOTIFY_SOCKET=${theirs}); a daemon started here would run outside its unit. Upgrade with: systemctl restart vmlockd (the descriptor store keeps every lock meanwhile)`,
  );
}
