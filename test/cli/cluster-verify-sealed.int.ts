// (found by review 15b) journal verify --cluster when the newest segment was removed after a sealed one.
// The daemon's publisher creates each segment's successor right after its seal and says so once in
// <journal>.successor, so a sealed newest segment without its successor is a problem (removed), named
// with the missing segment and seq. A history written without the statement (an older writer that
// opened the next segment with its next fact) keeps the note: the lockspace cannot tell it from a
// rotation waiting for its next fact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, encodeSeal, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { cli, startDaemon, tmpdir, until } from '../helpers/daemon.js';
import { publishedRotating } from '../helpers/published.js';

const published = () => publishedRotating('vmlockd-verify-sealed-verify-');

const verify = (ls: string) => cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--journal', '/nonexistent/journal.db']);

test('the daemon creates each successor with its seal; the newest segment removed after a sealed one: verify --cluster fails naming it', async () => {
  const s = await published();
  const segs = s.segs();
  assert.ok(segs.length >= 2, `rotated: ${segs}`);
  const journal = segs[0]!.slice(0, 16);
  assert.ok(fs.existsSync(path.join(s.dir, `${journal}.successor`)), 'the successor statement is written');
  // No sealed segment lacks its successor, the newest included.
  assert.not.match(fs.readFileSync(path.join(s.dir, segs[segs.length - 1]!), 'utf8'), /"t":"seal"/, 'the newest segment is never a sealed one');
  const whole = verify(s.lockspace);
  assert.is(whole.code, 0, whole.stdout);
  assert.not.match(whole.stdout, /no segment follows it/);
  const last = path.join(s.dir, segs[segs.length - 1]!);
  // The one before is sealed (the writer rotated away from it); drop the newest.
  const sealed = fs.readFileSync(path.join(s.dir, segs[segs.length - 2]!), 'utf8');
  assert.match(sealed, /"t":"seal"/);
  const lastSeq = (JSON.parse(sealed.trim().split('\n').pop()!) as { last: number }).last;
  fs.rmSync(last);
  // review23c: sealed seconds ago, the successor may be on its way (a live rotation): a note, exit 0.
  const fresh = verify(s.lockspace);
  assert.is(fresh.code, 0, fresh.stdout);
  assert.match(fresh.stdout, /a rotation in progress/);
  const old = new Date(Date.now() - 10 * 60_000);
  fs.utimesSync(path.join(s.dir, segs[segs.length - 2]!), old, old);
  const r = verify(s.lockspace);
  assert.is(r.code, 1, `verify fails:\n${r.stdout}`);
  assert.match(r.stdout, new RegExp(`segment ${segs[segs.length - 1]!.replace('.', '\\.')} seq ${lastSeq + 1}: missing newest segment: .*removed`));
  // Its daemon restarted: it resumes at the sealed segment, creates the successor at once and publishes
  // the facts after the seal again (from its journal): the history verifies whole.
  const a = await startDaemon({ stateDir: path.join(s.root, 'state-a'), lockspace: s.lockspace, hostId: 'hv-a', extra: ['--publish-segment-bytes', '4096'] });
  try {
    await until('published again', () => fs.existsSync(last) && verify(s.lockspace).code === 0, 30_000);
  } finally {
    await a.kill('SIGKILL');
  }
});

test('a history without the successor statement (an older writer): a sealed newest segment stays a note, exit 0', () => {
  const root = tmpdir('vmlockd-verify-sealed-old-');
  const lockspace = path.join(root, 'lockspace');
  const J = 'ab12ab12ab12ab12';
  const dir = hostSegmentDir(lockspace, 'hv-old');
  fs.mkdirSync(dir, { recursive: true });
  let prev = GENESIS_HASH;
  let text = encodeHeader({ host: 'hv-old', journal: J, first: 1, prev, created: '2026-01-01T00:00:00.000Z' });
  for (let seq = 1; seq <= 3; seq++) {
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), host: 'hv-old', kind: 'OwnerSeen', resource: null, disk: null, owner: null, owner_name: null, payload: '{}' };
    prev = chainHash(prev, row);
    text += encodeFact(row, prev);
  }
  fs.writeFileSync(path.join(dir, segmentFileName(J, 1)), text + encodeSeal({ last: 3, hash: prev, count: 3 }));
  const old = new Date(Date.now() - 10 * 60_000);
  fs.utimesSync(path.join(dir, segmentFileName(J, 1)), old, old);
  const r = verify(lockspace);
  assert.is(r.code, 0, r.stdout);
  assert.match(r.stdout, /note: .*sealed at seq 3 and no segment follows it/);
  // The same with a statement that covers the seal: removed.
  fs.writeFileSync(path.join(dir, `${J}.successor`), JSON.stringify({ t: 'successor', v: 1, journal: J, from: 2, at: '2026-01-01T00:00:00.000Z' }) + '\n');
  const r2 = verify(lockspace);
  assert.is(r2.code, 1, r2.stdout);
  assert.match(r2.stdout, /seq 4: missing newest segment/);
});

test.run();
