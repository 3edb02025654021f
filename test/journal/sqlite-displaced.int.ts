// review26b F6 (HIGH): journal.db-wal (or journal.db itself) removed while the daemon runs (an
// operator "cleaning up" SQLite's side files, a backup tool). SQLite keeps writing to the unlinked
// files through its open handles and the daemon kept acknowledging; the staging file was reset once
// its facts were "in SQLite" (the unlinked WAL), so at the next SIGKILL every fact since the last
// checkpoint was gone from both files: a restart refused ("staging file ..., line 1: seq N does not
// follow seq M": no VM of the host had its lock) or started without them (an acknowledged lock not
// held). Now the staging file is reset only after a complete checkpoint, and a displaced journal.db
// is written anew at its path from the open connection (src/journal/sqlite-displaced.ts, decision 0025).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, cli, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

/** Enough facts (two per VM) that the staging file is reset (1 MiB) at least once before the removal. */
const VMS = 2500;
const LATE_VM = '99999999-1111-4111-8111-111111111111';

/** The CLI's stdout for thousands of locks or facts: more than the helper's default 1 MiB output buffer. */
function big(args: string[]): string {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', maxBuffer: 256 << 20, timeout: 120_000 });
  assert.is(r.status, 0, `vmlockd ${args[0]}: ${r.stderr}`);
  return r.stdout;
}

async function scenario(remove: (stateDir: string) => void, logged: RegExp): Promise<void> {
  const root = tmpdir('vmlockd-sqlite-displaced-');
  const img = path.join(root, 'img');
  fs.mkdirSync(img);
  let text = '';
  for (let i = 0; i < VMS; i++) {
    const disk = path.join(img, `d${i}.img`);
    fs.writeFileSync(disk, '');
    text += JSON.stringify({ type: 'started', vm: { uuid: `${String(i).padStart(8, '0')}-1111-4111-8111-111111111111`, name: `v${i}` }, disks: [{ path: disk }] }) + '\n';
  }
  fs.writeFileSync(path.join(root, 'ev.jsonl'), text);
  const stateDir = path.join(root, 'state');
  const opts = { stateDir, lockspace: path.join(root, 'ls'), hostId: 'ha' };
  const d = await startDaemon(opts);
  // In pieces: one ingest of every VM may outlast the CLI's 30 s on a loaded machine.
  const lines = text.split('\n').filter((l) => l !== '');
  for (let i = 0; i < lines.length; i += 500) {
    const part = path.join(root, `ev${i}.jsonl`);
    fs.writeFileSync(part, lines.slice(i, i + 500).join('\n') + '\n');
    const r = d.cli(['ingest', part]);
    assert.is(r.code, 0, `ingest: ${r.stderr.slice(0, 500)}`);
  }
  const moved = () => {
    const s = JSON.parse(d.cli(['status', '--json']).stdout) as { lastSeq: number; journalMovedSeq: number };
    return s.journalMovedSeq === s.lastSeq ? s : undefined;
  };
  await until('every fact in SQLite', moved, 120_000);
  remove(stateDir);
  const late = path.join(img, 'late.img');
  fs.writeFileSync(late, '');
  const a = d.cli(['acquire', '--vm', LATE_VM, '--name', 'late', late]);
  assert.is(a.code, 0, `acknowledged: ${a.stderr}`);
  const s = await until('the late facts in SQLite', moved, 120_000);
  await d.kill('SIGKILL');
  const v = cli(['journal', 'verify', '--state-dir', stateDir]);
  assert.is(v.code, 0, `journal verify after the crash: ${v.stdout} ${v.stderr}`);
  let d2: TestDaemon;
  try {
    d2 = await startDaemon(opts);
  } catch (e) {
    assert.unreachable(`the daemon did not start again after the crash: ${String(e).slice(0, 800)}`);
    throw e;
  }
  const locks = big(['locks', '--json', '--socket', d2.socket]);
  await d2.kill('SIGKILL');
  assert.ok(locks.includes(late), 'late.img (acknowledged) is held after the restart');
  assert.ok(locks.includes(path.join(img, 'd0.img')) && locks.includes(path.join(img, `d${VMS - 1}.img`)), 'the ingested VMs hold their disks after the restart');
  const seqs = new Set((JSON.parse(big(['audit', '--state-dir', stateDir, '--json', '--limit', '0'])) as Array<{ seq: number }>).map((f) => f.seq));
  for (let n = 1; n <= s.lastSeq; n++) assert.ok(seqs.has(n), `acknowledged fact seq ${n} lost`);
  // Read after the kill: everything the daemon wrote has been read from its pipes.
  assert.match(d.stdout + d.stderr, logged, 'the daemon logged what happened and what it did');
}

test('journal.db-wal removed under a running daemon, then SIGKILL: the restart keeps every acknowledged fact and lock', async () => {
  await scenario((dir) => fs.rmSync(path.join(dir, 'journal.db-wal')), /error journal: \S+journal\.db-wal was removed while the daemon ran/);
});

test('journal.db, its WAL and shared memory removed under a running daemon, then SIGKILL: journal.db is written anew, nothing is lost', async () => {
  await scenario((dir) => {
    for (const f of ['journal.db', 'journal.db-wal', 'journal.db-shm']) fs.rmSync(path.join(dir, f));
  }, /error journal: \S+journal\.db was removed .*wrote \S+journal\.db anew from the open connection/);
});

test.run();
