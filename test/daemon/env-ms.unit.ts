// Millisecond settings from the environment: one rule for every VMLOCKD_*_MS variable the daemon reads.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { envMs } from '../../src/daemon/env-ms.js';
import { frameTimeoutMs } from '../../src/daemon/virtlockd-source.js';
import { DEFAULT_FRAME_TIMEOUT_MS } from '../../src/events/virtlockd/server.js';

test('envMs: unset or empty gives undefined; 1 to 2147483647 whole ms is taken', () => {
  assert.is(envMs({}, 'VMLOCKD_X_MS'), undefined);
  assert.is(envMs({ VMLOCKD_X_MS: '' }, 'VMLOCKD_X_MS'), undefined);
  assert.is(envMs({ VMLOCKD_X_MS: '1' }, 'VMLOCKD_X_MS'), 1);
  assert.is(envMs({ VMLOCKD_X_MS: '2147483647' }, 'VMLOCKD_X_MS'), 2_147_483_647);
});

test('envMs: anything else is an error naming the variable and what it held', () => {
  for (const bad of ['0', '-1', '1.5', 'soon', '2147483648', '99999999999', ' ']) {
    assert.throws(
      () => envMs({ VMLOCKD_X_MS: bad }, 'VMLOCKD_X_MS'),
      (e: Error & { code?: string }) => e.code === 'VMLOCKD_ERR_BAD_INPUT' && e.message.startsWith('VMLOCKD_X_MS must be a whole number of milliseconds') && e.message.includes(JSON.stringify(bad)),
    );
  }
});

test('VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS: default, a value, and an error naming it', () => {
  assert.is(frameTimeoutMs({}), DEFAULT_FRAME_TIMEOUT_MS);
  assert.is(frameTimeoutMs({ VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS: '750' }), 750);
  assert.throws(() => frameTimeoutMs({ VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS: '0' }), (e: Error) => e.message.includes('VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS'));
});

test.run();
