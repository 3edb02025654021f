// review28b (proto28, debdd05: a connection's idle is now idleOf()/settled(), its calls answered by
// callback): a client that pipelined hundreds of ACQUIREs in one write while `serve --takeover`
// happens. The call in flight is answered by the old daemon, the frames read but not dispatched
// travel with the connection, and the new daemon answers the rest on the same connection: every
// reply once, in serial order, and every lock answered OK held by the new daemon.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { ACQUIRE_FLAG, FrameReader, PROC, decodeReply, encodeCall } from '../../src/events/virtlockd/codec.js';
import { TestDaemon, tmpdir, until } from '../helpers/daemon.js';
import { UUID_A } from '../helpers/protocol-serve.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

test('pipelined ACQUIREs across serve --takeover: every reply once, in order, on the same connection; every OK held by the new daemon', async () => {
  const root = tmpdir('vmlockd-r28b-takeover-pipe-');
  const vsock = path.join(root, 'run', 'virtlockd-sock');
  const leases = path.join(root, 'leases');
  const opts = { stateDir: path.join(root, 'state'), lockspace: path.join(root, 'lockspace'), hostId: 'hv-r28b', socket: path.join(root, 'vmlockd.sock'), extra: ['--virtlockd-socket', vsock] };
  const cur = new TestDaemon(opts);
  running.push(await cur.start());
  await until('the virtlockd socket', () => fs.existsSync(vsock));
  const lv = await LockClient.connect(vsock);
  await lv.createLockspace(leases);
  await lv.close();
  const sock = net.createConnection(vsock);
  sock.on('error', () => undefined);
  await new Promise<void>((r) => sock.once('connect', r));
  const reader = new FrameReader();
  const replies: Array<{ serial: number; proc: number; ok: boolean }> = [];
  sock.on('data', (c: Buffer) => {
    for (const f of reader.push(c)) {
      if (f.kind !== 'frame') continue;
      const d = decodeReply(f.bytes);
      replies.push({ serial: d.header.serial, proc: d.header.proc, ok: d.kind !== 'error' });
    }
  });
  const N = Number(process.env.R28B_N ?? 600);
  const frames = [encodeCall(PROC.REGISTER, 1, { owner: { uuid: UUID_A, name: 'vm-a', id: 1, pid: 4_000_000 }, flags: 0 })];
  for (let k = 2; k <= N + 1; k++) frames.push(encodeCall(PROC.ACQUIRE_RESOURCE, k, { path: leases, name: `d${k}`, flags: ACQUIRE_FLAG.AUTOCREATE }));
  const next = new TestDaemon({ ...opts, extra: [...opts.extra, '--takeover'] });
  running.push(next);
  sock.write(Buffer.concat(frames));
  await until('some replies', () => replies.length > 5, 20_000);
  await next.start(60_000);
  assert.equal(await cur.exit!, { code: 0, signal: null }, `old daemon: ${cur.stderr}`);
  await until(`all ${N + 1} replies (${replies.length} so far)`, () => replies.length >= N + 1, 60_000);
  await new Promise((r) => setTimeout(r, 300));
  assert.is(replies.length, N + 1, 'every reply once');
  for (let i = 0; i < replies.length; i++) if (replies[i]!.serial !== i + 1) assert.unreachable(`reply ${i} has serial ${replies[i]!.serial}`);
  const bad = replies.filter((r) => !r.ok);
  assert.equal(bad, [], 'every call answered OK');
  const held = (JSON.parse(next.cli(['locks', '--json']).stdout) as unknown[]).length;
  assert.is(held, N, 'every acquired lock held by the new daemon');
  const st = JSON.parse(next.cli(['status', '--json']).stdout);
  console.log(`r28b takeover: ${N} pipelined acquires, started ${JSON.stringify({ how: st.started.how, adopted: st.started.adopted, connections: st.started.connections })}`);
  sock.destroy();
  fs.rmSync(root, { recursive: true, force: true });
});

test.run();
