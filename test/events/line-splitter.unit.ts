// LineSplitter: the control API's synchronous line splitting (one call per chunk), the same lines as
// boundedLines (which the fuzz test checks against a model) for any chunking.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LineSplitter, type BoundedLine } from '../../src/events/jsonl.js';

function split(chunks: Array<string | Buffer>, max = 16): BoundedLine[] {
  const s = new LineSplitter(max);
  const out = chunks.flatMap((c) => s.push(c));
  const last = s.end();
  return last === undefined ? out : [...out, last];
}

test('whole lines of one chunk, lines across chunks, CRLF, an empty line and a last line without a newline', () => {
  assert.equal(split(['a\nbb\r\n\ncc', 'c\nd', 'd']), [{ line: 'a' }, { line: 'bb' }, { line: '' }, { line: 'ccc' }, { line: 'dd' }]);
});

test('an over-long line is skipped whole, in one chunk or across several, and the next line is intact', () => {
  assert.equal(split(['x'.repeat(20) + '\nok\n']), [{ tooLong: 20 }, { line: 'ok' }]);
  assert.equal(split(['y'.repeat(10), 'y'.repeat(10), 'y'.repeat(10) + '\nok']), [{ tooLong: 30 }, { line: 'ok' }]);
});

test('a multi-byte character split between chunks is decoded whole', () => {
  const b = Buffer.from('é\n');
  assert.equal(split([b.subarray(0, 1), b.subarray(1)]), [{ line: 'é' }]);
});

test('a line taken from a chunk does not change when the stream reuses the chunk (it was decoded, not kept)', () => {
  const s = new LineSplitter(16);
  const buf = Buffer.from('ab\ncd');
  const first = s.push(buf);
  buf.fill(0x7a);
  assert.equal(first, [{ line: 'ab' }]);
  // 'cd' was carried over: copied before the buffer changed.
  assert.equal(s.end(), { line: 'cd' });
});

test.run();
