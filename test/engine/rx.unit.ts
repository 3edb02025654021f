// src/engine/rx.ts takes each RxJS piece from its own module (rxjs/internal/*) so the daemon does not
// load RxJS's whole index: each must be the very object `rxjs` exports, and nothing in src/ may import
// 'rxjs' itself (that alone would load the whole index again).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as rxjs from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as rx from '../../src/engine/rx.js';

test('every piece of src/engine/rx.ts is the object rxjs exports under that name', () => {
  const names = Object.keys(rx);
  assert.ok(names.length >= 16, names.join(', '));
  for (const name of names) assert.is((rx as Record<string, unknown>)[name], (rxjs as Record<string, unknown>)[name], name);
});

test("nothing in src/ imports 'rxjs' (the whole index) except through src/engine/rx.ts", () => {
  const src = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..', '..', 'src');
  const offenders: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith(path.join('engine', 'rx.ts')) && /from 'rxjs(\/operators)?'/.test(fs.readFileSync(p, 'utf8'))) offenders.push(path.relative(src, p));
    }
  };
  walk(src);
  assert.equal(offenders, []);
});

test.run();
