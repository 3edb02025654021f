// Invariant 9 without systemd: `vmlockd serve --takeover` takes the running daemon's lock
// descriptors over (SCM_RIGHTS); another host hammering `acquire` on the held disks through the
// whole hand-off gets none, 20 times over; the old daemon exits 0.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { native } from '../../src/engine/native.js';
import { TestDaemon, UUID1, UUID2, UUID3, cli, tmpdir, until } from '../helpers/daemon.js';
import { HandoffPlayer } from '../helpers/handoff.js';

const test = suite('serve --takeover: a hand-off with no gap');
const running: TestDaemon[] = [];
let hammering = false;

test.after.each(async () => {
  hammering = false;
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function site() {
  const root = tmpdir('vmlockd-takeover-');
  const lockspace = path.join(root, 'lockspace');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const disks = [1, 2, 3, 4].map((i) => path.join(images, `d${i}.qcow2`));
  for (const d of disks) fs.writeFileSync(d, '');
  const a = { stateDir: path.join(root, 'state-a'), lockspace, hostId: 'hv-to-a', socket: path.join(root, 'a.sock') };
  return { root, lockspace, images, disks, a };
}

function hammer(socket: string, disks: string[]) {
  const out = { attempts: 0, stolen: [] as string[] };
  hammering = true;
  const done = (async () => {
    while (hammering) {
      for (const d of disks) {
        try {
          const r = await call(socket, 'POST', '/v1/acquire', { vm: { uuid: UUID2, name: 'vm-b' }, disks: [{ path: d }] });
          out.attempts++;
          if (r.status === 200 && (r.body as { status?: string }).status === 'ok') out.stolen.push(d);
        } catch {
          if (!hammering) return;
        }
      }
    }
  })();
  return { out, stop: async () => ((hammering = false), await done) };
}

test('another host hammering acquire on 4 held disks gets none through 20 take-overs; each old daemon exits 0', async () => {
  const s = site();
  let cur = new TestDaemon(s.a);
  running.push(await cur.start());
  const acq = cur.cli(['acquire', '--vm', UUID1, '--name', 'vm-a', ...s.disks]);
  assert.is(acq.code, 0, acq.stderr);
  const other = new TestDaemon({ stateDir: path.join(s.root, 'state-b'), lockspace: s.lockspace, hostId: 'hv-to-b', socket: path.join(s.root, 'b.sock') });
  running.push(await other.start());

  let total = 0;
  for (let i = 0; i < 20; i++) {
    const h = hammer(other.socket, s.disks);
    await until('the hammer running', () => h.out.attempts >= 4);
    const next = new TestDaemon({ ...s.a, extra: ['--takeover'] });
    running.push(next);
    await next.start(30_000);
    const exit = await cur.exit!;
    assert.equal(exit, { code: 0, signal: null }, `old daemon: ${cur.stderr}`);
    const seen = h.out.attempts;
    await until('the hammer after the hand-off', () => h.out.attempts >= seen + 4);
    await h.stop();
    total += h.out.attempts;
    assert.equal(h.out.stolen, [], `round ${i}: another host acquired ${h.out.stolen.join(', ')} during the hand-off`);
    const st = JSON.parse(next.cli(['status', '--json']).stdout);
    assert.is(st.locks, 4);
    assert.equal({ how: st.started.how, adopted: st.started.adopted, retaken: st.started.retaken, lost: st.started.lost }, { how: 'takeover', adopted: 4, retaken: 0, lost: 0 }, `round ${i}`);
    cur = next;
  }
  assert.ok(total >= 20 * 8, `the hammer ran (${total} attempts)`);
  // The last daemon still holds all four: the other host is refused; after its stop, it gets them.
  await cur.kill('SIGTERM');
  await until('the other host acquiring every disk after the stop', () => other.cli(['acquire', '--vm', UUID2, ...s.disks]).code === 0);
});

test('a new daemon that goes away half-way leaves the old one serving with every lock', async () => {
  const s = site();
  const cur = new TestDaemon(s.a);
  running.push(await cur.start());
  assert.is(cur.cli(['acquire', '--vm', UUID1, ...s.disks]).code, 0);
  // The new daemon's half of the protocol, then gone before STOP.
  const play = new HandoffPlayer(s.a.stateDir);
  play.send('TAKEOVER\n');
  play.readUntil('END', 10_000);
  assert.is(play.got.length, 4);
  play.goAway();
  // Closing our copies unlocked nothing: the old daemon still holds and serves.
  await until('the old daemon noticing', () => cur.stderr.includes('went away before taking over') || cur.stdout.includes('went away'), 10_000).catch(() => undefined);
  const other = new TestDaemon({ stateDir: path.join(s.root, 'state-b'), lockspace: s.lockspace, hostId: 'hv-to-b', socket: path.join(s.root, 'b.sock') });
  running.push(await other.start());
  for (const d of s.disks) assert.is(other.cli(['acquire', '--vm', UUID2, d]).code, 3, `${d} should still be held`);
  const more = path.join(s.images, 'd5.qcow2');
  fs.writeFileSync(more, '');
  assert.is(cur.cli(['acquire', '--vm', UUID3, more]).code, 0, 'the old daemon still serves');
  assert.is(JSON.parse(cur.cli(['status', '--json']).stdout).locks, 5);
});

/** The old daemon after a take-over that failed: the same process, serving again, every lock held. */
async function stillHolding(s: ReturnType<typeof site>, cur: TestDaemon, what: string): Promise<void> {
  await until(`the old daemon serving again (${what})`, () => cur.cli(['status', '--json']).code === 0, 20_000);
  assert.is(cur.proc!.exitCode, null, `the old daemon exited: ${cur.stderr}`);
  const st = JSON.parse(cur.cli(['status', '--json']).stdout);
  assert.is(st.pid, cur.proc!.pid, 'the old process serves');
  assert.is(st.locks, 4);
  const other = new TestDaemon({ stateDir: path.join(s.root, 'state-b'), lockspace: s.lockspace, hostId: 'hv-to-b', socket: path.join(s.root, 'b.sock') });
  running.push(await other.start());
  for (const d of s.disks) assert.is(other.cli(['acquire', '--vm', UUID2, d]).code, 3, `${what}: another host acquired ${d}`);
  const more = path.join(s.images, 'd5.qcow2');
  fs.writeFileSync(more, '');
  assert.is(cur.cli(['acquire', '--vm', UUID3, more]).code, 0, 'the old daemon takes commands again');
  // And it can still hand over afterwards.
  const next = new TestDaemon({ ...s.a, extra: ['--takeover'] });
  running.push(next);
  await next.start(30_000);
  assert.equal(await cur.exit!, { code: 0, signal: null }, cur.stderr);
  assert.is(JSON.parse(next.cli(['status', '--json']).stdout).locks, 5);
  for (const d of s.disks) assert.is(other.cli(['acquire', '--vm', UUID2, d]).code, 3, `${what}: another host acquired ${d} after the second take-over`);
}

function oneLine(r: { stderr: string }, re: RegExp): void {
  const lines = r.stderr.trim().split('\n');
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0]!, re, r.stderr);
}

