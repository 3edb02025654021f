// review28c F2: builds of a new chain left by a SIGKILLed catch-up (`<journal>.db.build-<host>-<pid>`,
// as large as the chain) are removed by the next catch-up only when their pid is gone (902627b). A pid
// reused by another live process (any process: a long-lived one keeps it for months) kept the stray
// build, and once the chain is built and its journal sealed (`nothingNew`: removeDeadBuilds is never
// called again) it stays for good, counted against the cache's free-space floor. A live build holds its
// file's SQLite lock (locking_mode=EXCLUSIVE) while it writes: an unlocked build file that has not been
// written for a while is nobody's, whatever its pid.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterCache } from '../../src/cli/cluster-cache.js';
import { J, publish } from '../helpers/sample-chain.js';
import { tmpdir, until } from '../helpers/daemon.js';

function strayName(chainDir: string, pid: number): string {
  return path.join(chainDir, `${J}.db.build-${os.hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-${pid}`);
}

/** A build file as a SIGKILLed catch-up leaves it: a SQLite file without a journal, part written. */
function leaveBuild(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = OFF');
  db.exec('CREATE TABLE facts (seq INTEGER PRIMARY KEY, payload TEXT)');
  db.prepare('INSERT INTO facts (payload) VALUES (?)').run('x'.repeat(100_000));
  db.close();
  const old = new Date(Date.now() - 3 * 3600_000);
  fs.utimesSync(file, old, old);
}

function sleeper(): ChildProcess {
  return spawn('sleep', ['300'], { stdio: 'ignore' });
}

test('a stray build whose pid now belongs to another live process is removed by the next catch-up', async () => {
  const root = tmpdir('cc-stray-');
  const other = sleeper();
  try {
    const ls = path.join(root, 'ls');
    publish(ls, 1_000);
    const cache = ClusterCache.open(path.join(root, 'cache'), ls);
    const chainDir = path.join(cache.dir, 'hv-1');
    fs.mkdirSync(chainDir, { recursive: true });
    const stray = strayName(chainDir, other.pid!);
    leaveBuild(stray);
    const r = cache.catchUp();
    assert.equal(r.problems, []);
    assert.is(r.newFacts, 1_000);
    assert.not.ok(fs.existsSync(stray), `the stray build of a SIGKILLed catch-up (pid ${other.pid} reused by a live 'sleep') is still there`);
  } finally {
    other.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a build another live process holds locked is left alone, however old its mtime', async () => {
  const root = tmpdir('cc-stray-');
  let holder: ChildProcess | undefined;
  try {
    const ls = path.join(root, 'ls');
    publish(ls, 1_000);
    const cache = ClusterCache.open(path.join(root, 'cache'), ls);
    const chainDir = path.join(cache.dir, 'hv-1');
    fs.mkdirSync(chainDir, { recursive: true });
    // A live builder: its pid in the name, its file locked exclusively (as buildChain's), not written lately.
    const script =
      `const D=require(${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))});const f=process.argv[1]+'-'+process.pid;` +
      `const db=new D(f);db.pragma('journal_mode = OFF');db.pragma('locking_mode = EXCLUSIVE');db.exec('CREATE TABLE t (x)');` +
      `const o=new Date(Date.now()-3*3600000);require('fs').utimesSync(f,o,o);process.stdout.write(f+'\\n');setInterval(()=>{},1000);`;
    holder = spawn(process.execPath, ['-e', script, strayName(chainDir, 0).replace(/-0$/, '')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    holder.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    await until('the builder holds its file', () => out.includes('\n'), 10_000);
    const live = out.trim();
    const r = cache.catchUp();
    assert.equal(r.problems, []);
    assert.ok(fs.existsSync(live), 'a live, locked build was removed');
  } finally {
    holder?.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a locked build whose pid looks gone from here (a catch-up in another pid namespace) is left alone', async () => {
  const root = tmpdir('cc-stray-');
  let holder: ChildProcess | undefined;
  try {
    const ls = path.join(root, 'ls');
    publish(ls, 1_000);
    const cache = ClusterCache.open(path.join(root, 'cache'), ls);
    const chainDir = path.join(cache.dir, 'hv-1');
    fs.mkdirSync(chainDir, { recursive: true });
    // A pid no process of this namespace has (one that just exited).
    const gone = spawn('true');
    await new Promise((r) => gone.on('exit', r));
    const live = strayName(chainDir, gone.pid!);
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    const script =
      `const D=require(${JSON.stringify(sqlite)});const db=new D(process.argv[1]);db.pragma('journal_mode = OFF');` +
      `db.pragma('locking_mode = EXCLUSIVE');db.exec('CREATE TABLE t (x)');process.stdout.write('held\\n');setInterval(()=>{},1000);`;
    holder = spawn(process.execPath, ['-e', script, live], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    holder.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    await until('the builder holds its file', () => out.includes('held'), 10_000);
    const r = cache.catchUp();
    assert.equal(r.problems, []);
    assert.ok(fs.existsSync(live), 'a live, locked build was removed because its pid is not seen from here');
  } finally {
    holder?.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test.run();
