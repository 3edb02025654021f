// A config file replaced by a FIFO, a symlink to /dev/zero or a huge file (review25a F4, MEDIUM).
// The watcher re-read every config file with an unbounded, blocking readFileSync on the event loop:
// a FIFO blocked the whole daemon until someone wrote into it (here: never), SIGTERM included (its
// handler runs on that loop); /dev/zero or a multi-GiB file was read whole. Config files are now
// opened non-blocking and anything but a regular file of at most 1 MiB is refused (ConfigRejected
// naming the file), with no lock changed (src/watchers/config.ts readConfFile).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, tmpdir, until } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

/** ms until GET /v1/status is answered, Infinity after timeoutMs. */
function statusMs(socket: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = net.connect(socket);
    const timer = setTimeout(() => {
      c.destroy();
      resolve(Infinity);
    }, timeoutMs);
    c.on('connect', () => c.write('GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    c.on('data', () => {});
    c.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
    c.on('error', () => {});
  });
}

function rejected(d: TestDaemon): Array<{ file?: string; error?: string }> {
  settled(d.opts.stateDir);
  const db = new Database(path.join(d.opts.stateDir, 'journal.db'), { readonly: true });
  try {
    return (db.prepare("SELECT payload FROM facts WHERE kind = 'ConfigRejected' ORDER BY seq").all() as Array<{ payload: string }>).map((r) => JSON.parse(r.payload));
  } finally {
    db.close();
  }
}

let d: TestDaemon | undefined;
let conf = '';
test.after.each(async () => {
  // Unblock a daemon stuck reading the FIFO (before the fix) so the test cleans up whatever the outcome.
  try {
    fs.closeSync(fs.openSync(conf, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
  } catch {
    /* no FIFO or no reader */
  }
  await d?.kill('SIGKILL');
});

async function start(): Promise<{ dir: string; disk: string; d: TestDaemon }> {
  const dir = tmpdir();
  conf = path.join(dir, 'vmlockd.conf');
  fs.writeFileSync(conf, `file_lockspace_dir = "${path.join(dir, 'ls')}"\n`);
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), hostId: 'hv-a', extra: ['--config', conf] }).start();
  const disk = path.join(dir, 'disk.img');
  fs.writeFileSync(disk, '');
  assert.is(d.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  return { dir, disk, d };
}

test('a config file replaced by a FIFO is refused, naming the file; the daemon answers, keeps its lock and acts on SIGTERM', async () => {
  const { dir } = await start();
  const fifo = path.join(dir, 'vmlockd.conf.new');
  execFileSync('mkfifo', [fifo]);
  fs.renameSync(fifo, conf); // an atomic "save" that left a FIFO behind
  // The daemon must answer all along, until the FIFO is refused (at most 20 s).
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
    const ms = await statusMs(d!.socket, 3000);
    assert.ok(ms < 3000, 'GET /v1/status got no answer in 3 s after the config file became a FIFO');
    if (rejected(d!).some((r) => r.error?.includes('a FIFO, not a regular file'))) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const r = rejected(d!).find((x) => x.error?.includes('a FIFO, not a regular file'));
  assert.ok(r, JSON.stringify(rejected(d!)) + d!.stderr.slice(-2000));
  assert.is(r!.file, conf);
  assert.is((JSON.parse(d!.cli(['locks', '--json']).stdout) as unknown[]).length, 1);
  const exit = await Promise.race([d!.kill('SIGTERM'), new Promise<null>((res) => setTimeout(() => res(null), 15_000))]);
  assert.ok(exit !== null, 'SIGTERM was not acted on within 15 s');
});

test('a config symlinked to /dev/zero, or larger than 1 MiB, is refused without being read whole', async () => {
  const { dir } = await start();
  const link = path.join(dir, 'zero.conf');
  fs.symlinkSync('/dev/zero', link);
  fs.renameSync(link, conf);
  await until('/dev/zero refused', () => rejected(d!).some((r) => r.error?.includes('a character device, not a regular file')), 20_000);
  assert.ok((await statusMs(d!.socket, 3000)) < 3000);
  const big = path.join(dir, 'big.conf');
  fs.writeFileSync(big, `file_lockspace_dir = "${path.join(dir, 'ls')}"\n`);
  fs.truncateSync(big, 4 * 1024 * 1024 * 1024); // sparse 4 GiB
  fs.renameSync(big, conf);
  await until('the 4 GiB file refused', () => rejected(d!).some((r) => r.error?.includes('larger than the 1048576 bytes')), 20_000);
  assert.ok((await statusMs(d!.socket, 3000)) < 3000);
  assert.is((JSON.parse(d!.cli(['locks', '--json']).stdout) as unknown[]).length, 1);
});

test.run();
