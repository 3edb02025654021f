// The command line as a user meets it: --help everywhere (and nothing started), usage errors for
// extra positionals and repeated flags, --json errors with the stable code, one line and no stack.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, UUID1, UUID2, tmpdir } from '../helpers/daemon.js';

function run(args: string[], cwd = tmpdir()) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd, encoding: 'utf8', timeout: 20_000, env: { ...process.env, VMLOCKD_SOCKET: '' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

const noStack = (s: string) => assert.not.match(s, /\n\s+at /, s);

test('every command answers --help / -h with its own usage, exit 0, starting nothing', () => {
  const cwd = tmpdir();
  for (const cmd of ['serve', 'acquire', 'release', 'check', 'locks', 'who', 'generation', 'cluster', 'ingest', 'status', 'config', 'integrity', 'hook', 'audit', 'journal', 'lockspace']) {
    for (const flag of ['--help', '-h']) {
      const r = run([cmd, flag], cwd);
      assert.is(r.code, 0, `${cmd} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`usage: vmlockd ${cmd}`), `${cmd} ${flag}: ${r.stdout}`);
    }
  }
  assert.not.ok(fs.existsSync(path.join(cwd, 'var')), '--help created ./var');
});

test('extra positionals and repeated single-valued flags are usage errors (exit 2)', () => {
  for (const args of [['status', 'extra'], ['locks', 'x'], ['serve', 'x'], ['cluster', 'x'], ['acquire', '--vm', UUID1, '--vm', UUID2, '/x'], ['status', '--socket', '/a', '--socket', '/b']]) {
    const r = run(args);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /usage: vmlockd/);
  }
});

test('--json errors carry the stable code: usage, unreachable daemon, bad input', () => {
  const cases: Array<[string[], string, number]> = [
    [['acquire', '--json', '--bogus'], 'VMLOCKD_ERR_USAGE', 2],
    [['status', '--json', '--socket', '/nonexistent/vmlockd.sock'], 'VMLOCKD_ERR_UNREACHABLE', 1],
    [['acquire', '--json', '--vm', 'not-a-uuid', '/x'], 'VMLOCKD_ERR_BAD_INPUT', 2],
  ];
  for (const [args, code, exit] of cases) {
    const r = run(args);
    assert.is(r.code, exit, args.join(' '));
    assert.is(JSON.parse(r.stdout).code, code, args.join(' '));
  }
});

test('ordinary errors print one line without a stack, and exit', () => {
  const dir = tmpdir();
  const cases: Array<[string[], number]> = [
    [['ingest', path.join(dir, 'missing.jsonl')], 2],
    [['serve', '--state-dir', '/etc/passwd', '--socket', path.join(dir, 's.sock')], 2],
    [['audit', '--journal', '/etc/passwd'], 1],
  ];
  for (const [args, exit] of cases) {
    const r = run(args);
    assert.is(r.signal, null, `${args.join(' ')} did not exit`);
    assert.is(r.code, exit, `${args.join(' ')}: ${r.stderr}`);
    assert.is(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
    noStack(r.stderr);
  }
});

test.run();
