// A start in a new boot (issue 11.3): locks whose owner no live process stands for (control API,
// JSON lines) are released and journaled, not re-taken forever; after_reboot = "retake" keeps them.
// The reboot is simulated with VMLOCKD_BOOT_ID_FILE (the boot id the daemon reads).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, UUID3, tmpdir } from '../helpers/daemon.js';

const test = suite('a start after a reboot');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

async function scenario(opts: { conf?: string; reboot: boolean }) {
  const root = tmpdir('vmlockd-reboot-');
  const images = path.join(root, 'images');
  fs.mkdirSync(images);
  const [a, b] = ['a', 'b'].map((n) => path.join(images, `${n}.img`));
  for (const d of [a!, b!]) fs.writeFileSync(d, '');
  const bootFile = path.join(root, 'boot_id');
  fs.writeFileSync(bootFile, '11111111-aaaa-4aaa-8aaa-111111111111\n');
  const extra = opts.conf ? ['--config', opts.conf] : [];
  const opt = { stateDir: path.join(root, 'state'), lockspace: path.join(root, 'lockspace'), hostId: 'hv-boot', extra, env: { VMLOCKD_BOOT_ID_FILE: bootFile } };
  const d1 = new TestDaemon(opt);
  running.push(await d1.start());
  assert.is(d1.cli(['acquire', '--vm', UUID1, a!]).code, 0);
  const ev = d1.cli(['ingest', '-'], { input: JSON.stringify({ type: 'started', vm: { uuid: UUID2 }, disks: [{ path: b! }] }) + '\n' });
  assert.is(ev.code, 0, ev.stderr + ev.stdout);
  await d1.kill('SIGKILL');
  if (opts.reboot) fs.writeFileSync(bootFile, '22222222-bbbb-4bbb-8bbb-222222222222\n');
  const d2 = new TestDaemon(opt);
  running.push(await d2.start());
  const locks = JSON.parse(d2.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string } }>;
  const facts = JSON.parse(d2.cli(['audit', '--kind', 'LockReleased,DaemonStarted', '--json', '--limit', '0']).stdout) as Array<{ kind: string; payload: Record<string, any> }>;
  // The other host's view: can it take the disks?
  const other = new TestDaemon({ stateDir: path.join(root, 'state-b'), lockspace: opt.lockspace, hostId: 'hv-other', socket: path.join(root, 'b.sock') });
  running.push(await other.start());
  const free = [a!, b!].filter((d) => other.cli(['check', '--vm', UUID3, d]).code === 0);
  return { locks, facts, free, a: a!, b: b! };
}

test('another boot id: control-API and JSON-lines locks are released and journaled; another host may take the disks', async () => {
  const r = await scenario({ reboot: true });
  assert.equal(r.locks, []);
  const rel = r.facts.filter((f) => f.kind === 'LockReleased' && f.payload.source === 'reboot');
  assert.equal(rel.map((f) => f.payload.owner.uuid).sort(), [UUID1, UUID2].sort());
  assert.match(rel[0]!.payload.reason, 'the host rebooted');
  const starts = r.facts.filter((f) => f.kind === 'DaemonStarted');
  assert.is(starts.at(-1)!.payload.bootId, '22222222-bbbb-4bbb-8bbb-222222222222');
  assert.equal(r.free.sort(), [r.a, r.b].sort());
});

test('the same boot: every lock is re-taken', async () => {
  const r = await scenario({ reboot: false });
  assert.is(r.locks.length, 2);
  assert.equal(r.free, []);
});

test('after_reboot = "retake": locks are re-taken after a reboot too', async () => {
  const conf = path.join(tmpdir(), 'vmlockd.conf');
  fs.writeFileSync(conf, 'after_reboot = "retake"\n');
  const r = await scenario({ reboot: true, conf });
  assert.is(r.locks.length, 2);
  assert.equal(r.free, []);
});

test.run();
