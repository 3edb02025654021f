// `audit --cluster --follow`: the backlog, then each fact as a host publishes it, from every host,
// including a host that starts publishing after the follow began.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { MAIN, tmpdir, until } from '../helpers/daemon.js';

const J = '0123456789abcdef';

function writer(lockspace: string, host: string) {
  const dir = hostSegmentDir(lockspace, host);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, segmentFileName(J, 1));
  fs.writeFileSync(file, encodeHeader({ host, journal: J, first: 1, prev: GENESIS_HASH, created: '2026-01-01T00:00:00.000Z' }));
  let prev = GENESIS_HASH;
  let seq = 0;
  return (kind: string) => {
    seq++;
    const r: ChainRow = { seq, at: new Date().toISOString(), host, kind, resource: null, disk: null, owner: null, owner_name: null, payload: '{}' };
    prev = chainHash(prev, r);
    fs.appendFileSync(file, encodeFact(r, prev));
  };
}

test('--follow prints the backlog, then what each host publishes, a new host included', async () => {
  const dir = tmpdir('vmlockd-cluster-follow-');
  const lockspace = path.join(dir, 'lockspace');
  const a = writer(lockspace, 'hv-a');
  a('DaemonStarted');
  a('OwnerSeen');
  const proc = spawn(process.execPath, [MAIN, 'audit', '--cluster', '--follow', '--json', '--lockspace', lockspace, '--cache', path.join(dir, 'cache')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const lines = () => out.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { host: string; seq: number; kind: string });
  try {
    await until('the backlog', () => lines().length === 2, 20_000);
    a('LockRefused');
    const b = writer(lockspace, 'hv-b');
    b('DaemonStarted');
    await until(`the new facts (${out}${err})`, () => lines().length === 4, 20_000);
    assert.equal(lines().map((f) => `${f.host}:${f.seq}:${f.kind}`).sort(), ['hv-a:1:DaemonStarted', 'hv-a:2:OwnerSeen', 'hv-a:3:LockRefused', 'hv-b:1:DaemonStarted']);
  } finally {
    proc.kill('SIGINT');
    await new Promise((r) => proc.once('exit', r));
  }
  assert.is(proc.exitCode, 0, err);
});

test.run();
