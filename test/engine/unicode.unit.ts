// Lone UTF-16 surrogates at the engine's door (src/engine/resolve.ts, src/engine/unicode.ts): a disk
// path holding one is refused, an owner's name or uuid holding one is journaled with U+FFFD instead.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkDiskPath, wellFormedOwner } from '../../src/engine/resolve.js';
import { isWellFormed, toWellFormed } from '../../src/engine/unicode.js';

const UUID = '11111111-1111-4111-8111-111111111111';

test('isWellFormed / toWellFormed: lone high or low surrogates only; pairs (emoji) are text', () => {
  assert.ok(isWellFormed('vm-é-\u{1F600}'));
  assert.not.ok(isWellFormed('a\ud800b'));
  assert.not.ok(isWellFormed('\udc00'));
  assert.is(toWellFormed('a\ud800b\udc00'), 'a\uFFFDb\uFFFD');
});

test('checkDiskPath: a lone surrogate is bad input naming it; a well-formed path passes', () => {
  assert.is(checkDiskPath('/images/vm-\u{1F600}.img'), '/images/vm-\u{1F600}.img');
  assert.throws(
    () => checkDiskPath('/images/x\udc00.img', 'disk path'),
    (e: Error & { code?: string }) => e.code === 'VMLOCKD_ERR_BAD_INPUT' && e.message.startsWith('disk path contains a lone UTF-16 surrogate'),
  );
});

test('wellFormedOwner: the same object when well-formed; U+FFFD for each lone surrogate otherwise', () => {
  const ok = { uuid: UUID, name: 'web-\u{1F600}' };
  assert.is(wellFormedOwner(ok), ok);
  const nameless = { uuid: UUID };
  assert.is(wellFormedOwner(nameless), nameless);
  assert.equal(wellFormedOwner({ uuid: UUID, name: 'bad\ud800x' }), { uuid: UUID, name: 'bad\uFFFDx' });
});

test.run();
