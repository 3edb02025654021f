// Regression (review25b F2, HIGH: acknowledged fact lost, a running VM without its lock): the staging file
// (journal.db-stage) removed or truncated while the daemon runs. While another process holds
// journal.db's write lock (`vmlockd journal compact`, sqlite3; docs/operations.md says acknowledged
// facts then wait, durable, in the staging file) an acquire is acknowledged into the staging file's
// unlinked inode (rm), or at an offset past a now-empty file's end (truncate: the hole of NULs before
// it ends recovery at the first NUL). SIGKILL, the lock released, restart: the acquire is gone from
// the journal, the shared lock is not taken again (the lockspace scan cannot find shared locks), and
// nothing says LEASE LOST. Fixed by src/journal/stage-replace.ts: before each append the stage checks
// that its fd is still the file at its path (nlink, inode, size) and otherwise writes the facts not yet
// in SQLite to a fresh staging file first.
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, UUID1, UUID2, tmpdir, until, type TestDaemon as TD } from '../helpers/daemon.js';

const running: TD[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});

for (const how of ['removed', 'truncated'] as const) {
  test(`an acquire acknowledged after the staging file was ${how} survives a SIGKILL`, async () => {
    const root = tmpdir(`vmlockd-r25b-stage-${how}-`);
    const stateDir = path.join(root, 'state');
    const d1 = path.join(root, 'd1.img');
    const d2 = path.join(root, 'd2.img');
    fs.writeFileSync(d1, '');
    fs.writeFileSync(d2, '');
    const opts = { stateDir, lockspace: path.join(root, 'ls'), hostId: 'h1' };
    const d = new TestDaemon(opts);
    running.push(d);
    await d.start();
    assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'a', d1]).code, 0);
    // Another process holds journal.db's write lock, as `vmlockd journal compact` does.
    const other = new Database(path.join(stateDir, 'journal.db'));
    other.pragma('busy_timeout = 10000');
    other.exec('BEGIN IMMEDIATE');
    const stage = path.join(stateDir, 'journal.db-stage');
    if (how === 'removed') fs.unlinkSync(stage);
    else spawnSync('truncate', ['-s', '0', stage]);
    const r = d.cli(['acquire', '--vm', UUID2, '--name', 'b', '--shared', d2]);
    assert.is(r.code, 0, r.stdout + r.stderr); // acknowledged: VM b starts on d2
    // Said loudly, naming the file and what happened.
    await until('the error line about the staging file', () => /journal: the staging file .*journal\.db-stage was (removed|truncated)/.test(d.stdout + d.stderr), 10_000);
    await d.kill('SIGKILL');
    other.exec('COMMIT');
    other.close();
    await d.start();
    const locks = d.cli(['locks', '--json']);
    const lost = d.cli(['audit', '--kind', 'LeaseLost', '--json']);
    assert.ok(locks.stdout.includes(UUID2) || lost.stdout.includes(UUID2), `VM b's acknowledged shared lock on ${d2} is neither held again nor recorded LeaseLost after the restart:\n${locks.stdout}\n${d.stdout}${d.stderr}`);
  });
}

test.run();
