// The found scan (decisions/0002) reads the lockspaces libvirt created over the virtlockd protocol
// too (CREATE_LOCKSPACE, explicit <lease>s named by lease name), known from the protocol server's
// registry and the journal's grants: a lease such a lockspace holds that a restored journal forgot is
// held again or reported (found by review 2). A lockspace only a lost state directory knew cannot be
// known: the start says so.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { TestDaemon, tmpdir, until } from '../helpers/daemon.js';
import { UUID_A } from '../helpers/protocol-serve.js';
import { RemoteClient } from '../helpers/remote-client.js';

const test = suite('found scan: protocol lockspaces');
const running: TestDaemon[] = [];
const clients: RemoteClient[] = [];
test.after.each(async () => {
  for (const c of clients.splice(0)) await c.kill();
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

/** Copies a state directory as a backup would (sockets are not files to back up). */
function copyState(from: string, to: string): void {
  fs.rmSync(to, { recursive: true, force: true });
  fs.cpSync(from, to, { recursive: true, filter: (src) => !fs.lstatSync(src).isSocket() });
}

async function site(prefix: string) {
  const root = tmpdir(prefix);
  const vsock = path.join(root, 'run', 'virtlockd-sock');
  const leases = path.join(root, 'leases');
  const opts = { stateDir: path.join(root, 'state'), lockspace: path.join(root, 'lockspace'), hostId: 'hv-r2', socket: path.join(root, 'vmlockd.sock'), extra: ['--virtlockd-socket', vsock] };
  const d = new TestDaemon(opts);
  running.push(await d.start());
  await until('the virtlockd socket', () => fs.existsSync(vsock));
  // libvirtd's plugin creates the lockspace of an explicit <lease> on a connection of its own.
  const lv = await LockClient.connect(vsock);
  await lv.createLockspace(leases);
  await lv.close();
  return { root, vsock, leases, opts, d };
}

async function acquireLease(s: Awaited<ReturnType<typeof site>>): Promise<RemoteClient> {
  const q = await RemoteClient.spawn(s.vsock);
  clients.push(q);
  assert.equal(await q.do({ op: 'register', uuid: UUID_A, name: 'vm-a', pid: 'self' }), { ok: true });
  assert.equal(await q.do({ op: 'acquire', path: s.leases, name: 'a1', autocreate: true }), { ok: true });
  return q;
}

// Control: NORESTORE=1 (same steps, journal not restored) passes: the lease is re-taken.
test('a protocol lease the restored journal forgot is held again or reported LeaseLost, never silently free', async () => {
  const s = await site('vmlockd-found-proto-');
  await s.d.kill('SIGKILL');
  // The backup: the lockspace is known (the registry), the grant is not; the last fact is no clean stop.
  copyState(s.opts.stateDir, path.join(s.root, 'backup'));
  let d = new TestDaemon(s.opts);
  running.push(await d.start());
  await until('the virtlockd socket', () => fs.existsSync(s.vsock));
  const q = await acquireLease(s);
  await d.kill('SIGKILL');
  if (!process.env.NORESTORE) copyState(path.join(s.root, 'backup'), s.opts.stateDir);
  d = new TestDaemon(s.opts);
  running.push(await d.start());
  const locks = JSON.parse(d.cli(['locks', '--json']).stdout) as unknown[];
  const audit = d.cli(['audit', '--json', '--kind', 'LeaseLost,Reacquired', '--limit', '0']).stdout;
  assert.ok(locks.length > 0 && /"found":\s*true/.test(audit), `QEMU (pid ${q.pid}) still runs with lease a1 acknowledged; held now: ${JSON.stringify(locks)}; found facts: ${audit}; log: ${d.stderr}`);
  await until('the start log line', () => /FOUND 1 lock/.test(d.stderr), 15_000);
});

test('a lost state directory cannot name the protocol lockspaces: the start says their leases cannot be found', async () => {
  const s = await site('vmlockd-found-proto-lost-');
  await acquireLease(s);
  await s.d.kill('SIGKILL');
  fs.rmSync(s.opts.stateDir, { recursive: true });
  const d = new TestDaemon(s.opts);
  running.push(await d.start());
  // stderr is its own pipe: the line may arrive after "listening on" on stdout.
  await until('the scan names what it cannot find', () => /journal is empty \(lost, or a new state directory\).*cannot be found/.test(d.stderr));
});

test('a found protocol lease goes with its owner: its QEMU exits, the pid watch releases it (the close rule applies to found leases too)', async () => {
  const s = await site('vmlockd-found-proto-gone-');
  const q = await acquireLease(s);
  await s.d.kill('SIGKILL');
  // The journal is lost; the protocol registry (which owner pid took which lease) is not.
  for (const f of fs.readdirSync(s.opts.stateDir)) if (f.startsWith('journal')) fs.rmSync(path.join(s.opts.stateDir, f), { recursive: true, force: true });
  const d = new TestDaemon(s.opts);
  running.push(await d.start());
  await until('the lease found again', () => (JSON.parse(d.cli(['locks', '--json']).stdout) as unknown[]).length === 1);
  await q.kill();
  await until('the lease released once its owner is gone', () => (JSON.parse(d.cli(['locks', '--json']).stdout) as unknown[]).length === 0, 20_000).catch((e: Error) => {
    throw new Error(`${e.message}\nheld: ${d.cli(['locks', '--json']).stdout}\nlog: ${d.stderr}`);
  });
  assert.match(d.cli(['audit', '--json', '--kind', 'OwnerGone', '--limit', '0']).stdout, /"released":\s*1/);
});

test.run();
