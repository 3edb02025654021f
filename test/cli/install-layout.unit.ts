// Which defaults apply when (src/install-layout.ts, docs/configuration.md "Defaults"): a checkout
// keeps ./var; the installed package's marker gives the system paths and its config file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LAYOUT_MARKER, installLayout, parseLayout, type InstallLayout } from '../../src/install-layout.js';
import { CONFIG_KEYS, buildConfig, confName, defaultFiles, formatDefaults, loadConfig } from '../../src/watchers/config.js';

const SYSTEM: InstallLayout = { marker: '/usr/lib/vmlockd/install-layout.json', configFile: '/etc/vmlockd/vmlockd.conf', stateDir: '/var/lib/vmlockd', runtimeDir: '/run/vmlockd' };

test('a checkout has no install-layout marker: npm start and npm test keep ./var', () => {
  assert.not.ok(fs.existsSync(LAYOUT_MARKER), `${LAYOUT_MARKER} must not exist in a checkout`);
  assert.is(installLayout(), null);
  const c = loadConfig({ files: [], flags: {}, cwd: '/srv/x' }).config;
  assert.is(c.stateDir, '/srv/x/var');
  assert.is(c.socket, '/srv/x/var/vmlockd.sock');
});

test('installed: state in /var/lib/vmlockd, the socket in /run/vmlockd, whatever the working directory', () => {
  const { config, sources } = buildConfig([], {}, '/home/someone', SYSTEM);
  assert.is(config.stateDir, '/var/lib/vmlockd');
  assert.is(config.socket, '/run/vmlockd/vmlockd.sock');
  assert.is(config.journal, '/var/lib/vmlockd/journal.db');
  assert.is(config.fileLockspaceDir, '/var/lib/vmlockd/lockspace');
  assert.is(sources.socket, 'default');
});

test('installed with another state_dir: the socket follows it (a second daemon does not collide on /run/vmlockd)', () => {
  const { config } = buildConfig([], { stateDir: '/tmp/other' }, '/', SYSTEM);
  assert.is(config.socket, '/tmp/other/vmlockd.sock');
  const files = buildConfig([{ file: '/etc/vmlockd/vmlockd.conf', text: 'state_dir = "/srv/state"\n' }], {}, '/', SYSTEM);
  assert.is(files.config.socket, '/srv/state/vmlockd.sock');
  assert.is(files.sources.stateDir, '/etc/vmlockd/vmlockd.conf:1');
});

test('installed: the package config file is read when no --config is given and it exists; --config replaces it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-layout-'));
  try {
    const conf = path.join(dir, 'vmlockd.conf');
    const layout = { ...SYSTEM, configFile: conf };
    assert.equal(defaultFiles([], layout), [], 'a deleted conffile is no error');
    fs.writeFileSync(conf, 'host_id = "from-etc"\n');
    assert.equal(defaultFiles([], layout), [conf]);
    assert.equal(defaultFiles(['/x.conf'], layout), ['/x.conf']);
    assert.equal(defaultFiles([], null), []);
    const loaded = loadConfig({ files: [], flags: {}, layout });
    assert.is(loaded.config.hostId, 'from-etc');
    assert.is(loaded.sources.hostId, `${conf}:1`);
    assert.equal(loaded.files, [conf]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a broken marker is an error naming it, not a silent fall back to ./var', () => {
  assert.throws(() => parseLayout('{', '/m.json'), /\/m\.json: not JSON/);
  assert.throws(() => parseLayout('{"configFile":"/etc/x","stateDir":"var","runtimeDir":"/run/x"}', '/m.json'), /"stateDir" must be an absolute path/);
  assert.equal(parseLayout(JSON.stringify(SYSTEM), '/m.json').stateDir, '/var/lib/vmlockd');
});

test('config show --defaults (the packaged vmlockd.conf): every key commented with its default, valid once uncommented', () => {
  const text = formatDefaults(SYSTEM, '/');
  for (const key of CONFIG_KEYS) assert.match(text, new RegExp(`^#${confName(key)} = `, 'm'), confName(key));
  assert.not.match(text, /^[a-z]/m, 'no key is set');
  assert.match(text, /^#state_dir = "\/var\/lib\/vmlockd"  # default$/m);
  assert.match(text, /^#socket = "\/run\/vmlockd\/vmlockd.sock"  # default$/m);
  assert.not.match(text, new RegExp(`"${os.hostname()}"`), 'the build host name is not written in');
  // Uncommented (but host_id, whose default is the host name), the lines load to the same defaults.
  const body = text.split('\n').filter((l) => l.startsWith('#') && !l.startsWith('#host_id') && / = /.test(l)).map((l) => l.slice(1)).join('\n');
  const loaded = buildConfig([{ file: 'uncommented', text: body }], { hostId: 'h' }, '/', SYSTEM);
  assert.equal(loaded.config, buildConfig([], { hostId: 'h' }, '/', SYSTEM).config);
});

test.run();
