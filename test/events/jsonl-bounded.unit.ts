import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { boundedLines, checkDepth } from '../../src/events/jsonl.js';

async function collect(chunks: string[], max: number) {
  const out: unknown[] = [];
  async function* src() {
    for (const c of chunks) yield Buffer.from(c);
  }
  for await (const l of boundedLines(src(), max)) out.push(l);
  return out;
}

test('boundedLines: splits across chunks, skips an over-long line whole, keeps a last unterminated line', async () => {
  assert.equal(await collect(['ab', 'c\nde\r\n', 'f'], 4), [{ line: 'abc' }, { line: 'de' }, { line: 'f' }]);
  assert.equal(await collect(['abcdef', 'gh\nok\n'], 4), [{ tooLong: 8 }, { line: 'ok' }]);
  assert.equal(await collect(['xxxxxxxxxx'], 4), [{ tooLong: 10 }]);
  assert.equal(await collect(['\n\n'], 4), [{ line: '' }, { line: '' }]);
});

test('checkDepth: refuses deep nesting without recursing', () => {
  checkDepth({ a: [{ b: 1 }] }, 3);
  assert.throws(() => checkDepth({ a: [{ b: [] }] }, 3), /nested deeper than 3/);
  assert.throws(() => checkDepth(JSON.parse('['.repeat(200_000) + ']'.repeat(200_000))), /nested deeper/);
});

test.run();
