// The house's rooms (docs/architecture.md "Rooms"), checked on the source's import lines: a command
// never reaches into the daemon (src/main.ts loads it for `serve` only), the journal imports nothing
// of the project, and no two modules import each other, directly or round a circle.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers/daemon.js';

const SRC = path.join(ROOT, 'src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every project module a file imports (static, type-only, re-exports and dynamic import()), as paths relative to src/. */
function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)].map((m) => (m[1] ?? m[2])!);
  return specs.map((s) => path.relative(SRC, path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts'))));
}

const graph = new Map(sources(SRC).map((f) => [path.relative(SRC, f), imports(f)]));

test('the import scan sees the project (sanity: main.ts loads the daemon lazily, journal.ts imports compact.ts)', () => {
  assert.ok(graph.get('main.ts')!.includes('daemon/daemon.ts'));
  assert.ok(graph.get('journal/journal.ts')!.includes('journal/compact.ts'));
});

test('src/cli/ imports nothing of src/daemon/', () => {
  const crossing = [...graph].flatMap(([f, deps]) => (f.startsWith('cli/') ? deps.filter((d) => d.startsWith('daemon/')).map((d) => `${f} -> ${d}`) : []));
  assert.equal(crossing, []);
});

test('src/journal/ imports nothing of the project outside it', () => {
  const out = [...graph].flatMap(([f, deps]) => (f.startsWith('journal/') ? deps.filter((d) => !d.startsWith('journal/')).map((d) => `${f} -> ${d}`) : []));
  assert.equal(out, []);
});

test('no import circles in src/', () => {
  const circles: string[] = [];
  const done = new Set<string>();
  const walk = (f: string, stack: string[]) => {
    const at = stack.indexOf(f);
    if (at >= 0) {
      circles.push([...stack.slice(at), f].join(' -> '));
      return;
    }
    if (done.has(f)) return;
    for (const d of graph.get(f) ?? []) walk(d, [...stack, f]);
    done.add(f);
  };
  for (const f of graph.keys()) walk(f, []);
  assert.equal(circles, []);
});

test.run();
