// A disk held before its image existed (acquired with --create) gets its identity once the image is
// created (review25a F1, HIGH): before, it was journaled without dev:ino:btime and a hard link of the
// created image was granted to a second VM. The identity is learnt before any command resolves and on
// each verifier round (IdentityLearned); two held names that turn out to be one file are a conflict
// found after the fact: DISK CONFLICT in the log and in the fact.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, UUID3, startDaemon, tmpdir, until } from '../helpers/daemon.js';
import { journalFacts } from '../helpers/settled.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

async function daemon(extra: string[] = []): Promise<{ dir: string; state: string; d: TestDaemon; img: (n: string) => string }> {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'images'));
  const state = path.join(dir, 'state');
  const d = await startDaemon({ stateDir: state, lockspace: path.join(dir, 'ls'), hostId: 'hv-a', extra });
  running.push(d);
  return { dir, state, d, img: (n) => path.join(dir, 'images', n) };
}

function holders(d: TestDaemon): string[] {
  const r = d.cli(['locks', '--json']);
  assert.is(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ vm: { uuid: string } }>).map((l) => l.vm.uuid).sort();
}

test('control: a hard link of a held disk that existed at its acquire is refused to another VM', async () => {
  const { d, img } = await daemon();
  fs.writeFileSync(img('a.img'), 'image');
  fs.linkSync(img('a.img'), img('b.img'));
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', img('a.img')]).code, 0);
  const r = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', img('b.img')]);
  assert.is(r.code, 3, r.stdout + r.stderr);
});

test('acquired with --create, then created, then hard-linked: the link is refused to another VM', async () => {
  const { d, state, img } = await daemon();
  const a = img('a.img');
  const first = d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', '--create', a]);
  assert.is(first.code, 0, first.stdout + first.stderr);
  fs.writeFileSync(a, 'image'); // qemu-img create, after the lock (what --create is for)
  fs.linkSync(a, img('b.img'));
  const r = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', img('b.img')]);
  assert.is(r.code, 3, `vm2 was granted a hard link of vm1's disk: ${r.stdout}${r.stderr}`);
  assert.equal(holders(d), [UUID1]);
  const learnt = journalFacts(state, 'IdentityLearned');
  assert.is(learnt.length, 1, JSON.stringify(learnt));
  assert.is(learnt[0]!.payload.disk, a);
  assert.is(learnt[0]!.payload.inode.split(':').length, 3, 'dev:ino:btime');
  assert.not.ok(learnt[0]!.payload.conflict, 'no conflict');
  // The release by the link's name is vm1's release of that one disk.
  assert.is(d.cli(['release', '--vm', UUID1, img('b.img')]).code, 0);
  assert.equal(holders(d), []);
});

test('a disk created under its lock is learnt by the verifier round, so renamed afterwards it is still the held disk, across a restart', async () => {
  const { d, state, img } = await daemon(['--verify-interval', '1']);
  const a = img('a.img');
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', '--create', a]).code, 0);
  fs.writeFileSync(a, 'image');
  // No command in between: the verifier's round learns it.
  await until('the verifier learns the identity', () => journalFacts(state, 'IdentityLearned').length === 1, 30_000);
  await d.kill('SIGKILL');
  await d.start();
  fs.renameSync(a, img('renamed.img')); // the held name no longer exists; the identity (with its birth) does
  const r = d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', img('renamed.img')]);
  assert.is(r.code, 3, `vm2 was granted vm1's renamed disk: ${r.stdout}${r.stderr}`);
});

test('two held names that turn out to be one file: DISK CONFLICT in the log and the fact, both holders named', async () => {
  const { d, state, img } = await daemon(['--log-format', 'json']);
  const b = img('b.img');
  fs.writeFileSync(b, 'image');
  assert.is(d.cli(['acquire', '--vm', UUID2, '--name', 'vm2', b]).code, 0);
  const a = img('a.img');
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'vm1', '--create', a]).code, 0);
  // The image "created" at a is vm2's disk (a hard link, or b renamed into place).
  fs.linkSync(b, a);
  // The next command of any VM, about any disk, learns it.
  fs.writeFileSync(img('c.img'), 'image');
  assert.is(d.cli(['acquire', '--vm', UUID3, '--name', 'vm3', img('c.img')]).code, 0);
  const line = await until('the DISK CONFLICT line', () => d.stderr.split('\n').find((l) => l.includes('"event":"DiskConflict"')), 30_000);
  const j = JSON.parse(line);
  assert.is(j.disk, a, line);
  assert.is(j.vm, 'vm1', line);
  assert.match(j.msg, 'DISK CONFLICT', line);
  assert.match(j.msg, 'vm2', line);
  const learnt = journalFacts(state, 'IdentityLearned');
  assert.is(learnt.length, 1, JSON.stringify(learnt));
  assert.equal(learnt[0]!.payload.conflict.map((c: { owner: { uuid: string }; disk: string }) => [c.owner.uuid, c.disk]), [[UUID2, b]]);
  // A third VM asking for either name is refused.
  assert.is(d.cli(['acquire', '--vm', UUID3, a]).code, 3);
});

test.run();
