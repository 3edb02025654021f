// review26b F4: a host directory whose facts were journaled by another host. `.journal/ha/` copied to
// `.journal/evil/` with only each segment's header line edited ("host":"evil"): every fact still says
// host "ha" and the hash chain is intact (the header is not hashed). verify --cluster called the chain
// "ok" and audit --cluster --overlaps reported alpha on evil and alpha on ha both holding d.img, a
// split-brain that never happened. A fact whose host differs from its segment header's host now stops
// that chain: verify names host, segment and seq; audit --cluster skips the chain and says so.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, cli, startDaemon, tmpdir } from '../helpers/daemon.js';

test('a copied host directory whose facts name another host: verify --cluster names it, --overlaps finds none', async () => {
  const dir = tmpdir('vmlockd-foreign-facts-');
  fs.mkdirSync(path.join(dir, 'images'));
  const disk = path.join(dir, 'images', 'd.img');
  fs.writeFileSync(disk, 'image');
  const ls = path.join(dir, 'ls');
  const a = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: ls, hostId: 'ha' });
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'alpha', disk]).code, 0);
  await a.kill('SIGTERM');
  const home = path.join(dir, 'home');
  fs.mkdirSync(home);
  const env = { HOME: home, VMLOCKD_CONFIG: '/nonexistent' };
  // The genuine history alone: verify ok, no overlap.
  const v0 = cli(['journal', 'verify', '--cluster', '--lockspace', ls], { env });
  assert.is(v0.code, 0, v0.stdout + v0.stderr);
  const from = path.join(ls, '.journal', 'ha');
  const to = path.join(ls, '.journal', 'evil');
  fs.mkdirSync(to);
  let segs = 0;
  for (const n of fs.readdirSync(from)) {
    let text = fs.readFileSync(path.join(from, n), 'utf8');
    if (n.endsWith('.seg')) {
      text = text.replace('"host":"ha"', '"host":"evil"'); // the header line only
      segs++;
    }
    fs.writeFileSync(path.join(to, n), text);
  }
  assert.ok(segs > 0, 'ha published segments');
  const v = cli(['journal', 'verify', '--cluster', '--lockspace', ls], { env });
  assert.is.not(v.code, 0, `verify --cluster must not call ok a chain in evil/ whose facts say host ha: ${v.stdout}`);
  assert.match(v.stdout + v.stderr, /evil/);
  assert.match(v.stdout + v.stderr, /says host "ha" in a segment of host "evil"/);
  assert.match(v.stdout + v.stderr, /seq 1\b/);
  const o = cli(['audit', '--cluster', '--lockspace', ls, '--cache', path.join(dir, 'cache'), '--overlaps'], { env });
  assert.not.match(o.stdout, /alpha on evil/, `no overlap from facts another host journaled: ${o.stdout}`);
  assert.match(o.stdout + o.stderr, /says host "ha" in a segment of host "evil"/, `the skipped chain is named: ${o.stdout}${o.stderr}`);
  // ha's own chain is still read and verified.
  assert.match(v.stdout, /host ha[^\n]*ok/, v.stdout);
});

test.run();