test('a take-over the journal refuses (naming changed) exits 1 in one line; the old daemon keeps serving with every lock', async () => {
  const s = site();
  const cur = new TestDaemon(s.a);
  running.push(await cur.start());
  assert.is(cur.cli(['acquire', '--vm', UUID1, ...s.disks]).code, 0);
  const r = cli(new TestDaemon({ ...s.a, lockspace: path.join(s.root, 'lockspace-8'), extra: ['--takeover'] }).args());
  assert.is(r.code, 1, r.stdout + r.stderr);
  oneLine(r, /naming|lockspace/i);
  await stillHolding(s, cur, 'naming changed');
});

test('a take-over whose metrics port is in use exits 1 in one line; the old daemon keeps serving with every lock', async () => {
  const s = site();
  const cur = new TestDaemon(s.a);
  running.push(await cur.start());
  assert.is(cur.cli(['acquire', '--vm', UUID1, ...s.disks]).code, 0);
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (busy.address() as net.AddressInfo).port;
    const r = cli(new TestDaemon({ ...s.a, extra: ['--takeover', '--metrics-address', `127.0.0.1:${port}`] }).args());
    assert.is(r.code, 1, r.stdout + r.stderr);
    oneLine(r, /EADDRINUSE/);
  } finally {
    busy.close();
  }
  await stillHolding(s, cur, 'metrics port in use');
});

