// The lockspace scan for grants the journal forgot (issue 11.4, src/engine/locker-found.ts), on real
// lock files whose records the real locker wrote: only an exclusive record naming this host, with a
// generation the journal never gave that disk, for a resource the state does not hold, is found.
// Another host's record, a released lock's "free" record, a grant the journal knows, and entries
// that are no lock files are left alone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Locker } from '../../src/engine/locker.js';
import { findForgotten } from '../../src/engine/locker-found.js';
import { native } from '../../src/engine/native.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState } from '../../src/engine/state.js';
import type { Intent, Owner, ResourceRef } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';

const owner = (i: number): Owner => ({ uuid: `0000000${i}-0000-4000-8000-000000000000`, name: `vm${i}` });

function setup() {
  const dir = tmpdir('vmlockd-found-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'img'));
  const disk = (i: number) => {
    const p = path.join(dir, 'img', `d${i}`);
    if (!fs.existsSync(p)) fs.writeFileSync(p, 'x');
    return p;
  };
  const take = (locker: Locker, i: number): { ref: ResourceRef; gen: number } => {
    const d = resolveDisk({ path: disk(i), mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
    const p = locker.prepare([{ kind: 'lock', disk: d, owner: owner(i), how: 'take' } as Intent], { at: new Date().toISOString(), source: 'test' });
    assert.is(p.outcome.status, 'ok');
    p.commit();
    const gen = (p.facts.find((f) => f.kind === 'LockAcquired')!.payload as { generation: number }).generation;
    return { ref: d.resource, gen };
  };
  const release = (locker: Locker, ref: ResourceRef, i: number) => {
    const p = locker.prepare([{ kind: 'unlock', resource: ref, path: ref.canonical, owner: owner(i), how: 'drop' } as Intent], { at: new Date().toISOString(), source: 'test' });
    p.commit();
  };
  return { dir, lockspace, disk, take, release };
}

test('only a record naming this host, exclusive, with a generation the journal never gave, is found', () => {
  const { lockspace, take, release } = setup();
  const a = new Locker('host-a', { fileLockspaceDir: lockspace });
  const b = new Locker('host-b', { fileLockspaceDir: lockspace });
  const forgotten = take(a, 1); // the journal lost this grant
  const known = take(a, 2); // the state holds this one
  const remembered = take(a, 3); // the journal has this grant's generation
  const other = take(b, 4); // another host's
  const released = take(a, 5);
  release(a, released.ref, 5); // a release rewrites the record as free
  // A crash: the kernel drops the locks, the records stay.
  a.closeAll();
  b.closeAll();
  fs.mkdirSync(path.join(lockspace, '.hosts'), { recursive: true });
  fs.writeFileSync(path.join(lockspace, 'not-a-lock-file'), 'x');
  fs.mkdirSync(path.join(lockspace, 'f'.repeat(64)));

  const journalGen = (disk: string) => (disk === remembered.ref.canonical ? remembered.gen : 0);
  const at = new Date(Date.now() + 1000).toISOString();
  const scan = findForgotten([{ dir: lockspace, kind: 'file' }], 'host-a', (id) => id === known.ref.id, journalGen, at);
  assert.equal(scan.unusable, []);
  assert.equal(
    scan.facts.map((f) => (f.payload as { resource: string }).resource),
    [forgotten.ref.id],
  );
  const p = scan.facts[0]!.payload as { owner: Owner; disk: string; mode: string; generation: number; source: string; inode?: string };
  assert.equal(p.owner, owner(1));
  assert.is(p.disk, forgotten.ref.canonical);
  assert.is(p.mode, 'exclusive');
  assert.is(p.generation, forgotten.gen);
  assert.is(p.source, 'found');
  assert.is(p.inode, forgotten.ref.inode);
  assert.ok(scan.scanned >= 4, `scanned ${scan.scanned}`);
  void other;

  // The same grant, once the journal has its generation, is not found again.
  const again = findForgotten([{ dir: lockspace, kind: 'file' }], 'host-a', () => false, (disk) => (disk === forgotten.ref.canonical ? forgotten.gen : disk === remembered.ref.canonical ? remembered.gen : known.gen), at);
  assert.equal(
    again.facts.map((f) => (f.payload as { resource: string }).resource),
    [],
  );
});

test('a missing lockspace is no error; an unreadable lock file is reported, not fatal', () => {
  const { lockspace, take } = setup();
  const none = findForgotten([{ dir: path.join(lockspace, 'absent'), kind: 'file' }], 'host-a', () => false, () => 0, new Date().toISOString());
  assert.equal(none, { facts: [], unusable: [], scanned: 0, older: [] });
  const a = new Locker('host-a', { fileLockspaceDir: lockspace });
  const t = take(a, 1);
  a.closeAll();
  fs.chmodSync(t.ref.id, 0o000);
  const asRoot = process.getuid?.() === 0;
  const scan = findForgotten([{ dir: lockspace, kind: 'file' }], 'host-a', () => false, () => 0, new Date(Date.now() + 1000).toISOString());
  // root reads a 0000 file anyway; anyone else gets EACCES, reported with the file's name.
  if (asRoot) assert.is(scan.facts.length, 1);
  else assert.match(scan.unusable.join('\n'), new RegExp(path.basename(t.ref.id)));
});

test('a found grant whose description systemd\'s store kept is adopted through that description, never dropped', () => {
  const { lockspace, take } = setup();
  const a = new Locker('host-a', { fileLockspaceDir: lockspace });
  const t = take(a, 1);
  // The store's copies (a dup is the same open file description), then the daemon dies.
  const stored = a.descriptors().map((p) => ({ name: p.name, fd: native.dupFd(p.fd) }));
  a.closeAll();

  // The restarted daemon's journal lost the grant: its state is empty, and the scan finds it.
  const state = initialState();
  const at = new Date(Date.now() + 1000).toISOString();
  const scan = findForgotten([{ dir: lockspace, kind: 'file' }], 'host-a', (id) => (state.resources.get(id)?.holders.size ?? 0) > 0, () => 0, at);
  assert.is(scan.facts.length, 1);
  for (const f of scan.facts) evolve(state, f);
  const again = new Locker('host-a', { fileLockspaceDir: lockspace });
  const adoption = again.adopt(state, stored, at, 'adopted');
  assert.equal(adoption.dropped, []);
  assert.is(adoption.adopted, 1);
  assert.equal(
    adoption.facts.map((f) => [f.kind, (f.payload as { resource: string }).resource]),
    [['Reacquired', t.ref.id]],
  );
  assert.equal(again.reacquire(state, at).facts, []);
  // Held all along: another host cannot take it.
  const b = new Locker('host-b', { fileLockspaceDir: lockspace });
  const d = resolveDisk({ path: t.ref.canonical, mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
  const p = b.prepare([{ kind: 'lock', disk: d, owner: owner(9), how: 'take' } as Intent], { at, source: 'test' });
  assert.is(p.outcome.status, 'refused');
  again.closeAll();
});

test.run();
