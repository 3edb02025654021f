// `vmlockd config check` and `config show` through the real CLI.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, tmpdir } from '../helpers/daemon.js';

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

test.run();
