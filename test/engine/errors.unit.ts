import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { BadInputError, ERROR_CODES, LockHeldError, VmlockdError, exitCodeOf, type ErrorCode } from '../../src/engine/errors.js';

const doc = fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

for (const [code, spec] of Object.entries(ERROR_CODES) as Array<[ErrorCode, (typeof ERROR_CODES)[ErrorCode]]>) {
  test(`${code}: has a default message, maps to exit ${spec.exit}, and is documented in docs/errors.md`, () => {
    const e = new VmlockdError(code);
    assert.is(e.code, code);
    assert.is(e.message, spec.message);
    assert.is(e.exitCode, spec.exit);
    assert.is(exitCodeOf(code), spec.exit);
    assert.ok(doc.includes(`| \`${code}\` | ${spec.exit} |`), `docs/errors.md row for ${code}`);
  });
}

test('subclasses keep their code and carry the cause', () => {
  const cause = new Error('inner');
  const bad = new BadInputError('vm.uuid must be a UUID', { cause });
  assert.is(bad.code, 'VMLOCKD_ERR_BAD_INPUT');
  assert.is(bad.cause, cause);
  assert.ok(bad instanceof VmlockdError);
  assert.is(new LockHeldError('held').exitCode, 3);
});

test('an unknown code exits 1', () => {
  assert.is(exitCodeOf('ENOENT'), 1);
  assert.is(exitCodeOf(undefined), 1);
});

test.run();
