// (found by review 15b) the read cache is keyed by the lockspace's pin id alone (cacheDirFor). A lockspace copied
// with its id file (a DR copy, a snapshot restored beside the live one) shares the cache of the
// original: auditing the copy after the original answers with facts only the original has, and a
// cached fact beyond the end of a segment is never dropped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, cli, startDaemon, tmpdir, until } from '../helpers/daemon.js';
import { status } from '../helpers/published.js';

test('audit --cluster of a copied lockspace lists facts only the original\'s history has', async () => {
  const root = tmpdir('vmlockd-cache-copied-');
  const ls = path.join(root, 'lockspace');
  const copy = path.join(root, 'lockspace-copy');
  const d1 = path.join(root, 'd1.img');
  const d2 = path.join(root, 'd2.img');
  fs.writeFileSync(d1, 'x');
  fs.writeFileSync(d2, 'x');
  const a = await startDaemon({ stateDir: path.join(root, 'state-a'), lockspace: ls, hostId: 'hv-a', env: { VMLOCKD_PUBLISH_INTERVAL_MS: '20' } });
  const caughtUp = () => until('published', async () => {
    const st = await status(a.socket);
    return st.publication?.publishedSeq === st.lastSeq;
  }, 30_000);
  try {
    assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', d1]).code, 0);
    await caughtUp();
    // The copy: the lockspace as it is now (its id file with it), segments included.
    fs.cpSync(ls, copy, { recursive: true });
    // A name with letters outside hex: 'db1' also matched inside a chain hash or journal id of the copy.
    assert.is(a.cli(['acquire', '--vm', UUID2, '--name', 'db-only-orig', d2]).code, 0);
    // Published before the kill (status's lastSeq counts facts moved into SQLite, which may lag the reply by ~20 ms).
    const segs = path.join(ls, '.journal', 'hv-a');
    await until('the original published db-only-orig', () => fs.readdirSync(segs).some((n) => fs.readFileSync(path.join(segs, n), 'utf8').includes('db-only-orig')), 30_000);
  } finally {
    await a.kill('SIGKILL');
  }
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const env = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  // The original's history names db1 (once its publisher wrote it: polled, the machine may be loaded).
  await until('the original lists db1', () => /db-only-orig/.test(cli(['audit', '--cluster', '--lockspace', ls, '--json', '--limit', '0'], { env }).stdout), 30_000);
  // The copy never saw db1's acquire: its segments end before it.
  const segText = fs.readdirSync(path.join(copy, '.journal', 'hv-a')).map((n) => fs.readFileSync(path.join(copy, '.journal', 'hv-a', n), 'utf8')).join('');
  assert.not.match(segText, /db-only-orig/, 'the copy\'s segments do not name db1');
  const r = cli(['audit', '--cluster', '--lockspace', copy, '--json', '--limit', '0'], { env });
  assert.not.match(r.stdout, /db-only-orig/, `audit of the copy lists db1's LockAcquired of d2, a fact found in no segment of the copy:\n${r.stdout}`);
});

test.run();
