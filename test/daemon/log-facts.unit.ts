// logFact builds no line for a routine fact (acquire, release, re-take: debug lines) below debug
// (issue 13: a restart with 10,000 locks built and dropped 10,000 lines), and every other fact is
// logged as describe says, at every level.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type Fact } from '../../src/engine/facts.js';
import { describe, logFact, routine } from '../../src/daemon/log-facts.js';
import type { Level, Logger } from '../../src/daemon/log.js';

const RANK: Record<Level, number> = { debug: 0, info: 1, warning: 2, error: 3 };
const owner = { uuid: '11111111-1111-4111-8111-111111111111', name: 'vm1' };
const res = { resource: '/ls/abc', name: 'abc', lockspace: '/ls', kind: 'file' as const, disk: '/d/a.img', path: '/d/a.img' };
const at = '2026-11-30T10:00:00.000Z';
const facts: Fact[] = [
  fact('LockAcquired', at, { ...res, owner, mode: 'exclusive', source: 'api' }),
  fact('LockReleased', at, { ...res, owner, source: 'api', reason: 'api' }),
  fact('Reacquired', at, { ...res, owner, mode: 'exclusive' }),
  fact('Reacquired', at, { ...res, owner, mode: 'exclusive', found: true }),
  fact('LeaseLost', at, { ...res, owner, mode: 'exclusive', holder: {}, reason: 'taken by another owner while vmlockd was down' }),
  fact('DaemonStarted', at, { pid: 1, version: '0', held: 0 } as never),
].map((f, i) => ({ ...f, seq: i + 1, host: 'h' }) as Fact);

/** A logger that records what it was asked to log, and counts how often describe's work was asked for. */
function recorder(level: Level): { log: Logger; lines: Array<{ level: Level; msg: string }> } {
  const lines: Array<{ level: Level; msg: string }> = [];
  const log = {
    enabled: (l: Level) => RANK[l] >= RANK[level],
    log: (l: Level, msg: string) => {
      if (RANK[l] >= RANK[level]) lines.push({ level: l, msg });
    },
  } as unknown as Logger;
  return { log, lines };
}

test('routine() is exactly the facts describe() gives a debug line', () => {
  for (const f of facts) assert.is(routine(f), describe(f)?.level === 'debug', `${f.kind}${(f.payload as { found?: boolean }).found ? ' (found)' : ''}`);
});

test('every level logs what describe says, and nothing below it', () => {
  for (const level of ['debug', 'info', 'warning', 'error'] as const) {
    const { log, lines } = recorder(level);
    for (const f of facts) logFact(log, f);
    const want = facts.map((f) => describe(f)).filter((l) => l !== undefined && RANK[l.level] >= RANK[level]).map((l) => ({ level: l!.level, msg: l!.msg }));
    assert.equal(lines, want, level);
  }
});

test('below debug a routine fact is never described (its fields are not even read)', () => {
  const { log, lines } = recorder('info');
  const trap = (kind: 'LockAcquired' | 'LockReleased' | 'Reacquired') => {
    const payload = new Proxy({ ...res, owner, mode: 'exclusive', source: 'api', reason: 'api' }, {
      get(t, k) {
        if (k === 'found' || k === 'then') return undefined;
        throw new Error(`read ${String(k)} of a routine ${kind} below debug`);
      },
    });
    return { kind, at, payload, seq: 1, host: 'h' } as unknown as Fact;
  };
  for (const k of ['LockAcquired', 'LockReleased', 'Reacquired'] as const) logFact(log, trap(k));
  assert.equal(lines, []);
});

test.run();
