// Recovery reads a staging file as its lines plus "is anything after the first zero byte not zero?"
// (readStage, src/journal/stage.ts) instead of decoding and regex-scanning the whole preallocated
// file (~10 MiB of zeros) as text on every start (bench/README.md, speed27). The same answers as the
// old whole-file reading, at the 1 MiB chunk boundaries too.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readStage } from '../../src/journal/stage.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-stage-read-'));
const MiB = 1 << 20;

/** What recovery took from the file before: the text up to the first NUL, and whether any character is not NUL. */
function before(bytes: Buffer): { text: string; any: boolean; firstZero: number } {
  const all = bytes.toString('utf8');
  const nul = all.indexOf('\0');
  return { text: nul === -1 ? all : all.slice(0, nul), any: /[^\0]/.test(all), firstZero: bytes.indexOf(0) };
}

function check(name: string, bytes: Buffer): void {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  const fd = fs.openSync(file, 'r');
  try {
    const got = readStage(fd);
    const want = before(bytes);
    const nul = got.bytes.indexOf(0);
    const text = got.bytes.toString('utf8', 0, nul === -1 ? got.bytes.length : nul);
    assert.is(text, want.text, `${name}: text`);
    assert.is(text.length > 0 || got.moreAfterZero, want.any, `${name}: anything but zeros`);
    // What stage-keep.ts reads of the bytes: the first zero at or after the lines' end, or the file's length.
    assert.is(got.bytes.indexOf(0), want.firstZero, `${name}: first zero`);
    if (want.firstZero === -1) assert.is(got.bytes.length, bytes.length, `${name}: whole file without a zero`);
    else assert.is(got.bytes.length, want.firstZero + 1, `${name}: up to and including the first zero`);
  } finally {
    fs.closeSync(fd);
  }
}

const line = (n: number) => Buffer.from(`{"seq":${n},"payload":"\u00e9t\u00e9 ${'x'.repeat(n % 50)}"}\n`);
const lines = (bytes: number) => {
  const out: Buffer[] = [];
  let size = 0;
  for (let n = 1; size < bytes; n++) {
    out.push(line(n));
    size += out[out.length - 1]!.length;
  }
  return Buffer.concat(out).subarray(0, bytes);
};

test('lines then preallocated zeros, an all-zero file, an empty file, lines without zeros', () => {
  check('lines-zeros', Buffer.concat([lines(5000), Buffer.alloc(10 * MiB)]));
  check('zeros', Buffer.alloc(10 * MiB + 17));
  check('empty', Buffer.alloc(0));
  check('lines-only', lines(3000));
});

test('the first zero at and around the 1 MiB read boundaries, and lines longer than a chunk', () => {
  for (const at of [MiB - 1, MiB, MiB + 1, 2 * MiB - 1, 2 * MiB + 3]) check(`zero-at-${at}`, Buffer.concat([lines(at), Buffer.alloc(MiB + 5)]));
  check('long-lines-no-zero', lines(3 * MiB + 7));
});

test('something after the zeros (a torn write past a hole): seen, in the first chunk or a later one', () => {
  check('after-in-first', Buffer.concat([lines(100), Buffer.alloc(1000), Buffer.from('junk'), Buffer.alloc(100)]));
  check('after-in-later', Buffer.concat([lines(100), Buffer.alloc(5 * MiB), Buffer.from([1]), Buffer.alloc(MiB)]));
  check('zeros-then-junk', Buffer.concat([Buffer.alloc(3 * MiB), Buffer.from('x')]));
  check('torn-utf8-before-zero', Buffer.concat([lines(100), Buffer.from([0xc3]), Buffer.alloc(1000)]));
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test.run();
