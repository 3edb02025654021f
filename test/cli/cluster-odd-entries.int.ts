// one odd entry in one host's directory, named like a segment, takes down or hangs every
// cluster question: a directory -> `vmlockd: EISDIR: illegal operation on a directory, read` (exit 1,
// no path named, no host answered); a FIFO -> audit --cluster and journal verify --cluster block in
// open(2) forever. A host's own daemon: a FIFO as its newest segment blocks its publisher thread,
// and then a SIGTERM'ed daemon cannot exit (node joins the worker thread at exit).
import { spawnSync, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, tmpdir } from '../helpers/daemon.js';

const test = suite('cluster: odd entries in a host directory');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function ask(ls: string, home: string, args: string[]) {
  fs.mkdirSync(home, { recursive: true });
  return spawnSync(process.execPath, [MAIN, ...args, '--lockspace', ls], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
}

test('a directory named like a segment: the other hosts still answer, the bad entry is named', () => {
  const root = tmpdir('vmlockd-r15-odd-');
  const ls = path.join(root, 'ls');
  fs.mkdirSync(path.join(ls, '.journal', 'hx', '0123456789abcdef-0000000000000001.seg'), { recursive: true });
  const r = ask(ls, path.join(root, 'home'), ['audit', '--cluster', '--overlaps']);
  console.log('dir:', r.status, r.stdout.trim(), r.stderr.trim());
  assert.match(r.stderr + r.stdout, /0123456789abcdef-0000000000000001\.seg/, 'the error names the entry');
});

test('a FIFO named like a segment: audit --cluster and verify --cluster return', () => {
  const root = tmpdir('vmlockd-r15-fifo-');
  const ls = path.join(root, 'ls');
  fs.mkdirSync(path.join(ls, '.journal', 'hx'), { recursive: true });
  execFileSync('mkfifo', [path.join(ls, '.journal', 'hx', '0123456789abcdef-0000000000000001.seg')]);
  const a = ask(ls, path.join(root, 'home'), ['audit', '--cluster', '--overlaps']);
  const v = ask(ls, path.join(root, 'home'), ['journal', 'verify', '--cluster']);
  console.log('fifo: audit', a.status, a.signal, 'verify', v.status, v.signal);
  assert.is(a.signal, null, 'audit --cluster was still blocked after 20 s');
  assert.is(v.signal, null, 'journal verify --cluster was still blocked after 20 s');
});

test.run();
