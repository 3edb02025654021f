// The control API checks the caller's SO_PEERCRED, not only the socket file's mode: with the socket
// made 0666, uid nobody is refused (403, VMLOCKD_ERR_DENIED) and takes no lock; root is served.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, UUID1, tmpdir } from '../helpers/daemon.js';

test('a foreign uid is refused even when the socket file lets it connect', async () => {
  const dir = tmpdir();
  fs.chmodSync(dir, 0o755);
  const img = path.join(dir, 'a.img');
  fs.writeFileSync(img, 'x');
  const d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), socket: path.join(dir, 'api.sock') });
  await d.start();
  try {
    fs.chmodSync(d.socket, 0o666);
    const asNobody = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, MAIN, 'acquire', '--json', '--vm', UUID1, img, '--socket', d.socket], { encoding: 'utf8', timeout: 30_000 });
    assert.is(asNobody.status, 1, asNobody.stdout + asNobody.stderr);
    const out = JSON.parse(asNobody.stdout);
    assert.is(out.code, 'VMLOCKD_ERR_DENIED');
    assert.match(out.message, /permission denied: uid 65534/);
    assert.equal(JSON.parse(d.cli(['locks', '--json']).stdout), []);
    // The daemon's own uid (root here) is served.
    assert.is(d.cli(['acquire', '--vm', UUID1, img]).code, 0);
  } finally {
    await d.kill('SIGKILL');
  }
});

test.run();
