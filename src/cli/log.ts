// Daemon log: one line per message on stderr, `time level message`. Levels follow virtlockd's log_level.
export type Level = 'debug' | 'info' | 'warning' | 'error';
const RANK: Record<Level, number> = { debug: 1, info: 2, warning: 3, error: 4 };

export class Logger {
  constructor(public level: Level = 'info') {}
  log(level: Level, msg: string): void {
    if (RANK[level] < RANK[this.level]) return;
    process.stderr.write(`${new Date().toISOString()} ${level} ${msg}\n`);
  }
  debug(msg: string): void {
    this.log('debug', msg);
  }
  info(msg: string): void {
    this.log('info', msg);
  }
  warn(msg: string): void {
    this.log('warning', msg);
  }
  error(msg: string): void {
    this.log('error', msg);
  }
}
