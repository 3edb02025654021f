// A real daemon publishing with rotation; the newest segments (a sealed one and its successor) removed
// (review 23b item 2). `journal verify --cluster` names it from the <journal>.successor statement
// (aa55271); `audit --cluster` with a fresh cache must say so too, on every question. Removing the
// statement as well is still named by a reader whose cache read it before (audit --cluster and
// verify --cluster with that cache); a reader that never saw it cannot tell (decision 0016).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli } from '../helpers/daemon.js';
import { publishedRotating } from '../helpers/published.js';

const published = () => publishedRotating('vmlockd-r23b-newest-');

const env = { VMLOCKD_CONFIG: '/nonexistent' };

test('two newest segments removed: audit --cluster names the missing segment; once .successor is removed too, the cache that read it still does', async () => {
  const s = await published();
  const segs = s.segs();
  assert.ok(segs.length >= 3, `rotated twice: ${segs}`);
  for (const n of segs.slice(-2)) fs.rmSync(path.join(s.dir, n));
  const missing = segs[segs.length - 2]!;
  const cache = path.join(s.root, 'cache');
  const audit = () => cli(['audit', '--cluster', '--lockspace', s.lockspace, '--cache', cache, '--json', '--limit', '0'], { env: { ...env, VMLOCKD_SOCKET: path.join(s.root, 'none.sock') } });
  const want = new RegExp(`missing newest segment: .*${missing.replace('.', '\\.')}`);
  // review23c: sealed just now, the successor may be on its way (a live rotation): not called removed.
  const sealed = path.join(s.dir, segs[segs.length - 3]!);
  const fresh = audit();
  assert.is(fresh.code, 0, fresh.stderr);
  assert.not.match(fresh.stderr, /missing newest segment/, 'a seal of seconds ago is a rotation in progress');
  // Sealed long ago (older than the grace): its successor was removed.
  const old = new Date(Date.now() - 10 * 60_000);
  fs.utimesSync(sealed, old, old);
  const a = audit();
  assert.is(a.code, 0, a.stderr);
  assert.match(a.stderr, want, 'the fresh-cache audit names the removed newest segment');
  // The next question goes the hint's fast path: still said.
  assert.match(audit().stderr, want);
  const v1 = cli(['journal', 'verify', '--cluster', '--lockspace', s.lockspace, '--journal', '/nonexistent/journal.db'], { env });
  assert.is(v1.code, 1, v1.stdout);
  fs.rmSync(path.join(s.dir, `${segs[0]!.slice(0, 16)}.successor`));
  const a2 = audit();
  assert.match(a2.stderr, want, 'the cache remembers the statement it read');
  assert.match(a2.stderr, /read before by this cache .* is gone too/);
  const v2 = cli(['journal', 'verify', '--cluster', '--lockspace', s.lockspace, '--cache', cache, '--journal', '/nonexistent/journal.db'], { env });
  assert.is(v2.code, 1, `verify --cluster with the cache that read the statement: ${v2.stdout}`);
  assert.match(v2.stdout, want);
});

test.run();
