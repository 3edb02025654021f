// uri26 (decision 0025) against a real libvirtd (.ci/libvirt-up.sh with HOOK_SCRIPT=test/e2e/fixtures/qemu-hook):
// real TCG VMs on qemu:///system, locked by the real qemu hook or by the virsh event stream's
// reconcile; the daemon SIGKILLed and started again with a wrong libvirt_uri (test+unix:///default,
// served by the same libvirtd on the same host, knows none of these VMs): the locks stay held and a
// second vmlockd (another host id, same lockspace) is refused the disks; `vmlockd status` names the
// VMs. The VMs are then destroyed while no daemon runs, and a start with the right URI releases them.
// Skipped (with the reason) when VMLOCKD_E2E_LIBVIRT_STATE is unset or libvirtd is unreachable;
// with CI=true a skip is a failure.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, ROOT, TestDaemon, tmpdir, until } from '../helpers/daemon.js';

const STATE = process.env.VMLOCKD_E2E_LIBVIRT_STATE;
const HOOK_FIXTURE = path.join(ROOT, 'test', 'e2e', 'fixtures', 'qemu-hook');
const HOOK_MAIN = path.join(ROOT, 'dist', 'cli', 'hook-main.js');
/** The socket test/e2e/fixtures/qemu-hook passes to the hook. */
const HOOK_SOCKET = '/run/vmlockd-e2e/vmlockd.sock';
const QEMU = 'qemu:///system';
const WRONG = 'test+unix:///default';
const PREFIX = 'vmlockd-e2e-uri26-';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function virsh(uri: string, ...args: string[]): Run {
  const r = spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, LC_ALL: 'C' } });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
}

function skipReason(): string | null {
  if (!STATE) return 'VMLOCKD_E2E_LIBVIRT_STATE is not set (HOOK_SCRIPT=$PWD/test/e2e/fixtures/qemu-hook bash .ci/libvirt-up.sh DIR, then export VMLOCKD_E2E_LIBVIRT_STATE=DIR; .ci/run does this)';
  if (process.getuid?.() !== 0) return 'the libvirt e2e tests need root (qemu:///system, /etc/libvirt/hooks)';
  if (!fs.existsSync(MAIN) || !fs.existsSync(HOOK_MAIN)) return 'dist/ is not built (npm run build)';
  for (const uri of [QEMU, WRONG]) {
    const r = virsh(uri, 'list');
    if (r.code !== 0) return `libvirtd is not reachable at ${uri}: ${r.stderr.trim()}`;
  }
  let installed = '';
  try {
    installed = fs.realpathSync('/etc/libvirt/hooks/qemu');
  } catch {
    installed = '(none)';
  }
  if (installed !== fs.realpathSync(HOOK_FIXTURE)) return `/etc/libvirt/hooks/qemu is ${installed}, not ${HOOK_FIXTURE} (set HOOK_SCRIPT for .ci/libvirt-up.sh)`;
  return null;
}

interface LockRow {
  disk: string;
  vm: { uuid: string };
  source: string;
}
interface Kept {
  vm: string;
  reason: string;
  vouchedBy: { uri: string } | null;
}

const locksOf = (d: TestDaemon, uuid: string): LockRow[] => (JSON.parse(d.cli(['locks', '--json']).stdout) as LockRow[]).filter((l) => l.vm.uuid === uuid);
const keptOf = (d: TestDaemon): Kept[] => (JSON.parse(d.cli(['status', '--json']).stdout) as { libvirt: { keptLocksOf: Kept[] } | null }).libvirt?.keptLocksOf ?? [];
const reconciledCount = (d: TestDaemon): number => d.stderr.match(/reconciled:/g)?.length ?? 0;

