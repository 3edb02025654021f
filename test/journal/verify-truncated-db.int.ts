// Regression for review25b F4 (MEDIUM, false verify): journal.db cut to 0 bytes while the daemon runs (after a WAL
// checkpoint moved its facts into the file). The daemon goes on acknowledging acquires into the
// staging file, logs SQLITE_NOTADB, and after a SIGKILL refuses to start ("staging file ..., line 1:
// seq N does not follow seq 0"). `vmlockd journal verify` on that state directory answers
// "ok (no facts, hash chain intact)" and exits 0: it never reads the staging file
// (src/journal/integrity.ts), so the all-clear is given for a journal the daemon itself cannot start
// from, whose acknowledged facts sit only in journal.db-stage.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, TestDaemon, UUID2, cli, tmpdir } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});

test('journal verify does not call a journal ok that the daemon cannot start from', async () => {
  const root = tmpdir('vmlockd-r25b-verify-');
  const stateDir = path.join(root, 'state');
  const disk = path.join(root, 'd.img');
  fs.writeFileSync(disk, '');
  const d = new TestDaemon({ stateDir, lockspace: path.join(root, 'ls'), hostId: 'h1' });
  running.push(d);
  await d.start();
  // Enough facts that SQLite checkpoints them into journal.db itself.
  const file = path.join(root, 'bad.jsonl');
  let text = '';
  for (let i = 0; i < 6000; i++) text += `{"type":"start","vm":{"uuid":"x${i}"}}\n`;
  fs.writeFileSync(file, text);
  spawnSync(process.execPath, [MAIN, 'ingest', file, '--socket', d.socket], { stdio: 'ignore', timeout: 300_000 });
  await new Promise((r) => setTimeout(r, 2000));
  spawnSync('truncate', ['-s', '0', path.join(stateDir, 'journal.db')]);
  const r = d.cli(['acquire', '--vm', UUID2, '--name', 'b', '--shared', disk]);
  assert.is(r.code, 0, r.stderr); // acknowledged
  await new Promise((res) => setTimeout(res, 1000));
  await d.kill('SIGKILL');
  let started = true;
  try {
    await d.start();
  } catch {
    started = false;
  }
  const stage = path.join(stateDir, 'journal.db-stage');
  const before = fs.readFileSync(stage);
  const v = cli(['journal', 'verify', '--state-dir', stateDir]);
  if (!started) {
    assert.is(v.code, 1, `the daemon refuses to start from ${stateDir}, yet journal verify says (exit ${v.code}): ${v.stdout}${v.stderr}`);
    assert.match(v.stdout, `staging file ${stage}, line 1: seq `);
    assert.match(v.stdout, 'does not follow seq 0');
    assert.ok(fs.readFileSync(stage).equals(before), 'journal verify changed the staging file');
  } else assert.ok(d.cli(['locks', '--json']).stdout.includes(UUID2), 'the acknowledged acquire is not held after the restart');
});

test.run();
