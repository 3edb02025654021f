// A client command starts in node's time plus a little (issue 13; bench/cli-start.ts measures it):
// it loads neither the daemon nor rxjs, SQLite, the XML parser, the config parser or node:crypto
// unless it needs them. Every module each command loads is recorded by a module hook (ES modules)
// and require.cache (CommonJS: better-sqlite3, the native bindings), against a real daemon.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, ROOT, UUID1, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';

const dir = tmpdir('vmlockd-imports-');
const disk = path.join(dir, 'a.img');
fs.writeFileSync(disk, 'image');
const log = path.join(dir, 'loaded.log');
fs.writeFileSync(path.join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.LOADED_LOG, r.url + '\\n');
  return r;
}
`);
fs.writeFileSync(path.join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify('file://' + path.join(dir, 'hooks.mjs'))});\n`);
fs.writeFileSync(path.join(dir, 'cjs.cjs'), `process.on('exit', () => require('node:fs').appendFileSync(process.env.LOADED_LOG, Object.keys(require.cache).map((f) => 'file://' + f + '\\n').join('')));\n`);

/** The modules of this project (dist/..., node_modules/...) and the node: builtins one command loaded. */
function loaded(args: string[]): { own: string[]; builtins: string[]; code: number; stderr: string } {
  fs.writeFileSync(log, '');
  const r = spawnSync(process.execPath, ['--require', path.join(dir, 'cjs.cjs'), '--import', path.join(dir, 'register.mjs'), MAIN, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    input: '',
    env: { ...process.env, LOADED_LOG: log },
  });
  const urls = [...new Set(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean))];
  const root = 'file://' + ROOT + '/';
  return {
    own: urls.filter((u) => u.startsWith(root) && !u.startsWith('file://' + dir)).map((u) => u.slice(root.length)).sort(),
    builtins: urls.filter((u) => u.startsWith('node:')).sort(),
    code: r.status ?? -1,
    stderr: r.stderr,
  };
}

// What a client command that talks to the daemon may load: the command line, its errors, the usage
// table (a string), the HTTP client, and the text formats (status, locks) or the uuid check (check,
// acquire, release). Nothing else of this project, nothing of node_modules.
const BASE = ['dist/cli/usage.js', 'dist/engine/errors.js', 'dist/main.js'];
const CLIENT = [...BASE, 'dist/cli/client.js', 'dist/cli/unix-http.js'];
const SHOWS = [...CLIENT, 'dist/cli/format.js'].sort();
const TAKES = [...CLIENT, 'dist/events/uuid.js'].sort();
const HEAVY = /node_modules|dist\/(daemon|journal|watchers|engine\/(?!errors))|dist\/cli\/(daemon|api-server|audit|cluster-view|metrics)/;

