// One version number (review14): the daemon reports package.json's "version", the one
// packaging/build-deb.sh names the .deb and its control Version: from; `vmlockd --version` prints it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, ROOT, tmpdir } from '../helpers/daemon.js';

const pkgVersion = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

test('vmlockd --version prints package.json\'s version', () => {
  const r = spawnSync(process.execPath, [MAIN, '--version'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, `vmlockd ${pkgVersion}\n`);
});

test('a bumped package.json is the version the built daemon reports (as laid out in the package: dist/ beside package.json)', () => {
  const lib = tmpdir('vmlockd-version-');
  fs.mkdirSync(path.join(lib, 'dist'));
  fs.copyFileSync(path.join(ROOT, 'dist', 'version.js'), path.join(lib, 'dist', 'version.js'));
  fs.writeFileSync(path.join(lib, 'package.json'), JSON.stringify({ name: 'vmlockd', version: '9.9.9', type: 'module' }));
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { VERSION } from '${path.join(lib, 'dist', 'version.js')}'; process.stdout.write(VERSION)`], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, '9.9.9');
});

test.run();
