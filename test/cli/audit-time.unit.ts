import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { normaliseUuid, parseTime } from '../../src/cli/audit.js';

test('a time without an offset is UTC, like a date alone, whatever the local time zone', () => {
  const tz = process.env.TZ;
  process.env.TZ = 'America/New_York';
  try {
    assert.is(parseTime('at', '2026-11-25T10:00'), '2026-11-25T10:00:00.000Z');
    assert.is(parseTime('at', '2026-11-25T10:00:30.5'), '2026-11-25T10:00:30.500Z');
    assert.is(parseTime('at', '2026-11-25'), '2026-11-25T00:00:00.000Z');
    assert.is(parseTime('at', '2026-11-25T11:00+01:00'), '2026-11-25T10:00:00.000Z');
  } finally {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  }
});

test('a uuid in upper case or without dashes is the uuid acquire stored', () => {
  assert.is(normaliseUuid('11111111111141118111111111111111'.toUpperCase()), '11111111-1111-4111-8111-111111111111');
  assert.is(normaliseUuid('AAAAAAAA-0000-4000-8000-000000000001'), 'aaaaaaaa-0000-4000-8000-000000000001');
  assert.is(normaliseUuid('web1'), 'web1');
});

test.run();
