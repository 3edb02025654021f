// The cluster read cache's elided payload form (src/journal/payload-elide.ts): every payload comes back
// exactly, whatever it holds; only the exact owner prefix of the row's own columns is elided.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { elidePayload, restorePayload } from '../../src/journal/payload-elide.js';

const U = '5a1e0000-0000-4000-8000-000000300354';
const N = 'vm-0300354';

function roundTrip(payload: string, owner: string | null, name: string | null): string {
  const e = elidePayload(payload, owner, name);
  assert.is(restorePayload(e, owner, name), payload, `round trip of ${JSON.stringify(payload)}`);
  return e;
}

test('the owner prefix of the row is elided to one byte and restored', () => {
  const p = `{"owner":{"uuid":"${U}","name":"${N}"},"mode":"exclusive","source":"virsh","generation":1}`;
  assert.is(roundTrip(p, U, N), '\u0001,"mode":"exclusive","source":"virsh","generation":1}');
  assert.is(roundTrip(`{"owner":{"uuid":"${U}","name":"${N}"}}`, U, N), '\u0001}');
});

test('payloads that are not exactly the row owner prefix stay whole', () => {
  const cases: Array<[string, string | null, string | null]> = [
    [`{"owner":{"uuid":"${U}","name":"${N}"},"x":1}`, U, 'other'], // another name in the row
    [`{"owner":{"uuid":"${U}","name":"${N}"},"x":1}`, null, null], // no owner columns
    [`{"owner":{"uuid":"${U}","name":"${N}"},"x":1}`, U, null],
    [`{"owner":{"name":"${N}","uuid":"${U}"},"x":1}`, U, N], // keys in another order
    [`{"owner":{"uuid":"${U}","name":"${N}","extra":1},"x":1}`, U, N], // more in the owner object
    [`{"owner":{"uuid":"${U}","name":"${N}"}x`, U, N], // not followed by , or }
    [`{"owner":{"uuid":"${U}","name":"${N}"}`, U, N], // the prefix alone
    [`{"pid":12,"held":3}`, null, null],
    ['null', U, N],
    ['', U, N],
  ];
  for (const [p, o, n] of cases) assert.is(roundTrip(p, o, n), p);
});

test('an owner uuid or name with a lone surrogate is never elided: its column cannot hold it (review 24c F3)', () => {
  for (const [o, n] of [[U, '\ud800x'], [U, 'x\udc00'], ['\udbff' + U, N], [U, '\ud800']] as const) {
    const p = JSON.stringify({ owner: { uuid: o, name: n }, mode: 'exclusive' });
    assert.is(elidePayload(p, o, n), p, `${JSON.stringify(o)} / ${JSON.stringify(n)}`);
  }
  // A well-formed pair (astral characters) is still elided.
  const p = JSON.stringify({ owner: { uuid: U, name: 'vm-😀' }, mode: 'exclusive' });
  assert.is(roundTrip(p, U, 'vm-😀'), '\u0001,"mode":"exclusive"}');
});

test('a payload starting with the marker byte is kept exactly (escaped), also after the owner prefix', () => {
  assert.is(roundTrip('\u0001,"x":1}', U, N), '\u0001\u0001\u0001,"x":1}');
  assert.is(roundTrip('\u0001\u0001', null, null), '\u0001\u0001\u0001\u0001');
  assert.is(roundTrip(`{"owner":{"uuid":"${U}","name":"${N}"}\u0001`, U, N), `{"owner":{"uuid":"${U}","name":"${N}"}\u0001`);
});

test('names that JSON escapes: elided and restored through the same encoding', () => {
  for (const name of ['we"b', 'w\\eb', 'wéb', 'w\u2028b', 'w\nb', '😀']) {
    const p = `{"owner":${JSON.stringify({ uuid: U, name })},"mode":"shared"}`;
    assert.is(roundTrip(p, U, name), '\u0001,"mode":"shared"}');
  }
});

test('rows of different owners in any order restore each its own prefix (the last owner\'s is remembered)', () => {
  const owners: Array<[string, string]> = [['u-1', 'a'], ['u-1', 'b'], ['u-2', 'a'], ['u-1', 'a'], ['', ''], ['u-"3', 'n\\x'], ['u-1', 'a']];
  for (let round = 0; round < 3; round++) {
    for (const [uuid, name] of round === 1 ? [...owners].reverse() : owners) {
      const payload = `{"owner":{"uuid":${JSON.stringify(uuid)},"name":${JSON.stringify(name)}},"mode":"shared"}`;
      const stored = elidePayload(payload, uuid, name);
      assert.is(stored, '\u0001,"mode":"shared"}');
      assert.is(restorePayload(stored, uuid, name), payload);
    }
  }
});

test('an elided payload without its owner columns is an error, not a guess', () => {
  assert.throws(() => restorePayload('\u0001,"x":1}', null, N), /damaged/);
});

test.run();