test('a new daemon that dies after STOP, before it is up, leaves the old one holding every lock; it serves again', async () => {
  const s = site();
  const cur = new TestDaemon(s.a);
  running.push(await cur.start());
  assert.is(cur.cli(['acquire', '--vm', UUID1, ...s.disks]).code, 0);
  // The new daemon's half of the protocol up to DONE, then gone (as a SIGKILL would close it).
  const play = new HandoffPlayer(s.a.stateDir).upToDone('TAKEOVER');
  // The old daemon has stopped serving; our copies are the only other holders. Close them all.
  play.goAway();
  await stillHolding(s, cur, 'new daemon gone before UP');
});

/**
 * Connect to `target` every few ms; count each outcome (a connection that opened, or its error code).
 * Each connection is dropped at once, but stays in the listen queue until a daemon accepts it: a
 * tight loop would fill the queue while no daemon accepts (EAGAIN on a Unix socket), which says
 * nothing about the hand-off.
 */
function connectLoop(target: () => net.NetConnectOpts) {
  const seen = new Map<string, number>();
  let on = true;
  const done = (async () => {
    while (on) {
      const code = await new Promise<string>((resolve) => {
        const c = net.connect(target());
        c.setTimeout(60_000, () => (c.destroy(), resolve('timeout')));
        c.once('connect', () => (c.destroy(), resolve('ok')));
        c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      seen.set(code, (seen.get(code) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return { seen, stop: async () => ((on = false), await done) };
}

test('clients connecting through take-overs wait in the listen queue: no ENOENT or ECONNREFUSED on the control, virtlockd and metrics sockets', async () => {
  const s = site();
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const vsock = path.join(s.root, 'virtlockd-sock');
  const extra = ['--virtlockd-socket', vsock, '--metrics-address', `127.0.0.1:${port}`];
  let cur = new TestDaemon({ ...s.a, extra });
  running.push(await cur.start());
  assert.is(cur.cli(['acquire', '--vm', UUID1, ...s.disks]).code, 0);
  const loops = {
    control: connectLoop(() => ({ path: s.a.socket })),
    virtlockd: connectLoop(() => ({ path: vsock })),
    metrics: connectLoop(() => ({ host: '127.0.0.1', port })),
  };
  // And whole requests on the control socket: each answered.
  const answered = { ok: 0, failed: [] as string[] };
  let asking = true;
  const asker = (async () => {
    while (asking) {
      // A new connection per request, as each `vmlockd` CLI process makes.
      const r = await new Promise<string>((resolve) => {
        const req = http.request({ socketPath: s.a.socket, path: '/v1/status', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`));
          res.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        });
        req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        req.end();
      });
      if (r === 'ok') answered.ok++;
      else answered.failed.push(r);
    }
  })();
  try {
    for (let i = 0; i < 3; i++) {
      const before = Object.fromEntries(Object.entries(loops).map(([k, l]) => [k, l.seen.get('ok') ?? 0]));
      const next = new TestDaemon({ ...s.a, extra: [...extra, '--takeover'] });
      running.push(next);
      await next.start(30_000);
      assert.equal(await cur.exit!, { code: 0, signal: null }, cur.stderr);
      cur = next;
      for (const [k, l] of Object.entries(loops)) await until(`${k} connections after take-over ${i}`, () => (l.seen.get('ok') ?? 0) >= before[k]! + 5, 30_000);
      const st = JSON.parse(cur.cli(['status', '--json']).stdout);
      assert.equal([st.started.how, st.started.adopted, st.locks], ['takeover', 4, 4], `take-over ${i}`);
    }
  } finally {
    asking = false;
    await asker;
    for (const l of Object.values(loops)) await l.stop();
  }
  for (const [k, l] of Object.entries(loops)) {
    const bad = [...l.seen].filter(([code]) => code !== 'ok');
    assert.equal(bad, [], `${k}: ${JSON.stringify([...l.seen])}`);
  }
  // A client that waits for its answer (as libvirt and the CLI do) gets one, every time.
  assert.ok(answered.ok > 0);
  assert.equal(answered.failed, [], 'control requests');
  assert.is(JSON.parse(cur.cli(['status', '--json']).stdout).locks, 4);
});

test('--takeover with no daemon running starts normally', async () => {
  const s = site();
  const d = new TestDaemon({ ...s.a, extra: ['--takeover'] });
  running.push(await d.start());
  assert.is(JSON.parse(d.cli(['status', '--json']).stdout).started.how, 'fresh');
});

test.run();
