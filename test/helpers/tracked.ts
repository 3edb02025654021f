/**
 * Daemons a test file starts, SIGKILLed after each test: `track(startDaemon(...))` keeps one,
 * `running.push(d)` one started again with `d.start()`.
 */
import type { Test } from 'uvu';
import type { TestDaemon } from './daemon.js';

export function tracked(test: Test): { running: TestDaemon[]; track: <T extends TestDaemon>(p: Promise<T>) => Promise<T> } {
  const running: TestDaemon[] = [];
  test.after.each(async () => {
    for (const d of running.splice(0)) await d.kill('SIGKILL');
  });
  return {
    running,
    track: async (p) => {
      const d = await p;
      running.push(d);
      return d;
    },
  };
}
