// One acquire, check or hand-over names at most MAX_DISKS_PER_COMMAND disks (review25a F9): more is
// bad input naming the count and the limit, refused before any disk is resolved; a release is never
// bounded (a VM must always be able to let go).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_DISKS_PER_COMMAND } from '../../src/engine/command-bounds.js';
import { BadInputError } from '../../src/engine/errors.js';
import { resolveCommand } from '../../src/engine/resolve.js';
import { initialState } from '../../src/engine/state.js';

const rules = { fileLockspaceDir: '/ls' };
const disks = (n: number) => Array.from({ length: n }, (_, i) => ({ path: `/nonexistent/d${i}`, mode: 'exclusive' as const, create: true }));

test('more disks than the limit: BadInputError naming the count and the limit, for acquire, check and hand-over', () => {
  for (const kind of ['acquire', 'check'] as const) {
    const cmd = { kind, owner: { uuid: 'u' }, disks: disks(MAX_DISKS_PER_COMMAND + 1), at: 'now', source: 'test' };
    assert.throws(
      () => resolveCommand(cmd, rules, initialState()),
      (e: unknown) => e instanceof BadInputError && e.message.includes(`${kind} names ${MAX_DISKS_PER_COMMAND + 1} disks; at most ${MAX_DISKS_PER_COMMAND} per command`),
    );
  }
  const handOver = { kind: 'hand-over' as const, step: 'wait' as const, owner: { uuid: 'u' }, disks: disks(MAX_DISKS_PER_COMMAND + 1), from: 'h', at: 'now', source: 'hook' };
  assert.throws(() => resolveCommand(handOver, rules, initialState()), /hand-over names 1025 disks/);
});

test('exactly the limit resolves; a release naming more is not refused', () => {
  const r = resolveCommand({ kind: 'acquire', owner: { uuid: 'u' }, disks: disks(MAX_DISKS_PER_COMMAND), at: 'now', source: 'test' }, rules, initialState());
  assert.is(r.kind === 'acquire' && r.resolved.length, MAX_DISKS_PER_COMMAND);
  const rel = resolveCommand({ kind: 'release', owner: { uuid: 'u' }, paths: disks(MAX_DISKS_PER_COMMAND + 1).map((d) => d.path), at: 'now', source: 'test' }, rules, initialState());
  assert.is(rel.kind === 'release' && rel.resolved?.length, MAX_DISKS_PER_COMMAND + 1);
});

test.run();
