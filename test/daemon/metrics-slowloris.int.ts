// Half-open /metrics connections must not starve the lock path of descriptors (review14 HIGH 2): the
// metrics server caps its connections and times out unfinished headers, so an acquire of a free disk
// succeeds while a client keeps 350 half-sent requests open. The nofile limit is lowered with
// prlimit to keep the test small (systemd's LimitNOFILE=65536 only raises the number needed).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../helpers/ports.js';
import { MAIN, UUID1, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
const sockets = new Set<net.Socket>();
let topUp: NodeJS.Timeout | undefined;
test.after.each(async () => {
  clearInterval(topUp);
  for (const s of sockets) s.destroy();
  for (const d of running.splice(0)) await d.kill();
});

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (out += b));
    p.on('exit', (code) => resolve({ code: code ?? -1, out }));
  });
}

test('half-open /metrics connections do not starve the lock files of descriptors', async () => {
  const root = tmpdir('vmlockd-r14-slowloris-');
  const disk = path.join(root, 'a.img');
  fs.writeFileSync(disk, '');
  const port = await freePort();
  const d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'ls'), hostId: 'h1', extra: ['--metrics-address', `127.0.0.1:${port}`] });
  running.push(d);
  const pid = d.proc!.pid!;
  const r = spawnSync('prlimit', ['--pid', String(pid), '--nofile=300:300'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  // The attacker keeps 350 clients that never finish their request headers (a dropped one is replaced).
  const fill = () => {
    while (sockets.size < 350) {
      const s = net.connect(port, '127.0.0.1');
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
      s.on('connect', () => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'));
    }
  };
  fill();
  topUp = setInterval(fill, 20);
  // Before the cap: the daemon reached its limit within a second. Give the attacker 3 s of trying.
  await new Promise((r) => setTimeout(r, 3000));
  const open = fs.readdirSync(`/proc/${pid}/fd`).length;
  assert.ok(open < 200, `the daemon holds ${open} descriptors under a /metrics flood (limit 300)`);
  const results = [];
  for (let i = 0; i < 3; i++) results.push(await run(['acquire', '--socket', d.socket, '--vm', UUID1, '--name', 'web1', disk]));
  // Expected: the free disk is locked. Actual: EMFILE opening its lock file, or EPIPE / ECONNRESET
  // from the control socket.
  for (const a of results) assert.is(a.code, 0, `acquire of a free disk while /metrics is held open: ${a.out}`);
});

test.run();
