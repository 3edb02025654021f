// GET /v1/audit answers in pages (review25a F13): without `limit` it read and serialised the whole
// journal on the event loop (108k facts: every client waited 8.3 s). Now at most 1,000 facts by
// default and 10,000 on request, with the next page's `after_seq` in a header; paging reads every fact.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, tmpdir } from '../helpers/daemon.js';

function get(socket: string, target: string): Promise<{ status: number; next: string | undefined; body: any }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: socket, path: target }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, next: res.headers['x-vmlockd-next-after-seq'] as string | undefined, body: JSON.parse(text) }));
      })
      .on('error', reject);
  });
}

let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
});

test('GET /v1/audit answers at most 1,000 facts unless asked, at most 10,000, and pages on with after_seq', async () => {
  const dir = tmpdir();
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'hv-a', extra: ['--publish', '0'] }).start();
  // 2,500 bad lines: each is journaled as InputRejected (and changes no lock).
  const r = spawnSync(process.execPath, [MAIN, 'ingest', '-', '--socket', d.socket], { input: 'x\n'.repeat(2_500), encoding: 'utf8', timeout: 300_000 });
  assert.ok(r.status !== null, 'ingest did not finish');
  const first = await get(d.socket, '/v1/audit?kind=InputRejected');
  assert.is(first.status, 200);
  assert.is(first.body.length, 1_000);
  assert.is(first.next, String(first.body[999].seq));
  // Every page in seq order, no fact twice, none left out.
  const seqs: number[] = first.body.map((f: { seq: number }) => f.seq);
  let next = first.next;
  while (next !== undefined) {
    const page = await get(d.socket, `/v1/audit?kind=InputRejected&after_seq=${next}`);
    assert.is(page.status, 200);
    seqs.push(...page.body.map((f: { seq: number }) => f.seq));
    next = page.next;
    if (page.body.length < 1_000) assert.is(next, undefined, 'a short page says there is no next one');
  }
  assert.is(seqs.length, 2_500);
  assert.equal([...seqs].sort((a, b) => a - b), seqs);
  assert.is(new Set(seqs).size, 2_500);
  const all = await get(d.socket, '/v1/audit?kind=InputRejected&limit=10000');
  assert.is(all.body.length, 2_500);
  assert.is(all.next, undefined);
  const over = await get(d.socket, '/v1/audit?limit=10001');
  assert.is(over.status, 400);
  assert.match(over.body.message, 'limit must be at most 10000 (page on with after_seq=');
  const bad = await get(d.socket, '/v1/audit?after_seq=-1');
  assert.is(bad.status, 400);
  assert.match(bad.body.message, 'after_seq must be a non-negative integer, got "-1"');
});

test('pages of one disk (read through its index, review25c F4) are every fact of it once, in seq order', async () => {
  const dir = tmpdir();
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'hv-a', extra: ['--publish', '0'] }).start();
  const disk = path.join(dir, 'a.img');
  const other = path.join(dir, 'b.img');
  fs.writeFileSync(disk, '');
  fs.writeFileSync(other, '');
  const vm = { uuid: '11111111-2222-4333-8444-555555555555', name: 'web1' };
  let lines = '';
  for (let i = 0; i < 700; i++) {
    lines += JSON.stringify({ type: 'started', vm, disks: [{ path: disk }, { path: other }] }) + '\n';
    lines += JSON.stringify({ type: 'stopped', vm }) + '\n';
  }
  const r = spawnSync(process.execPath, [MAIN, 'ingest', '-', '--socket', d.socket], { input: lines, encoding: 'utf8', timeout: 300_000 });
  assert.is(r.status, 0, r.stderr);
  const q = `disk=${encodeURIComponent(disk)}`;
  const whole = await get(d.socket, `/v1/audit?${q}&limit=10000`);
  assert.ok(whole.body.length >= 1_400, `${whole.body.length} facts name the disk`);
  const seqs: number[] = [];
  let next: string | undefined = '0';
  while (next !== undefined) {
    const page = await get(d.socket, `/v1/audit?${q}&limit=500&after_seq=${next}`);
    assert.is(page.status, 200);
    for (const f of page.body) assert.is(f.disk, disk);
    seqs.push(...page.body.map((f: { seq: number }) => f.seq));
    next = page.next;
  }
  assert.equal(seqs, whole.body.map((f: { seq: number }) => f.seq));
  assert.equal([...seqs].sort((a, b) => a - b), seqs);
});

test.run();
