// The successor statement (<journal>.successor, decision 0016) says every seal from seq S on is
// followed by its successor's creation. A daemon upgraded onto a history whose newest segment an older
// writer sealed (and left without its successor) wrote the statement with S = that seal's seq BEFORE
// creating the successor: while the creation failed (or after a crash between the two), readers called
// the missing successor a removal, though nothing was removed. The statement is true only once the
// successor is there: it is written after it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, cli } from '../helpers/daemon.js';
import { publishedAll, publishedRotating, readPublished, status, waitFor } from '../helpers/published.js';

test('resumed onto an older writer\'s sealed newest segment: no successor statement until the successor exists', async () => {
  const s = await publishedRotating('vmlockd-c24-succ-order-');
  const before = readPublished(s.dir, 'hv-a');
  const sealed = before.segments.filter((g) => g.sealed);
  assert.ok(sealed.length >= 1, JSON.stringify(before.segments));
  const last = sealed[sealed.length - 1]!;
  const journal = last.name.slice(0, 16);
  // As an older writer left it: no statement, the newest segment sealed and no successor after it.
  fs.rmSync(path.join(s.dir, `${journal}.successor`));
  for (const n of s.segs().filter((n) => n > last.name)) fs.rmSync(path.join(s.dir, n));
  const lastSeq = Number(last.name.slice(17, 33)) + last.count - 1;
  const successor = `${journal}-${String(lastSeq + 1).padStart(16, '0')}.seg`;
  // Sealed long ago: a missing successor is not a rotation in progress for a reader.
  const old = new Date(Date.now() - 10 * 60_000);
  fs.utimesSync(path.join(s.dir, last.name), old, old);
  // The successor cannot be created (its temporary name is taken by a directory).
  const blocker = path.join(s.dir, `.${successor}.tmp`);
  fs.mkdirSync(blocker);
  const a = await startDaemon({ stateDir: path.join(s.root, 'state-a'), lockspace: s.lockspace, hostId: 'hv-a', extra: ['--publish-segment-bytes', '4096'] });
  try {
    await waitFor('publication to fail on the successor', async () => (await status(a.socket)).publication?.failing === true);
    assert.not.ok(fs.existsSync(path.join(s.dir, successor)));
    assert.not.ok(fs.existsSync(path.join(s.dir, `${journal}.successor`)), 'no statement while the sealed segment has no successor');
    const e = { VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(s.root, 'none.sock') };
    const q = cli(['audit', '--cluster', '--lockspace', s.lockspace, '--cache', path.join(s.root, 'cache'), '--json', '--limit', '0'], { env: e });
    assert.is(q.code, 0, q.stderr);
    assert.not.match(q.stderr, /missing newest segment/, 'nothing was removed: the writer has yet to create it');
    fs.rmdirSync(blocker);
    await publishedAll(a.socket);
    const st = JSON.parse(fs.readFileSync(path.join(s.dir, `${journal}.successor`), 'utf8')) as { from: number };
    assert.is(st.from, lastSeq, 'the statement covers the seal it found, now that its successor is there');
    assert.ok(fs.existsSync(path.join(s.dir, successor)));
    assert.equal(readPublished(s.dir, 'hv-a').problems, []);
  } finally {
    await a.kill('SIGKILL');
  }
});

test.run();
