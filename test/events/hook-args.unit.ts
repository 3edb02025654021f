// qemu hook argv -> action, over every op/subop libvirt documents (docs/hooks.rst) and the
// sub-operations it could be combined with.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VmlockdError } from '../../src/engine/errors.js';
import { hookAction, parseHookArgs, QEMU_HOOK_CALLS, type HookAction } from '../../src/events/hook-args.js';

const OPS = ['prepare', 'start', 'started', 'stopped', 'release', 'migrate', 'restore', 'reconnect', 'attach'] as const;
const SUBOPS = ['begin', 'end', '-'] as const;

const EXPECTED: Record<string, HookAction> = {
  'prepare begin': 'acquire',
  'release end': 'release',
  'migrate begin': 'check',
  'restore begin': 'check',
};

test('the full op x subop table', () => {
  let n = 0;
  for (const op of OPS) {
    for (const subop of SUBOPS) {
      assert.is(hookAction(op, subop), EXPECTED[`${op} ${subop}`] ?? 'noop', `${op} ${subop}`);
      n++;
    }
  }
  assert.is(n, 27);
});

test('the calls libvirt documents, as it makes them', () => {
  const got = QEMU_HOOK_CALLS.map(([op, subop]) => `${op} ${subop} -> ${parseHookArgs(['vm1', op, subop, '-']).action}`);
  assert.equal(got, [
    'prepare begin -> acquire',
    'start begin -> noop',
    'started begin -> noop',
    'stopped end -> noop',
    'release end -> release',
    'migrate begin -> check',
    'restore begin -> check',
    'reconnect begin -> noop',
    'attach begin -> noop',
  ]);
});

test('given release end with a shutoff reason (libvirt >= 10.5), then extra carries it', () => {
  assert.equal(parseHookArgs(['vm1', 'release', 'end', 'destroyed']), { name: 'vm1', op: 'release', subop: 'end', extra: 'destroyed', action: 'release' });
});

test('given three arguments, then extra defaults to "-"; given more than four, the rest is ignored', () => {
  assert.is(parseHookArgs(['vm1', 'prepare', 'begin']).extra, '-');
  assert.is(parseHookArgs(['vm1', 'prepare', 'begin', '-', 'future']).action, 'acquire');
});

test('given unknown ops or other drivers\' ops, then noop', () => {
  for (const [op, subop] of [['define', '-'], ['plugged', 'begin'], ['shutdown', 'shutdown'], ['reload', 'begin'], ['PREPARE', 'begin']]) {
    assert.is(parseHookArgs(['vm1', op!, subop!, '-']).action, 'noop', `${op} ${subop}`);
  }
});

test('given too few arguments or no domain name, then a BadInputError says so', () => {
  for (const [argv, re] of [
    [[], /expects NAME OP SUBOP \[EXTRA\], got 0 argument/],
    [['vm1', 'prepare'], /got 2 argument/],
    [['-', 'start', '-', 'start'], /needs a domain name/],
    [['', 'prepare', 'begin', '-'], /needs a domain name/],
  ] as const) {
    try {
      parseHookArgs(argv);
      assert.unreachable(`no throw for ${JSON.stringify(argv)}`);
    } catch (e) {
      assert.instance(e, VmlockdError);
      assert.is((e as VmlockdError).code, 'VMLOCKD_ERR_BAD_INPUT');
      assert.match((e as Error).message, re);
    }
  }
});

test.run();
