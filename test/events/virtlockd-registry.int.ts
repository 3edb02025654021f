// The virtlockd protocol server's registry file (src/events/virtlockd/registry.ts) on a real file,
// and a real daemon taking 4,000 REGISTERs (issue 16.15): changes are appended, not rewritten, the
// file is compacted and pruned, and a line torn by a crash loses only itself.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { ServerRegistry } from '../../src/events/virtlockd/registry.js';
import { REGISTRY_FILE } from '../../src/daemon/virtlockd-source.js';
import { tmpdir } from '../helpers/daemon.js';
import { serve } from '../helpers/protocol-serve.js';

const uuid = (i: number): string => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;

test('given owners, pids and lockspaces saved one change at a time, then a reload sees them all, compaction bounds the file, and a torn last line is ignored', () => {
  const dir = tmpdir('vmlockd-vr-');
  const file = path.join(dir, 'reg.json');
  const warnings: string[] = [];
  try {
    const r = ServerRegistry.load(file, (m) => warnings.push(m));
    r.addLockspace('/ls');
    for (let i = 0; i < 5000; i++) r.setOwner({ uuid: uuid(i), name: `vm${i}`, pid: 100 + (i % 50), start: String(i) });
    r.setPids('/ls/a', uuid(1), [101, 101]);
    r.setPids('/ls/b', uuid(2), [102]);
    r.setPids('/ls/b', uuid(2), []);
    r.dropOwner(149);
    r.close();
    // 5,000 changes over 50 live owners: compacted along the way, not 5,000 lines.
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
    assert.ok(lines <= 1001, `${lines} lines`);
    appendFileSync(file, '{"op":"owner","owner":{"uuid":"x","na'); // a crash mid-append
    const back = ServerRegistry.load(file, (m) => warnings.push(m));
    assert.equal([...back.lockspaces], ['/ls']);
    assert.is(back.owners.size, 49);
    assert.equal(back.owners.get(148), { uuid: uuid(4998), name: 'vm4998', pid: 148, start: '4998' });
    assert.equal(back.pidsOf('/ls/a', uuid(1)), [101, 101]);
    assert.equal(back.pidsOf('/ls/b', uuid(2)), []);
    assert.ok(warnings.some((w) => w.includes('is damaged')), warnings.join('\n'));
    // The first file format (one JSON object, owners keyed by uuid) still loads.
    writeFileSync(file, JSON.stringify({ v: 1, lockspaces: ['/old'], owners: [{ uuid: uuid(7), name: 'vm7', pid: 77, start: null }] }) + '\n');
    const v1 = ServerRegistry.load(file, (m) => warnings.push(m));
    assert.equal([...v1.lockspaces], ['/old']);
    assert.equal(v1.owners.get(77)?.uuid, uuid(7));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given 4,000 REGISTERs of new uuids, then the registry file stays small and the daemon answers each at once', async () => {
  const dir = tmpdir('vmlockd-vr-');
  const s = await serve(dir);
  try {
    const c = await LockClient.connect(s.socket);
    const t0 = process.hrtime.bigint();
    // pid 1 is alive and has no connection of its own: the owner is watched and written down.
    for (let i = 0; i < 4000; i++) await c.register({ uuid: uuid(i).replace(/-/g, ''), name: `vm${i}`, id: i + 1, pid: 1 });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    console.log(`virtlockd-registry.int: 4,000 REGISTERs answered in ${ms.toFixed(0)} ms`);
    // And 4,000 of pids that do not exist: nothing to watch, nothing written.
    for (let i = 0; i < 4000; i++) await c.register({ uuid: uuid(i).replace(/-/g, ''), name: `vm${i}`, id: i + 1, pid: 4_000_000 + i });
    await c.close();
    const size = statSync(path.join(dir, 'state', REGISTRY_FILE)).size;
    assert.ok(size < 256 * 1024, `registry file is ${size} bytes`);
  } finally {
    await s.daemon.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
