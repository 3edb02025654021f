// Publication of the journal into the lockspace (issue 15, docs/decisions/0016): real daemons, real
// segments read back with the one decoder (src/journal/segment.ts) and compared with the journal.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { TestDaemon, cli, tmpdir } from '../helpers/daemon.js';
import { journalHashes, mismatch, postEvents, readPublished, startStop, status, waitFor } from '../helpers/published.js';

const test = suite('publication: the journal copied into <lockspace>/.journal/<host-id>/');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function site(host = 'h1') {
  const root = tmpdir('vmlockd-publish-');
  const ls = path.join(root, 'lockspace');
  const stateDir = path.join(root, 'state');
  return { root, ls, stateDir, host, images: path.join(root, 'images'), dir: path.join(ls, '.journal', host), journal: path.join(stateDir, 'journal.db') };
}

async function daemon(s: ReturnType<typeof site>, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<TestDaemon> {
  const d = new TestDaemon({ stateDir: s.stateDir, lockspace: s.ls, hostId: s.host, extra, env: { VMLOCKD_PUBLISH_INTERVAL_MS: '20', ...env } });
  running.push(await d.start());
  return d;
}

/** Until everything journaled is published (status: lag 0 facts). */
async function caughtUp(d: TestDaemon): Promise<Record<string, any>> {
  return waitFor('publication to catch up', async () => {
    const st = await status(d.socket);
    return st.publication?.publishedSeq === st.lastSeq && st.lastSeq > 0 ? st : undefined;
  });
}

test('segments appear in the lockspace, chain from the genesis, rotate at publish_segment_bytes, and equal the journal', async () => {
  const s = site();
  const d = await daemon(s, ['--publish-segment-bytes', '4096']);
  const ok = await postEvents(d.socket, startStop(s.images, 0, 120));
  assert.ok(ok.every((x) => x === 'ok'));
  const st = await caughtUp(d);
  assert.is(st.publication.enabled, true);
  assert.is(st.publication.lagFacts, 0);
  assert.is(st.publication.dir, s.dir);
  const p = readPublished(s.dir, s.host);
  assert.equal(p.problems, []);
  assert.is(p.pendingTail, 0);
  assert.is(p.journalIds.length, 1);
  assert.is(p.journalIds[0], st.publication.journalId);
  assert.is(p.facts[0]!.seq, 1);
  assert.is(mismatch(p.facts, journalHashes(s.journal)), undefined);
  assert.is(p.facts.length, st.lastSeq);
  // Rotation: several segments, every one but the newest sealed, none much past the size.
  assert.ok(p.segments.length >= 5, `only ${p.segments.length} segment(s)`);
  assert.ok(p.segments.slice(0, -1).every((x) => x.sealed));
  const longest = Math.max(...p.facts.map((f) => JSON.stringify(f).length + 1));
  for (const seg of p.segments) assert.ok(seg.bytes <= 4096 + 2 * longest, `${seg.name}: ${seg.bytes} bytes`);
  // No temporaries left behind; the directory is readable by other hosts' readers.
  assert.equal(fs.readdirSync(s.dir).filter((n) => n.startsWith('.')), []);
  assert.is(fs.statSync(s.dir).mode & 0o777, 0o755);
  const meta = new Database(s.journal, { readonly: true });
  const row = meta.prepare(`SELECT value FROM meta WHERE key = 'published_through'`).get() as { value: string } | undefined;
  meta.close();
  assert.ok(row !== undefined && Number(row.value) > 0, 'meta.published_through is kept for journal compact');
});

test('SIGKILL: the segments left behind are complete and readable; a torn last line is cut off at restart, which resumes with no duplicate and no gap', async () => {
  const s = site();
  let d = await daemon(s, ['--publish-segment-bytes', '65536']);
  await postEvents(d.socket, startStop(s.images, 0, 100));
  // Killed while it may still be publishing (once it has published something: a loaded machine may
  // not have begun yet): whatever it left must read cleanly.
  await waitFor('some facts published', async () => ((await status(d.socket)).publication?.publishedSeq ?? 0) > 0);
  await d.kill('SIGKILL');
  let left = readPublished(s.dir, s.host);
  // A kill between a seal and its successor's rename leaves a sealed newest segment: a writer never
  // appends after a seal, so a torn line cannot follow one. Start, write and kill again until the
  // kill leaves a segment open (a loaded machine made this run fail: no notice to find).
  for (let round = 0; left.segments[left.segments.length - 1]!.sealed && round < 5; round++) {
    d = await daemon(s, ['--publish-segment-bytes', '65536']);
    await postEvents(d.socket, startStop(s.images, 0, 5));
    await caughtUp(d);
    await d.kill('SIGKILL');
    left = readPublished(s.dir, s.host);
  }
  assert.not.ok(left.segments[left.segments.length - 1]!.sealed, 'the newest segment is open');
  assert.equal(left.problems, [], 'a host killed and never restarted leaves readable segments');
  assert.ok(left.facts.length > 0);
  assert.is(mismatch(left.facts, journalHashes(s.journal)), undefined);
  // A write cut short by the crash: half a fact line at the end of the newest segment.
  const newest = path.join(s.dir, left.segments[left.segments.length - 1]!.name);
  const torn = '{"t":"fact","seq":' + String(left.facts[left.facts.length - 1]!.seq + 1) + ',"at":"2026-';
  fs.appendFileSync(newest, torn);
  assert.is(readPublished(s.dir, s.host).pendingTail, torn.length);

  d = await daemon(s, ['--publish-segment-bytes', '65536', '--log-level', 'info']);
  await postEvents(d.socket, startStop(s.images, 100, 100));
  const st = await caughtUp(d);
  const p = readPublished(s.dir, s.host);
  assert.equal(p.problems, []);
  assert.is(p.pendingTail, 0);
  assert.is(p.facts.length, st.lastSeq, 'every fact once');
  assert.is(mismatch(p.facts, journalHashes(s.journal)), undefined);
  assert.is(p.journalIds.length, 1, 'the same journal id after a restart');
  // The notice may reach the test's stderr pipe after status says caught up.
  await waitFor('the cut-off notice', async () => /cut off \d+ byte\(s\) of an unfinished last line/.test(d.stderr));
});

test('a complete last line that does not chain (a write cut short on a filesystem that zero-fills or reorders) is cut off too, not published after', async () => {
  const s = site();
  let d = await daemon(s);
  await postEvents(d.socket, startStop(s.images, 0, 10));
  await caughtUp(d);
  await d.kill('SIGKILL');
  const left = readPublished(s.dir, s.host);
  const newest = path.join(s.dir, left.segments[left.segments.length - 1]!.name);
  const last = left.facts[left.facts.length - 1]!;
  // The next seq, whole and newline-terminated, but with the previous line's hash: it does not chain.
  fs.appendFileSync(newest, JSON.stringify({ ...last, seq: last.seq + 1 }) + '\n');
  assert.match(readPublished(s.dir, s.host).problems.join(), /hash does not chain/);
  d = await daemon(s, ['--log-level', 'info']);
  await postEvents(d.socket, startStop(s.images, 10, 10));
  const st = await caughtUp(d);
  const p = readPublished(s.dir, s.host);
  assert.equal(p.problems, []);
  assert.is(p.facts.length, st.lastSeq);
  assert.is(mismatch(p.facts, journalHashes(s.journal)), undefined);
});

test('SIGKILL under load, again and again: no duplicate, no gap, one chain', async () => {
  const s = site();
  for (let round = 0; round < 3; round++) {
    const d = await daemon(s, ['--publish-segment-bytes', '8192']);
    const sending = postEvents(d.socket, startStop(s.images, round * 200, 200)).catch(() => []);
    // Kill it while facts are still arriving and being published.
    await waitFor('some facts published', async () => ((await status(d.socket)).publication?.publishedSeq ?? 0) > round * 400 + 50);
    await d.kill('SIGKILL');
    await sending;
  }
  const d = await daemon(s, ['--publish-segment-bytes', '8192']);
  const st = await caughtUp(d);
  const p = readPublished(s.dir, s.host);
  assert.equal(p.problems, []);
  assert.is(p.facts.length, st.lastSeq);
  assert.is(mismatch(p.facts, journalHashes(s.journal)), undefined);
});

test('a symbolic link planted at .journal/<host-id> (or a FIFO under a segment name) is never written through: publication stops naming it, replies go on', async () => {
  const s = site();
  const victim = path.join(s.root, 'victim');
  fs.mkdirSync(victim, { recursive: true });
  fs.mkdirSync(path.join(s.ls, '.journal'), { recursive: true });
  fs.symlinkSync(victim, s.dir);
  const d = await daemon(s);
  const ok = await postEvents(d.socket, startStop(s.images, 0, 10));
  assert.ok(ok.every((x) => x === 'ok'), 'every command answered');
  const st = await waitFor('publication to report the link', async () => {
    const v = await status(d.socket);
    return v.publication?.lastError ? v : undefined;
  });
  assert.match(st.publication.lastError.message, 'symbolic link');
  assert.is(st.publication.lastError.code, 'VMLOCKD_ERR_PUBLISH_PATH');
  assert.equal(fs.readdirSync(victim), [], 'a segment was written through the planted link');
  await d.kill('SIGKILL');

  // The link removed, a FIFO under this journal's next segment name: never opened as a segment.
  fs.unlinkSync(s.dir);
  const d2 = await daemon(s);
  await caughtUp(d2);
  const segs = fs.readdirSync(s.dir).filter((n) => n.endsWith('.seg'));
  assert.ok(segs.length >= 1);
  await d2.kill('SIGKILL');
  const newest = segs.sort()[segs.length - 1]!;
  fs.rmSync(path.join(s.dir, newest));
  execFileSync('mkfifo', [path.join(s.dir, newest)]);
  const d3 = await daemon(s);
  assert.ok((await postEvents(d3.socket, startStop(s.images, 100, 2))).every((x) => x === 'ok'));
  const st3 = await waitFor('publication to report the FIFO', async () => {
    const v = await status(d3.socket);
    return v.publication?.lastError ? v : undefined;
  });
  assert.match(st3.publication.lastError.message, 'not a regular file');
});

test('the same state directory started under a new host id publishes nothing of the old host\'s journal as the new host\'s: publication stops naming both ids (review15: facts twice, a false overlap)', async () => {
  const s = site('hv-old');
  const a = await daemon(s);
  assert.ok((await postEvents(a.socket, startStop(s.images, 0, 3, true))).every((x) => x === 'ok'));
  await caughtUp(a);
  await a.kill('SIGTERM');
  running.splice(0);
  const b = await daemon({ ...s, host: 'hv-new', dir: path.join(s.ls, '.journal', 'hv-new') });
  assert.ok((await postEvents(b.socket, startStop(s.images, 10, 1))).every((x) => x === 'ok'), 'replies go on');
  const st = await waitFor('publication to stop on the host id', async () => {
    const v = await status(b.socket);
    return v.publication?.lastError ? v : undefined;
  });
  assert.is(st.publication.lastError.code, 'VMLOCKD_ERR_PUBLISH_HOST');
  assert.match(st.publication.lastError.message, '"hv-old"');
  assert.match(st.publication.lastError.message, '"hv-new"');
  const newDir = path.join(s.ls, '.journal', 'hv-new');
  const segs = fs.existsSync(newDir) ? fs.readdirSync(newDir).filter((n) => n.endsWith('.seg')) : [];
  assert.equal(segs, [], 'the old host\'s facts were published again under the new host id');
  const home = path.join(s.root, 'auditor');
  const env = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const ov = cli(['audit', '--cluster', '--lockspace', s.ls, '--overlaps'], { env });
  assert.is(ov.code, 0, ov.stdout + ov.stderr);
  assert.match(ov.stdout, /^no overlaps/, ov.stdout);
});

test('publish = 0 writes nothing in the lockspace; a live reload turns it on (it catches up from seq 1) and off again', async () => {
  const s = site();
  const conf = path.join(s.root, 'vmlockd.conf');
  fs.mkdirSync(s.root, { recursive: true });
  fs.writeFileSync(conf, 'publish = 0\n');
  const d = await daemon(s, ['--config', conf]);
  await postEvents(d.socket, startStop(s.images, 0, 20));
  const off = await status(d.socket);
  assert.is(off.publication.enabled, false);
  assert.is(off.publication.publishedSeq, null);
  assert.ok(off.lastSeq >= 60);
  assert.not.ok(fs.existsSync(path.join(s.ls, '.journal')), 'nothing under the lockspace');

  fs.writeFileSync(conf, 'publish = 1\n');
  await caughtUp(d);
  let p = readPublished(s.dir, s.host);
  assert.equal(p.problems, []);
  assert.is(p.facts[0]!.seq, 1);
  assert.is(mismatch(p.facts, journalHashes(s.journal)), undefined);

  fs.writeFileSync(conf, 'publish = 0\n');
  await waitFor('publication off', async () => (await status(d.socket)).publication.enabled === false);
  const before = readPublished(s.dir, s.host).facts.length;
  await postEvents(d.socket, startStop(s.images, 20, 10));
  await waitFor('the new facts journaled', async () => (await status(d.socket)).lastSeq >= before + 30);
  p = readPublished(s.dir, s.host);
  assert.ok(p.facts.length <= before + 2, 'nothing more published while off (the reload facts at most)');
  const meta = new Database(s.journal, { readonly: true });
  const row = meta.prepare(`SELECT value FROM meta WHERE key = 'published_through'`).get();
  meta.close();
  assert.is(row, undefined, 'publication off no longer holds journal compact back');
});

test('journal compact never cuts past what is published; the published history stays whole after a compaction', async () => {
  const s = site();
  // A regular file where the history's directory goes: every publication attempt fails.
  fs.mkdirSync(s.ls, { recursive: true });
  fs.writeFileSync(path.join(s.ls, '.journal'), 'in the way\n');
  const d = await daemon(s, [], { VMLOCKD_SNAPSHOT_EVERY: '20' });
  await postEvents(d.socket, startStop(s.images, 0, 40));
  const failing = await waitFor('publication failing', async () => {
    const st = await status(d.socket);
    return st.publication.failing && st.publication.lastError ? st : undefined;
  });
  assert.match(failing.publication.lastError.message, /EEXIST|ENOTDIR|not a directory|exists/i);
  assert.ok(failing.publication.lagFacts >= 100);
  const future = new Date(Date.now() + 3_600_000).toISOString();
  await waitFor('a snapshot', async () => (await status(d.socket)).snapshotFailures === 0 && fs.existsSync(s.journal));
  const held = cli(['journal', 'compact', '--before', future, '--journal', s.journal]);
  assert.is(held.code, 0, held.stderr);
  assert.match(held.stdout + held.stderr, /publish/i);
  const j1 = new Database(s.journal, { readonly: true });
  assert.is((j1.prepare('SELECT min(seq) AS m FROM facts').get() as { m: number }).m, 1, 'no fact compacted before it was published');
  j1.close();

  fs.rmSync(path.join(s.ls, '.journal'));
  const st = await caughtUp(d);
  // published_through is written at most once a second: wait until it covers what is published.
  await waitFor('meta.published_through', async () => {
    const m = new Database(s.journal, { readonly: true });
    const v = m.prepare(`SELECT value FROM meta WHERE key = 'published_through'`).get() as { value: string } | undefined;
    m.close();
    return v !== undefined && Number(v.value) >= st.lastSeq - 5;
  });
  const c = cli(['journal', 'compact', '--before', future, '--journal', s.journal]);
  assert.is(c.code, 0, c.stderr);
  const j2 = new Database(s.journal, { readonly: true });
  const first = (j2.prepare('SELECT min(seq) AS m FROM facts').get() as { m: number | null }).m;
  j2.close();
  assert.ok(first === null || first > 1, 'the published prefix was compacted');
  await postEvents(d.socket, startStop(s.images, 40, 20));
  const after = await caughtUp(d);
  const p = readPublished(s.dir, s.host);
  assert.equal(p.problems, []);
  assert.is(p.facts[0]!.seq, 1, 'compaction never touches the published segments');
  assert.is(p.facts.length, after.lastSeq);
});

test.run();
