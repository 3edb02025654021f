// review25c F1 (regression test, fixed in classifyChange): the F11 fix (5601d8d, decision 0022) refuses a live reload that moves a naming key to its
// built-in default, but not one that moves it to an EARLIER config file's value. With
// `--config base.conf --config site.conf` (documented: later files override earlier ones), site.conf
// caught half-written without its file_lockspace_dir line is a valid config whose lockspace is
// base.conf's (here a host-local directory): applied live while no lock is held, hv-a then locks
// vm1's disk where hv-b never looks, and hv-b is granted the same disk. Same stall as
// test/daemon/config-partial-write.int.ts (a deploy tool that truncates, writes the first lines, stalls).
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

test('an override file caught half-written never moves the host to an earlier file\'s lockspace', async () => {
  const dir = tmpdir();
  const shared = path.join(dir, 'shared-ls');
  const local = path.join(dir, 'local-ls');
  const disk = path.join(dir, 'disk.img');
  fs.writeFileSync(disk, 'image');
  const base = path.join(dir, 'base.conf');
  fs.writeFileSync(base, `file_lockspace_dir = "${local}"\n`);
  const full = `# managed by deploy\nlog_level = 3\nfile_lockspace_dir = "${shared}"\n`;
  const site = path.join(dir, 'site.conf');
  fs.writeFileSync(site, full);
  const a = await new TestDaemon({ stateDir: path.join(dir, 'state-a'), hostId: 'hv-a', extra: ['--config', base, '--config', site] }).start();
  running.push(a);
  const b = await new TestDaemon({ stateDir: path.join(dir, 'state-b'), hostId: 'hv-b', lockspace: shared }).start();
  running.push(b);
  const lockspaceOf = () => (JSON.parse(a.cli(['status', '--json']).stdout) as { lockspace: string }).lockspace;
  assert.is(lockspaceOf(), shared);
  // The deploy tool rewrites site.conf in place: truncate, the first lines, ... (it stalls here).
  const fd = fs.openSync(site, 'w');
  fs.writeSync(fd, '# managed by deploy\nlog_level = 3\n');
  await until('the half-written file judged', () => lockspaceOf() !== shared || rejections(a).some((p) => p.includes('file_lockspace_dir')), 20_000);
  const moved = lockspaceOf();
  assert.ok(rejections(a).some((p) => p.includes('file_lockspace_dir is no longer set by') && p.includes(site)), JSON.stringify(rejections(a)));
  // A VM starts on hv-a meanwhile.
  const r1 = a.cli(['acquire', '--vm', UUID1, '--name', 'vm1', disk]);
  assert.is(r1.code, 0, r1.stderr);
  fs.writeSync(fd, `file_lockspace_dir = "${shared}"\n`);
  fs.closeSync(fd);
  const r2 = b.cli(['acquire', '--vm', UUID2, '--name', 'vm2', disk]);
  assert.is(r2.code, 3, `hv-a moved to lockspace ${moved} on a half-written site.conf; vm1 holds the disk on hv-a and vm2 on hv-b was granted it: ${r2.stdout}${r2.stderr}`);
  assert.is(moved, shared, 'the half-written override moved hv-a to base.conf\'s lockspace');
});

test.run();
