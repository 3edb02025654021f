// review28c F3: since 902627b a bulk load into a chain the cache holds is one write transaction (a
// first load of 16+ MiB holds the chain's write lock for seconds to minutes). A question from another
// process that finds that chain no longer listed (the host's directory moved aside meanwhile) unlists
// it (ClusterCache.unlistChains), waits the busy timeout (10 s) for the write lock and, before this fix,
// failed whole: `vmlockd: database is locked` (VMLOCKD_ERR_INTERNAL, exit 1), no host answered. A
// chain's catch-up treats the same SQLITE_BUSY as ConcurrentCatchUp (answers from what was committed);
// so must its unlisting: the next question unlists it.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { segmentWriter } from '../helpers/segments.js';
import { cli, tmpdir } from '../helpers/daemon.js';

function publish(lockspace: string, host: string, journal: string, n: number): void {
  const w = segmentWriter(lockspace, host, journal, { segmentBytes: 1024 * 1024 });
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const disk = `/var/lib/libvirt/images/${host}-d${seq % 20}.qcow2`;
    const row: ChainRow = {
      seq,
      at: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
      host,
      kind: seq % 2 === 0 ? 'LockReleased' : 'LockAcquired',
      resource: `/ls/${host}${seq % 20}`,
      disk,
      owner: '11111111-1111-4111-8111-000000000001',
      owner_name: 'vm-1',
      payload: JSON.stringify({ owner: { uuid: '11111111-1111-4111-8111-000000000001', name: 'vm-1' }, disk, mode: 'exclusive', source: 'virsh', n: seq }),
    };
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
}

test("a chain no longer listed while another process's catch-up holds its write lock: the question still answers", async () => {
  const root = tmpdir('cc-unlist-busy-');
  let holder: ChildProcess | undefined;
  try {
    const ls = path.join(root, 'ls');
    publish(ls, 'hv-1', '0123456789abcdef', 300);
    publish(ls, 'hv-2', 'fedcba9876543210', 300);
    const env = { HOME: root, XDG_CACHE_HOME: path.join(root, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(root, 'none.sock') };
    const cache = path.join(root, 'cache');
    const q = ['audit', '--cluster', '--lockspace', ls, '--cache', cache, '--disk', '/var/lib/libvirt/images/hv-2-d3.qcow2', '--json', '--limit', '0'];
    const first = cli(q, { env });
    assert.is(first.code, 0, first.stderr);
    const chain = fs.readdirSync(cache, { recursive: true }).map(String).find((f) => f.endsWith('0123456789abcdef.db'))!;
    // Another process's catch-up of hv-1's chain in its one write transaction (a bulk load).
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    holder = spawn(process.execPath, ['-e', `const D=require(${JSON.stringify(sqlite)});const db=new D(process.argv[1]);db.exec('BEGIN IMMEDIATE');db.exec("INSERT INTO meta (key, value) VALUES ('review28c','held')");console.log('held');setInterval(()=>{},1000)`, path.join(cache, chain)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => holder!.stdout!.once('data', r));
    // hv-1's directory moved aside meanwhile: its chain is no longer listed.
    fs.renameSync(path.join(ls, '.journal', 'hv-1'), path.join(ls, '.journal', '.hv-1-aside'));
    const second = cli(q, { env });
    assert.is(second.code, 0, `${second.stderr} ${second.stdout.slice(0, 300)}`);
    assert.is(second.stdout, first.stdout, "hv-2's answer");
  } finally {
    holder?.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test.run();
