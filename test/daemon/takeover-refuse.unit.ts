// A take-over that cannot run fails loudly: it never starts "fresh" beside a running daemon
// (found with a stale native build: "nat.unixConnect is not a function" logged at info, then a
// normal start). Only "nobody listens" (ENOENT, ECONNREFUSED) means a normal start.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native, type NativeBinding } from '../../src/engine/native.js';
import { spawnSync } from 'node:child_process';
import { DEFAULT_TAKEOVER_TIMEOUT_MS, exited, takeOver, takeoverTimeoutMs } from '../../src/daemon/takeover.js';
import { tmpdir } from '../helpers/daemon.js';

const quiet = () => {};

/** The real binding with some calls replaced (its own properties are read-only). */
function without(nat: NativeBinding, over: Record<string, unknown>): NativeBinding {
  const copy: Record<string, unknown> = {};
  for (const k of Object.getOwnPropertyNames(nat)) copy[k] = (nat as unknown as Record<string, unknown>)[k];
  return { ...copy, ...over } as unknown as NativeBinding;
}

test('a native binding without the hand-off calls is an error naming them, not a fresh start', () => {
  const stale = without(native, { unixConnect: undefined, recvFds: undefined });
  assert.throws(() => takeOver(tmpdir(), quiet, {}, stale), (e: Error & { code?: string }) => e.code === 'VMLOCKD_ERR_IO' && /unixConnect, recvFds/.test(e.message) && /rebuild/.test(e.message));
});

test('a hand-off socket that cannot be reached for another reason (EACCES) is an error', () => {
  const nat = without(native, {
    unixConnect: () => {
      throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    },
  });
  assert.throws(() => takeOver(tmpdir(), quiet, {}, nat), (e: Error & { code?: string }) => e.code === 'VMLOCKD_ERR_IO' && /EACCES/.test(e.message));
});

test('no daemon (no socket, or a stale socket file nobody listens on) is a normal start', () => {
  const dir = tmpdir();
  assert.is(takeOver(dir, quiet).found, false);
  // A socket file left by a SIGKILLed daemon: ECONNREFUSED.
  const stale = path.join(dir, 'handoff.sock');
  fs.writeFileSync(stale, '');
  const r = (() => {
    try {
      return takeOver(dir, quiet);
    } catch (e) {
      return e as Error;
    }
  })();
  // A regular file there is not a socket: ECONNREFUSED from connect(2) as well.
  assert.ok(!(r instanceof Error), String(r));
  assert.is((r as { found: boolean }).found, false);
});

test('VMLOCKD_TAKEOVER_TIMEOUT_MS: default 120 s, a whole number of ms, anything else an error naming it', () => {
  assert.is(takeoverTimeoutMs({}), DEFAULT_TAKEOVER_TIMEOUT_MS);
  assert.is(DEFAULT_TAKEOVER_TIMEOUT_MS, 120_000);
  assert.is(takeoverTimeoutMs({ VMLOCKD_TAKEOVER_TIMEOUT_MS: '2500' }), 2500);
  for (const bad of ['0', '-1', '1.5', 'soon', '99999999999']) {
    assert.throws(() => takeoverTimeoutMs({ VMLOCKD_TAKEOVER_TIMEOUT_MS: bad }), (e: Error & { code?: string }) => e.code === 'VMLOCKD_ERR_BAD_INPUT' && e.message.includes('VMLOCKD_TAKEOVER_TIMEOUT_MS'));
  }
});

test('exited(): this process (with its threads) is alive; a child that has exited and was reaped is not', () => {
  assert.is(exited(process.pid), false);
  const r = spawnSync(process.execPath, ['-e', '0']);
  assert.is(r.status, 0);
  assert.is(exited(r.pid!), true);
});

test.run();