const reason = skipReason();
if (reason !== null) {
  test('libvirt restart-uri e2e suite', () => {
    if (process.env.CI === 'true') assert.unreachable(`the libvirt restart-uri e2e suite cannot run in CI: ${reason}`);
    console.log(`  skipped: libvirt restart-uri e2e suite: ${reason}`);
  });
} else {
  let dir = '';
  const daemons: TestDaemon[] = [];
  const domains: string[] = [];

  test.before(() => {
    dir = tmpdir('vmlockd-e2e-uri26-');
    fs.chmodSync(dir, 0o755); // QEMU runs as libvirt-qemu
    fs.mkdirSync(path.dirname(HOOK_SOCKET), { recursive: true });
  });

  // Each test's daemons die with it, so a failed test leaves the state directories free for the next.
  test.after.each(async () => {
    for (const d of daemons.splice(0)) await d.kill('SIGKILL');
  });

  test.after(() => {
    for (const name of domains) {
      virsh(QEMU, 'destroy', name);
      virsh(QEMU, 'undefine', name);
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const lockspace = (): string => path.join(dir, 'lockspace');
  const hostA = async (uri: string | undefined): Promise<TestDaemon> => {
    const d = new TestDaemon({ stateDir: path.join(dir, 'a'), lockspace: lockspace(), hostId: 'e2e-host-a', socket: HOOK_SOCKET, extra: ['--log-level', 'info', ...(uri ? ['--libvirt', uri] : [])] });
    daemons.push(d);
    return d.start();
  };
  const hostB = async (): Promise<TestDaemon> => {
    const b = new TestDaemon({ stateDir: path.join(dir, 'b'), lockspace: lockspace(), hostId: 'e2e-host-b', socket: path.join(dir, 'b.sock') });
    daemons.push(b);
    return b.start();
  };
  /** A defined (not started) qemu VM on its own qcow2. */
  const vm = (tag: string): { name: string; uuid: string; disk: string } => {
    const v = { name: `${PREFIX}${tag}`, uuid: randomUUID(), disk: path.join(dir, `${tag}.qcow2`) };
    const img = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', v.disk, '16M'], { encoding: 'utf8' });
    assert.is(img.status, 0, img.stderr);
    const xml = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8').replace('NAME', v.name).replace('UUID', v.uuid).replace('DISK', v.disk);
    const f = path.join(dir, `${tag}.xml`);
    fs.writeFileSync(f, xml);
    const r = virsh(QEMU, 'define', f);
    assert.is(r.code, 0, r.stderr);
    domains.push(v.name);
    return v;
  };

  /** The wrong-URI start: the VM keeps its lock, the other host is refused, status and the log name it. */
  async function wrongRestartKeeps(a: TestDaemon, v: { name: string; uuid: string; disk: string }, why: string): Promise<TestDaemon> {
    await a.kill('SIGKILL');
    const w = await hostA(WRONG);
    await until('the wrong libvirt\'s first reconcile', () => reconciledCount(w) > 0, 60_000);
    const held = locksOf(w, v.uuid);
    const b = await hostB();
    const other = b.cli(['acquire', '--vm', randomUUID(), '--name', 'intruder', v.disk]);
    await b.kill('SIGTERM');
    assert.is(held.length, 1, `${v.name} (running on ${QEMU}) lost its lock at a restart with libvirt_uri ${WRONG}; the other host's acquire: ${other.code} ${other.stdout}${other.stderr}\n${w.stderr.slice(-2000)}`);
    assert.is(other.code, 3, `another host was granted ${v.name}'s disk: ${other.stdout}${other.stderr}`);
    assert.match(other.stdout + other.stderr, 'e2e-host-a');
    assert.is(virsh(QEMU, 'domstate', v.name).stdout.trim(), 'running');
    assert.ok(keptOf(w).some((k) => k.vm === v.uuid && k.reason === why), JSON.stringify(keptOf(w)));
    assert.match(w.stderr, `VM ${v.name} (uuid ${v.uuid}) is not running`);
    return w;
  }

  /** The VM is destroyed while no daemon runs; a start with the right URI releases its lock. */
  async function rightRestartReleases(w: TestDaemon, v: { name: string; uuid: string; disk: string }): Promise<void> {
    await w.kill('SIGKILL');
    assert.is(virsh(QEMU, 'destroy', v.name).code, 0); // the hook's release end finds no vmlockd: libvirt goes on
    const r = await hostA(QEMU);
    await until(`${v.name}'s lock released by the reconcile`, () => locksOf(r, v.uuid).length === 0, 60_000);
    const b = await hostB();
    const now = b.cli(['acquire', '--vm', randomUUID(), '--name', 'next', v.disk]);
    assert.is(now.code, 0, now.stdout + now.stderr);
    await b.kill('SIGKILL');
    await r.kill('SIGKILL');
  }

  test('a VM the qemu hook locked keeps its lock through a restart with a wrong libvirt_uri; a restart with the right one after its destroy releases it', async () => {
    const v = vm('hook');
    const a = await hostA(undefined);
    const started = virsh(QEMU, 'start', v.name);
    assert.is(started.code, 0, started.stderr);
    assert.equal(locksOf(a, v.uuid).map((l) => l.source), ['hook']);
    const w = await wrongRestartKeeps(a, v, 'not-hook-libvirt');
    assert.match(w.stderr, 'the qemu hook took its locks for qemu:///system on host');
    await rightRestartReleases(w, v);
  });

  test('a VM the event stream locked keeps its lock through a restart with a wrong libvirt_uri; a restart with the right one after its destroy releases it', async () => {
    const v = vm('stream');
    let a = await hostA(undefined);
    const started = virsh(QEMU, 'start', v.name);
    assert.is(started.code, 0, started.stderr);
    // Leave only the event stream's lock: free the hook's, then a start on qemu:///system reconciles.
    assert.is(a.cli(['release', '--vm', v.uuid]).code, 0);
    await a.kill('SIGKILL');
    a = await hostA(QEMU);
    await until('the reconcile to lock the running VM', () => locksOf(a, v.uuid).some((l) => l.source === 'virsh-reconcile'), 60_000);
    await until('its reconcile to finish', () => reconciledCount(a) > 0, 60_000);
    const w = await wrongRestartKeeps(a, v, 'other-libvirt');
    assert.ok(keptOf(w).some((k) => k.vm === v.uuid && k.vouchedBy?.uri === QEMU));
    assert.match(w.stderr, `answered for by libvirt ${QEMU} on host`);
    await rightRestartReleases(w, v);
  });
}

test.run();
