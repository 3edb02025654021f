// one host's segment whose last line never ends (a broken host, a damaged file: here 128 MiB
// of 'x' after a valid header). The decoder concatenates its carry with each 4 MiB chunk and rescans it
// (quadratic), and a pending tail is re-read on every question: every `audit --cluster` of the whole
// cluster takes that long again, and then reports "no host has published history".
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, tmpdir } from '../helpers/daemon.js';

const test = suite('cluster: a gigantic unterminated line');

test('128 MiB without a newline: audit --cluster --overlaps, twice', () => {
  const root = tmpdir('vmlockd-r15-giant-');
  const dir = path.join(root, 'ls', '.journal', 'hx');
  fs.mkdirSync(dir, { recursive: true });
  const f = path.join(dir, '0123456789abcdef-0000000000000001.seg');
  fs.writeFileSync(f, JSON.stringify({ t: 'segment', v: 1, host: 'hx', journal: '0123456789abcdef', first: 1, prev: '0'.repeat(64), created: new Date().toISOString() }) + '\n');
  const fd = fs.openSync(f, 'a');
  const chunk = Buffer.alloc(16 << 20, 0x78);
  for (let i = 0; i < 8; i++) fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const env = { HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  for (const round of [1, 2]) {
    const t0 = Date.now();
    const r = cli(['audit', '--cluster', '--lockspace', path.join(root, 'ls'), '--overlaps'], { env });
    const ms = Date.now() - t0;
    console.log(`round ${round}: ${ms} ms, code ${r.code}: ${r.stdout.trim()} | ${r.stderr.trim()}`);
    assert.is(r.code, 0, r.stderr);
    // 128 MiB read linearly takes well under a second; 10 s is a generous bound on a loaded machine.
    assert.ok(ms < 10_000, `audit --cluster took ${ms} ms over one 128 MiB unterminated line`);
  }
});

test.run();
