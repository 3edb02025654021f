// The host's published directory (<lockspace>/.journal/ha) removed while the daemon runs (a cleanup
// script, a cluster filesystem's heal): the daemon says so and publishes its journal again. review26b
// F8: the publisher went on writing into the unlinked segment through its open descriptor, status said
// publishedSeq = lastSeq, nothing was logged, and nothing was published again until the next restart:
// had the host died first, its whole history was gone from the lockspace (the case issue 15 exists for).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, cli, startDaemon, tmpdir, until } from '../helpers/daemon.js';

test('published directory removed under a running daemon: said, and the history published again', async () => {
  const dir = tmpdir('vmlockd-r26b-pubrm-');
  fs.mkdirSync(path.join(dir, 'images'));
  const d1 = path.join(dir, 'images', 'd1.img');
  const d2 = path.join(dir, 'images', 'd2.img');
  fs.writeFileSync(d1, 'x');
  fs.writeFileSync(d2, 'x');
  const ls = path.join(dir, 'ls');
  const d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: ls, hostId: 'ha', env: { VMLOCKD_PUBLISH_INTERVAL_MS: '20' } });
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'alpha', d1]).code, 0);
  const hostDir = path.join(ls, '.journal', 'ha');
  await until('published', () => fs.existsSync(hostDir) && fs.readdirSync(hostDir).some((n) => n.endsWith('.seg')));
  fs.rmSync(hostDir, { recursive: true });
  const said = d.stdout.length + d.stderr.length;
  assert.is(d.cli(['acquire', '--vm', UUID2, '--name', 'beta', d2]).code, 0);
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  let answer = '';
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const r = cli(['audit', '--cluster', '--lockspace', ls, '--cache', path.join(dir, 'cache'), '--disk', d2, '--at', 'now'], { env: { HOME: home, VMLOCKD_CONFIG: '/nonexistent' } });
    answer = r.stdout + r.stderr;
    if (/beta/.test(answer)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const st = JSON.parse(d.cli(['status', '--json']).stdout) as { publication: { lastError?: { code?: string } } };
  try {
    await until('the log says it', () => /was removed while this daemon published/.test((d.stdout + d.stderr).slice(said)));
  } finally {
    await d.kill('SIGKILL');
  }
  assert.match(answer, /beta/, `20 s after the directory was removed, audit --cluster does not know beta's hold: ${answer}`);
  assert.is(st.publication.lastError?.code, 'VMLOCKD_ERR_PUBLISH_DISPLACED', JSON.stringify(st.publication));
  // Published again from the oldest fact: alpha's acquire (before the removal) is there too.
  const a = cli(['audit', '--cluster', '--lockspace', ls, '--cache', path.join(dir, 'cache'), '--disk', d1], { env: { HOME: home, VMLOCKD_CONFIG: '/nonexistent' } });
  assert.match(a.stdout, /alpha/, a.stdout + a.stderr);
});

test.run();
