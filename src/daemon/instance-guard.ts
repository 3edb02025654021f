// One daemon per state directory: an flock(2) on <state>/vmlockd.pid, held for the daemon's life.
// flock and fcntl locks are independent on Linux, so this guard never interferes with the lock files.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { flockSync } from '../journal/flock.js';
import { VmlockdError } from '../engine/errors.js';

export interface InstanceGuard {
  readonly pidFile: string;
  release(): void;
}

export function acquireInstanceGuard(stateDir: string): InstanceGuard {
  const pidFile = path.join(stateDir, 'vmlockd.pid');
  const fd = fs.openSync(pidFile, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  try {
    flockSync(fd, 'exnb');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') {
      fs.closeSync(fd);
      throw new VmlockdError('VMLOCKD_ERR_IO', `cannot lock ${pidFile}: ${(e as Error).message}`, { cause: e });
    }
    const pid = fs.readFileSync(pidFile, 'utf8').trim() || 'unknown';
    fs.closeSync(fd);
    throw new VmlockdError('VMLOCKD_ERR_ALREADY_RUNNING', `another vmlockd (pid ${pid}) is already running on state directory ${stateDir} (lock held on ${pidFile})`);
  }
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, `${process.pid}\n`, 0);
  return {
    pidFile,
    release: () => {
      try {
        fs.ftruncateSync(fd, 0);
        fs.closeSync(fd);
      } catch {
        // Exiting anyway; the kernel drops the flock with the process.
      }
    },
  };
}
