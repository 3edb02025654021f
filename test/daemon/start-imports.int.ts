// What `vmlockd serve` loads before it listens (issue 13: a restart with 10,000 locks within 1 s).
// Module loading is most of an empty start: fast-xml-parser's ES modules (~40 files) and RxJS's pieces
// imported as ES modules from CommonJS cost ~100 ms of CPU at load 13 (bench/README.md). They are
// require()d instead (src/events/xml-parser.ts, src/engine/rx.ts): the ES module loader resolves
// none of them, and the XML parser is its one-file CommonJS bundle.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, startDaemon, tmpdir } from '../helpers/daemon.js';

const dir = tmpdir('vmlockd-start-imports-');
const log = path.join(dir, 'loaded.log');
fs.writeFileSync(path.join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.LOADED_LOG, 'esm ' + r.url + '\\n');
  return r;
}
`);
fs.writeFileSync(path.join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify('file://' + path.join(dir, 'hooks.mjs'))});\n`);
// CommonJS modules as they stand when the daemon says it listens.
fs.writeFileSync(
  path.join(dir, 'cjs.cjs'),
  `const w = process.stdout.write.bind(process.stdout);
process.stdout.write = (c, ...r) => {
  if (String(c).includes('listening on')) require('node:fs').appendFileSync(process.env.LOADED_LOG, Object.keys(require.cache).map((f) => 'cjs ' + f + '\\n').join(''));
  return w(c, ...r);
};
`,
);

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('serve: no ES module of rxjs or fast-xml-parser; the XML parser is its CommonJS bundle', async () => {
  fs.writeFileSync(log, '');
  const d = await startDaemon({
    stateDir: path.join(dir, 'state'),
    lockspace: path.join(dir, 'lockspace'),
    hostId: 'start-imports',
    env: { NODE_OPTIONS: `--require ${path.join(dir, 'cjs.cjs')} --import ${path.join(dir, 'register.mjs')}`, LOADED_LOG: log },
  });
  try {
    const lines = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const esm = lines.filter((l) => l.startsWith('esm ')).map((l) => l.slice(4));
    const cjs = lines.filter((l) => l.startsWith('cjs ')).map((l) => l.slice(4));
    assert.ok(esm.some((u) => u.endsWith('/dist/daemon/daemon.js')), `the hook saw the daemon load: ${esm.length} modules`);
    const heavy = esm.filter((u) => /\/node_modules\/(rxjs|fast-xml-parser|@nodable|is-unsafe|path-expression-matcher|fast-xml-builder)\//.test(u));
    assert.equal(heavy, [], `resolved as ES modules: ${heavy.join(', ')}`);
    assert.ok(cjs.includes(path.join(ROOT, 'node_modules', 'fast-xml-parser', 'lib', 'fxp.cjs')), `fast-xml-parser's bundle not loaded: ${cjs.filter((f) => f.includes('xml')).join(', ')}`);
    assert.ok(cjs.some((f) => f.includes(path.join('node_modules', 'rxjs', 'dist', 'cjs', 'internal', 'Observable.js'))), 'RxJS is loaded (through require)');
  } finally {
    await d.kill('SIGTERM');
  }
});

test.run();