let d: TestDaemon;
test.before(async () => {
  d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'imports' });
});
test.after(async () => {
  await d.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('status, locks, acquire, check and release load only the client: no config parser, no node:crypto, no node:http', () => {
  const s = ['--socket', d.socket];
  for (const [args, expected] of [[['status', ...s], SHOWS], [['locks', ...s], SHOWS], [['check', '--vm', UUID1, disk, ...s], TAKES], [['acquire', '--vm', UUID1, disk, ...s], TAKES], [['release', '--vm', UUID1, disk, ...s], TAKES]] as const) {
    const r = loaded([...args]);
    assert.is(r.code, 0, `${args[0]}: ${r.stderr}`);
    assert.equal(r.own, expected, `${args[0]} loaded ${r.own.join(', ')}`);
    assert.not.ok(r.builtins.includes('node:crypto'), `${args[0]} loaded node:crypto`);
    // One request over node:net (src/cli/unix-http.ts): node:http's client is ~14 ms of CPU more.
    assert.not.ok(r.builtins.includes('node:http'), `${args[0]} loaded node:http`);
  }
});

test('$VMLOCKD_SOCKET names the socket just as well: still only the client', () => {
  const r = spawnSync(process.execPath, [MAIN, 'status'], { encoding: 'utf8', env: { ...process.env, VMLOCKD_SOCKET: d.socket } });
  assert.is(r.status, 0, r.stderr);
  fs.writeFileSync(log, '');
  const l = spawnSync(process.execPath, ['--require', path.join(dir, 'cjs.cjs'), '--import', path.join(dir, 'register.mjs'), MAIN, 'locks'], {
    encoding: 'utf8',
    env: { ...process.env, LOADED_LOG: log, VMLOCKD_SOCKET: d.socket },
  });
  assert.is(l.status, 0, l.stderr);
  const own = [...new Set(fs.readFileSync(log, 'utf8').split('\n').filter((u) => u.startsWith('file://' + ROOT + '/dist/')))];
  assert.equal(own.map((u) => u.slice(('file://' + ROOT + '/').length)).sort(), SHOWS);
});

test('--help, a command\'s --help and who on a named lockspace load no client: no node:net, no uuid check, no formats', () => {
  for (const args of [['--help'], ['status', '--help'], ['acquire', '--help'], ['who', disk, '--lockspace', path.join(dir, 'lockspace')]]) {
    const r = loaded(args);
    assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    if (args[0] !== 'who') assert.equal(r.own, BASE, `${args.join(' ')} loaded ${r.own.join(', ')}`);
    assert.not.ok(r.own.some((m) => /dist\/cli\/(client|unix-http|format)\.js|dist\/events\/uuid\.js/.test(m)), `${args.join(' ')} loaded ${r.own.join(', ')}`);
    assert.not.ok(r.builtins.includes('node:net'), `${args.join(' ')} loaded node:net`);
  }
});

test('the hook loads its own request (unix-http), not the command line\'s client or formats', () => {
  const r = loaded(['hook', 'qemu', 'vm1', 'start', 'begin', '-', '--socket', d.socket]);
  assert.is(r.code, 0, r.stderr);
  assert.not.ok(r.own.some((m) => /dist\/cli\/(client|format)\.js/.test(m)), r.own.join(', '));
});

test('without --socket the config decides, and only then is the config parser loaded', () => {
  const conf = path.join(dir, 'client.conf');
  fs.writeFileSync(conf, `socket = ${JSON.stringify(d.socket)}\n`);
  const r = loaded(['status', '--config', conf]);
  assert.is(r.code, 0, r.stderr);
  assert.ok(r.own.includes('dist/watchers/config.js'), r.own.join(', '));
  assert.not.ok(r.own.some((m) => /node_modules|dist\/(daemon|journal|cli\/daemon)/.test(m)), r.own.join(', '));
});

test('who reads the lockspace without the journal: no SQLite, no daemon, no rxjs', () => {
  const r = loaded(['who', disk, '--lockspace', path.join(dir, 'lockspace')]);
  assert.is(r.code, 0, r.stderr);
  assert.ok(r.own.includes('dist/cli/cluster-view.js'), r.own.join(', '));
  assert.not.ok(r.own.some((m) => /node_modules|dist\/(daemon|cli\/daemon|watchers)|dist\/journal\/(?!network-fs)/.test(m)), r.own.join(', '));
});

test('the hook through the command line and --help load nothing heavy', () => {
  for (const args of [['hook', 'qemu', 'vm1', 'start', 'begin', '-', '--socket', d.socket], ['--help'], ['status', '--help']]) {
    const r = loaded(args);
    assert.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.not.ok(r.own.some((m) => HEAVY.test(m)), `${args.join(' ')} loaded ${r.own.join(', ')}`);
    assert.not.ok(r.builtins.includes('node:crypto'), `${args.join(' ')} loaded node:crypto`);
    assert.not.ok(r.builtins.includes('node:http'), `${args.join(' ')} loaded node:http`);
  }
});

test('the hook that calls the daemon (release end, the domain XML on stdin) asks over node:net, not node:http', () => {
  const xml = `<domain type='kvm'><name>vm1</name><uuid>${UUID1}</uuid><devices><disk type='file' device='disk'><source file='${disk}'/><target dev='vda'/></disk></devices></domain>\n`;
  fs.writeFileSync(log, '');
  const r = spawnSync(process.execPath, ['--require', path.join(dir, 'cjs.cjs'), '--import', path.join(dir, 'register.mjs'), MAIN, 'hook', 'qemu', 'vm1', 'release', 'end', '-', '--socket', d.socket], {
    encoding: 'utf8',
    timeout: 30_000,
    input: xml,
    env: { ...process.env, LOADED_LOG: log },
  });
  assert.is(r.status, 0, r.stderr);
  const urls = [...new Set(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean))];
  assert.ok(urls.includes('file://' + ROOT + '/dist/cli/unix-http.js'), urls.join(', '));
  assert.not.ok(urls.includes('node:http'), `the hook loaded node:http: ${urls.join(', ')}`);
});

test.run();
