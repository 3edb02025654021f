// A config reached through an atomically swapped ..data symlink (review25a F10, LOW): the Kubernetes
// ConfigMap / many deploy tools' layout (vmlockd.conf -> ..data/vmlockd.conf, ..data -> ..v1,
// swapped by rename). What the path reads changes without any event on the path itself, and the
// watcher ignored every other path: the daemon kept the old value, silently. The watcher now also
// stat()s each path every second (src/watchers/config-watcher.ts pollMs).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, tmpdir, until } from '../helpers/daemon.js';

let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
});

test('a config reached through a swapped ..data symlink is reloaded', async () => {
  const dir = tmpdir();
  const etc = path.join(dir, 'etc');
  fs.mkdirSync(path.join(etc, '..v1'), { recursive: true });
  fs.mkdirSync(path.join(etc, '..v2'));
  const ls = path.join(dir, 'ls');
  fs.writeFileSync(path.join(etc, '..v1', 'vmlockd.conf'), `file_lockspace_dir = "${ls}"\nlog_level = 3\n`);
  fs.writeFileSync(path.join(etc, '..v2', 'vmlockd.conf'), `file_lockspace_dir = "${ls}"\nlog_level = 1\n`);
  fs.symlinkSync('..v1', path.join(etc, '..data'));
  fs.symlinkSync('..data/vmlockd.conf', path.join(etc, 'vmlockd.conf'));
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), hostId: 'hv-a', extra: ['--config', path.join(etc, 'vmlockd.conf')] }).start();
  const level = () => (JSON.parse(d!.cli(['status', '--json']).stdout) as { logLevel: string }).logLevel;
  assert.is(level(), 'warning');
  fs.symlinkSync('..v2', path.join(etc, '..data_tmp'));
  fs.renameSync(path.join(etc, '..data_tmp'), path.join(etc, '..data')); // the atomic swap
  assert.is(fs.readFileSync(path.join(etc, 'vmlockd.conf'), 'utf8').includes('log_level = 1'), true);
  let seen = 'warning';
  try {
    await until('log_level 1 in force', () => (seen = level()) === 'debug', 20_000);
  } catch {
    /* reported below */
  }
  assert.is(seen, 'debug', `20 s after the swap the daemon still runs log_level ${seen}; the file says debug`);
});

test.run();
