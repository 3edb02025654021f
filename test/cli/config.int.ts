// `vmlockd config check` and `config show` through the real CLI.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

test('config check: exit 0 for good files, exit 2 with file:line for a bad one', () => {
  const dir = tmpdir();
  const good = path.join(dir, 'qemu-lockd.conf');
  fs.writeFileSync(good, '# sample\nauto_disk_leases = 1\nfile_lockspace_dir = "/var/lib/libvirt/lockd/files"\n');
  const ok = cli(['config', 'check', good]);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, `${good}: ok`);
  const bad = path.join(dir, 'bad.conf');
  fs.writeFileSync(bad, 'max_clients = 10\nfile_lockspace_di = "/x"\n');
  const r = cli(['config', 'check', good, bad]);
  assert.is(r.code, 2);
  assert.match(r.stdout + r.stderr, `${bad}:2:`);
  assert.match(r.stdout + r.stderr, 'did you mean "file_lockspace_dir"');
});

test('config check and serve: a file of deeply nested lists is one clear line with the file and line, exit 2, no stack', () => {
  const dir = tmpdir();
  const deep = path.join(dir, 'deep.conf');
  fs.writeFileSync(deep, `max_clients = ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`);
  for (const args of [['config', 'check', deep], ['serve', '--config', deep, '--state-dir', path.join(dir, 'state')]]) {
    const r = cli(args);
    assert.is(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, `${deep}:1: lists for "max_clients" are nested deeper than 32 levels`);
    assert.not.match(r.stdout + r.stderr, /RangeError|call stack|    at /);
  }
});

test('config show: later files override earlier ones, flags override files, and each value says where it came from', () => {
  const dir = tmpdir();
  const a = path.join(dir, 'a.conf');
  const b = path.join(dir, 'b.conf');
  fs.writeFileSync(a, 'max_clients = 10\nlog_level = 1\n');
  fs.writeFileSync(b, 'max_clients = 20\n');
  const r = cli(['config', 'show', '--config', a, '--config', b, '--host-id', 'hv9']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`max_clients = 20\\s+# ${b.replace(/[.]/g, '\\.')}:1`));
  assert.match(r.stdout, new RegExp(`log_level = .*# ${a.replace(/[.]/g, '\\.')}:2`));
  assert.match(r.stdout, /host_id = "hv9"\s+# --host-id/);
});

let daemon: TestDaemon | undefined;
test.after.each(async () => {
  await daemon?.kill('SIGKILL');
  daemon = undefined;
});

test('config show with a running daemon: the config in effect (flags, live changes), marking what the files say differently', async () => {
  const dir = tmpdir();
  const conf = path.join(dir, 'vmlockd.conf');
  fs.writeFileSync(conf, 'verify_interval = 10\n');
  daemon = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'h1', extra: ['--config', conf] });
  const d = daemon;
  // A live change that applies, and one a running daemon refuses (host_id needs a restart).
  fs.writeFileSync(conf, 'verify_interval = 5\nhost_id = "other"\n');
  await until('the reload', () => {
    const st = JSON.parse(d.cli(['status', '--json']).stdout) as { verifyIntervalMs: number };
    return st.verifyIntervalMs === 5000;
  });
  const r = cli(['config', 'show', '--socket', d.socket]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /^# in effect in the running daemon \(pid \d+\); files: .*vmlockd\.conf; \d+ key\(s\) differ from the files/);
  assert.match(r.stdout, /host_id = "h1"\s+# in effect in the daemon \(pid \d+\), from --host-id; the files say "other" \(.*vmlockd\.conf:2\)/);
  assert.match(r.stdout, /verify_interval = 5\s+# .*vmlockd\.conf:1\n/);
  const j = JSON.parse(cli(['config', 'show', '--socket', d.socket, '--json']).stdout) as { from: string; config: { hostId: string }; differences: Array<{ key: string; files: unknown }> };
  assert.is(j.from, 'daemon');
  assert.is(j.config.hostId, 'h1');
  assert.equal(j.differences.find((x) => x.key === 'hostId')?.files, 'other', 'the refused host_id is what the file says, not what is in effect');
  assert.not.ok(j.differences.some((x) => x.key === 'verifyIntervalMs'), 'the applied change is in both');
  assert.ok(j.differences.some((x) => x.key === 'fileLockspaceDir'), 'a start flag differs from the files and is marked');
});

test.run();
