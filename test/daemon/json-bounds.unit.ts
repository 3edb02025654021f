import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { countJsonValues } from '../../src/daemon/json-bounds.js';

const n = (s: string, max = 1000) => countJsonValues(Buffer.from(s, 'utf8'), max);

test('counts structural characters outside strings only', () => {
  assert.is(n('{"a":1,"b":[1,2]}'), 6);
  assert.is(n('{"x":"a,b:[{\\",\\\\"}'), 2);
  assert.is(n('{"é,":"ü{"}'), 2);
  assert.is(n(''), 0);
});

test('stops once past the bound', () => {
  assert.is(n('[' + '0,'.repeat(100) + '0]', 10), 11);
});

test.run();
