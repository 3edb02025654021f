// The qemu hook as libvirt runs it: a real process (dist/cli/hook-main.js) with the domain XML on
// stdin, against a real daemon. Needs `npm run build`.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, UUID2, tmpdir } from '../helpers/daemon.js';

const HOOK = path.join(ROOT, 'dist', 'cli', 'hook-main.js');
const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');

function domainXml(name: string, uuid: string, disk: string): string {
  return TEMPLATE.replace('NAME', name).replace('UUID', uuid).replace('DISK', disk);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run the hook; `stdin: null` leaves stdin open and unwritten (a hook that reads it would hang). */
function hook(args: string[], stdin: string | null, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, [HOOK, 'qemu', ...args], { env: { ...process.env, VMLOCKD_SOCKET: '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const killer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.on('exit', (code) => {
      clearTimeout(killer);
      p.stdin.destroy();
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
    p.stdin.on('error', () => {});
    if (stdin !== null) p.stdin.end(stdin);
  });
}

let dir: string;
let d: TestDaemon;
let disk: string;

test.before(async () => {
  dir = tmpdir('vmlockd-hook-');
  disk = path.join(dir, 'disk.qcow2');
  fs.writeFileSync(disk, '');
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'hv1' }).start();
});

test.after(async () => {
  await d.kill('SIGTERM');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('given prepare begin, then the disks are locked and nothing is printed', async () => {
  const r = await hook(['--socket', d.socket, '--', 'vm1', 'prepare', 'begin', '-'], domainXml('vm1', UUID1, disk));
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, '');
  const locks = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ vm: { uuid: string; name: string }; source: string }>;
  assert.is(locks.length, 1);
  assert.equal(locks[0]!.vm, { uuid: UUID1, name: 'vm1' });
  assert.is(locks[0]!.source, 'hook');
});

test('given the disk is held, then prepare begin of another VM exits non-zero with ONE line naming disk, holder and how to inspect', async () => {
  const r = await hook(['vm2', 'prepare', 'begin', '-', '--socket', d.socket], domainXml('vm2', UUID2, disk));
  assert.is(r.code, 3);
  assert.is(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0]!, `vmlockd: cannot start VM vm2: disk ${disk} is held exclusively by VM vm1 (uuid ${UUID1}) on host hv1`);
  assert.match(lines[0]!, `inspect with \`vmlockd locks\` on host hv1 or \`vmlockd audit --disk ${disk}\``);
});

test('given migrate begin or restore begin, then the disks are only checked and stdout stays empty (libvirt reads it as XML)', async () => {
  const m = await hook(['--socket', d.socket, '--', 'vm2', 'restore', 'begin', '-'], domainXml('vm2', UUID2, disk));
  assert.is(m.code, 3);
  assert.is(m.stdout, '');
  assert.match(m.stderr, /cannot restore VM vm2/);
  const free = path.join(dir, 'free.qcow2');
  const ok = await hook(['--socket', d.socket, '--', 'vm3', 'migrate', 'begin', '-'], domainXml('vm3', '33333333-3333-4333-8333-333333333333', free));
  assert.is(ok.code, 0, ok.stderr);
  assert.is(ok.stdout, '');
  const locks = JSON.parse(d.cli(['locks', '--json']).stdout) as unknown[];
  assert.is(locks.length, 1, 'a check takes nothing');
});

test('given release end, then the VM\'s locks are released', async () => {
  const r = await hook(['--socket', d.socket, '--', 'vm1', 'release', 'end', '-'], domainXml('vm1', UUID1, disk));
  assert.is(r.code, 0, r.stderr);
  assert.equal(JSON.parse(d.cli(['locks', '--json']).stdout), []);
});

test('given calls with no lock meaning, then the hook exits 0 at once without reading stdin or the socket', async () => {
  for (const call of [['start', 'begin'], ['started', 'begin'], ['stopped', 'end'], ['reconnect', 'begin'], ['attach', 'begin'], ['future-op', 'begin']]) {
    const r = await hook(['--socket', '/nonexistent/sock', '--bogus-option', '--', 'vm1', ...call, '-'], null);
    assert.is(r.code, 0, `${call.join(' ')}: ${r.stderr}`);
    assert.is(r.stderr, '');
  }
});

test('given the daemon is unreachable, then prepare begin fails closed and says why; --fail-open lets it through with a warning', async () => {
  const xml = domainXml('vm1', UUID1, disk);
  const closed = await hook(['--socket', path.join(dir, 'nobody.sock'), '--', 'vm1', 'prepare', 'begin', '-'], xml);
  assert.is(closed.code, 1);
  assert.match(closed.stderr, /cannot start VM vm1: vmlockd is unreachable at .*nobody\.sock \(no socket there\)/);
  const open = await hook(['--socket', path.join(dir, 'nobody.sock'), '--fail-open', '--', 'vm1', 'prepare', 'begin', '-'], xml);
  assert.is(open.code, 0);
  assert.match(open.stderr, /--fail-open lets VM vm1 start WITHOUT disk locks/);
});

test('given no --socket, then $VMLOCKD_SOCKET is used', async () => {
  const r = await hook(['vm1', 'prepare', 'begin', '-'], domainXml('vm1', UUID1, disk), { VMLOCKD_SOCKET: d.socket });
  assert.is(r.code, 0, r.stderr);
  await hook(['vm1', 'release', 'end', '-'], domainXml('vm1', UUID1, disk), { VMLOCKD_SOCKET: d.socket });
});

test('given bad domain XML, then the hook exits 2 naming the problem and the journal records InputRejected', async () => {
  const r = await hook(['--socket', d.socket, '--', 'vm1', 'prepare', 'begin', '-'], '<domain><name>vm1</name>');
  assert.is(r.code, 2);
  assert.match(r.stderr, /cannot start VM vm1: domain XML is not well-formed/);
  const facts = JSON.parse(d.cli(['audit', '--kind', 'InputRejected', '--json']).stdout) as Array<{ payload: { source: string } }>;
  assert.ok(facts.some((f) => f.payload.source === 'hook'));
});

test('given wrong usage, then exit 2 with the usage line', async () => {
  const r = await hook(['vm1'], '');
  assert.is(r.code, 2);
  assert.match(r.stderr, /usage: vmlockd hook qemu NAME OP SUBOP/);
});

test.run();
