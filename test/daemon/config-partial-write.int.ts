// A config file rewritten in place (shell `>`, an editor with backupcopy=yes, a template engine that
// streams: truncate, then write) can be read half-written. Such a file without its
// file_lockspace_dir line is a valid config whose lockspace is the local default
// <state_dir>/lockspace: applied live (no lock held at that moment), a VM locked then would be locked
// where no other host looks, and the change back would be refused because of that very lock
// (review25a F11). A live reload never moves a naming key to its default, and judges a file only
// once two reads agree (docs/decisions/0022).
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, tmpdir, until } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

function rejections(d: TestDaemon): string[] {
  settled(d.opts.stateDir);
  const db = new Database(path.join(d.opts.stateDir, 'journal.db'), { readonly: true });
  try {
    return (db.prepare("SELECT payload FROM facts WHERE kind = 'ConfigRejected' ORDER BY seq").all() as Array<{ payload: string }>).map((r) => r.payload);
  } finally {
    db.close();
  }
}

test('a config file caught half-written (its file_lockspace_dir line not there yet) never moves the host off the shared lockspace', async () => {
  const dir = tmpdir();
  const shared = path.join(dir, 'shared-ls');
  const disk = path.join(dir, 'disk.img');
  fs.writeFileSync(disk, 'image');
  const full = `# managed by deploy\nlog_level = 3\nfile_lockspace_dir = "${shared}"\n`;
  const confA = path.join(dir, 'a.conf');
  fs.writeFileSync(confA, full);
  const a = await new TestDaemon({ stateDir: path.join(dir, 'state-a'), hostId: 'hv-a', extra: ['--config', confA] }).start();
  running.push(a);
  const b = await new TestDaemon({ stateDir: path.join(dir, 'state-b'), hostId: 'hv-b', lockspace: shared }).start();
  running.push(b);
  const lockspaceOf = () => (JSON.parse(a.cli(['status', '--json']).stdout) as { lockspace: string }).lockspace;
  assert.is(lockspaceOf(), shared);
  // The deploy tool rewrites the same content in place: truncate, the first lines, ... (it stalls here).
  const fd = fs.openSync(confA, 'w');
  fs.writeSync(fd, '# managed by deploy\nlog_level = 3\n');
  // The half-written file is read, judged and refused (before the fix it was applied within 50 ms).
  await until('the half-written file judged', () => lockspaceOf() !== shared || rejections(a).some((p) => p.includes('file_lockspace_dir is no longer set')), 20_000);
  assert.is(lockspaceOf(), shared, 'the half-written file moved hv-a to its local default lockspace');
  // A VM starts on hv-a meanwhile: it is locked on the shared lockspace.
  const r1 = a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', disk]);
  assert.is(r1.code, 0, r1.stderr);
  fs.writeSync(fd, `file_lockspace_dir = "${shared}"\n`);
  fs.closeSync(fd);
  assert.is(fs.readFileSync(confA, 'utf8'), full);
  const r2 = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]);
  assert.is(r2.code, 3, `hv-a runs on lockspace ${lockspaceOf()} while its config says ${shared}; vm1 holds the disk on hv-a and vm2 on hv-b was granted it: ${r2.stdout}${r2.stderr}`);
  assert.is(lockspaceOf(), shared);
});

test('a lockspace line removed for good is refused too, with no lock held; an explicit value applies', async () => {
  const dir = tmpdir();
  const shared = path.join(dir, 'shared-ls');
  const conf = path.join(dir, 'a.conf');
  fs.writeFileSync(conf, `log_level = 3\nfile_lockspace_dir = "${shared}"\n`);
  const a = await new TestDaemon({ stateDir: path.join(dir, 'state-a'), hostId: 'hv-a', extra: ['--config', conf] }).start();
  running.push(a);
  const status = () => JSON.parse(a.cli(['status', '--json']).stdout) as { lockspace: string; logLevel: string };
  fs.writeFileSync(conf, `log_level = 2\n`);
  await until('log_level 2 applied', () => status().logLevel === 'info', 20_000);
  assert.is(status().lockspace, shared, 'the lockspace moved to its default on a removed line');
  const why = rejections(a).find((p) => p.includes('file_lockspace_dir is no longer set'));
  assert.ok(why, 'no ConfigRejected naming file_lockspace_dir');
  assert.match(why!, path.join(dir, 'state-a', 'lockspace'));
  // The operator means it: naming the default explicitly moves the (lock-free) host there.
  const local = path.join(dir, 'state-a', 'lockspace');
  fs.writeFileSync(conf, `log_level = 2\nfile_lockspace_dir = "${local}"\n`);
  await until('the explicit lockspace applied', () => status().lockspace === local, 20_000);
});

test.run();
