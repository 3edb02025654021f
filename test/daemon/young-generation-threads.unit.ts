// Decision 0007: V8 resets the young generation's flag whenever a worker thread starts, so every
// thread the project starts goes through startThread (src/journal/young-generation.ts), which sets
// it again. A `new Worker(` anywhere else would undo the decision without a word: none.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers/daemon.js';

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

test('src/ starts worker threads only through startThread', () => {
  const SRC = path.join(ROOT, 'src');
  const starts = sources(SRC).flatMap((f) =>
    fs
      .readFileSync(f, 'utf8')
      .split('\n')
      .flatMap((line, i) => (/\bnew Worker\s*\(/.test(line) ? [`${path.relative(SRC, f)}:${i + 1}`] : [])),
  );
  assert.ok(starts.length > 0 && starts.every((s) => s.startsWith('journal/young-generation.ts:')), starts.join(', '));
});

test.run();
