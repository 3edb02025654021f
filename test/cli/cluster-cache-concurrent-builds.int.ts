// review28c: several `audit --cluster` processes at once on an empty cache (each builds the same new
// chains in files of its own, one link(2) wins, the others catch up on the linked chain), then again
// while more is published (bulk loads into held chains, one write transaction each): every answer
// equals a fresh cache's, no build file is left, and nothing fails.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { MAIN, cli, tmpdir } from '../helpers/daemon.js';

function publish(lockspace: string, host: string, journal: string, n: number): string[] {
  const w = segmentWriter(lockspace, host, journal, { segmentBytes: 4 * 1024 * 1024 });
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const d = seq % 3000;
    const disk = `/var/lib/libvirt/images/d${d}.qcow2`;
    const owner = { uuid: `11111111-1111-4111-8111-${String(seq % 300).padStart(12, '0')}`, name: `vm-${seq % 300}` };
    const row: ChainRow = {
      seq,
      at: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
      host,
      kind: seq % 2 === 0 ? 'LockReleased' : 'LockAcquired',
      resource: `/ls/${d}`,
      disk,
      owner: owner.uuid,
      owner_name: owner.name,
      payload: JSON.stringify({ owner, resource: `/ls/${d}`, disk, path: disk, inode: `2049:${d}:1700000000`, mode: 'exclusive', source: 'virsh', n: seq }),
    };
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
  return w.files;
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test('concurrent questions on one cache build and bulk load the same chains: each answers as a fresh cache', async () => {
  const root = tmpdir('cc-concurrent-');
  try {
    const full = path.join(root, 'full');
    const a = publish(full, 'hv-1', '0123456789abcdef', 60_000);
    const b = publish(full, 'hv-2', 'fedcba9876543210', 60_000);
    const ls = path.join(root, 'ls');
    const link = (files: string[], host: string, from: number, to: number): void => {
      const dir = path.join(ls, '.journal', host);
      fs.mkdirSync(dir, { recursive: true });
      for (const f of files.slice(from, to)) fs.linkSync(f, path.join(dir, path.basename(f)));
    };
    link(a, 'hv-1', 0, 5);
    link(b, 'hv-2', 0, 5);
    const env = { HOME: root, XDG_CACHE_HOME: path.join(root, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(root, 'none.sock') };
    const shared = path.join(root, 'cache');
    const q = ['audit', '--cluster', '--lockspace', ls, '--disk', '/var/lib/libvirt/images/d7.qcow2', '--json', '--limit', '0'];
    for (const round of [0, 1]) {
      if (round === 1) {
        link(a, 'hv-1', 5, a.length);
        link(b, 'hv-2', 5, b.length);
      }
      const answers = await Promise.all([0, 1, 2].map(() => run([...q, '--cache', shared], env)));
      const fresh = cli([...q, '--cache', path.join(root, `fresh-${round}`)], { env });
      assert.is(fresh.code, 0, fresh.stderr);
      for (const [i, r] of answers.entries()) {
        assert.is(r.code, 0, `round ${round}, question ${i}: ${r.stderr} ${r.stdout.slice(0, 300)}`);
        assert.is(r.stdout, fresh.stdout, `round ${round}, question ${i} answers otherwise than a fresh cache (${r.stdout.length} vs ${fresh.stdout.length} chars: ${r.stdout.slice(0, 200)} / ${fresh.stdout.slice(0, 200)}; stderr: ${r.stderr.slice(0, 400)})`);
      }
      const again = cli([...q, '--cache', shared], { env });
      assert.is(again.stdout, fresh.stdout, `round ${round}: the next question`);
      assert.equal(fs.readdirSync(shared, { recursive: true }).map(String).filter((f) => f.includes('.build-')), []);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test.run();
