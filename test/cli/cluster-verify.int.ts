// `vmlockd journal verify --cluster` on real daemons' published history: an altered byte, a truncated
// segment and a gap are named by host, segment file and seq; a torn last line is not corruption; run on
// a host, its published facts are compared with its journal.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, cli, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';
import { publishJournal } from '../helpers/segments.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

const IDS: Record<string, string> = { 'hv-a': 'a0000000000000a1', 'hv-b': 'b0000000000000b1' };

/** Two hosts with a few dozen facts each, published in small segments (several per host). */
async function published(): Promise<{ dir: string; lockspace: string; a: TestDaemon; b: TestDaemon; segs(host: string): string[] }> {
  const dir = tmpdir('vmlockd-cluster-verify-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'images'));
  // The test writes each host's segments itself (fixed journal ids, then damaged on purpose): the
  // daemons' own publication stays off so no second writer touches them.
  const a = await startDaemon({ stateDir: path.join(dir, 'state-a'), lockspace, hostId: 'hv-a', extra: ['--publish', '0'] });
  const b = await startDaemon({ stateDir: path.join(dir, 'state-b'), lockspace, hostId: 'hv-b', extra: ['--publish', '0'] });
  running.push(a, b);
  for (let i = 0; i < 6; i++) {
    const disk = path.join(dir, 'images', `d${i}.img`);
    const other = path.join(dir, 'images', `e${i}.img`);
    fs.writeFileSync(disk, 'x');
    fs.writeFileSync(other, 'x');
    assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
    assert.is(b.cli(['acquire', '--vm', UUID2, other]).code, 0);
  }
  const count = (d: TestDaemon) => {
    const db = new Database(path.join(d.opts.stateDir, 'journal.db'), { readonly: true });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM facts WHERE kind = 'LockAcquired'`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  };
  await until('journaled', () => count(a) === 6 && count(b) === 6);
  for (const d of [a, b]) publishJournal(path.join(d.opts.stateDir, 'journal.db'), lockspace, d.opts.hostId!, IDS[d.opts.hostId!]!, { segmentBytes: 1500 });
  const segs = (host: string) => fs.readdirSync(path.join(lockspace, '.journal', host)).filter((n) => n.endsWith('.seg')).sort();
  return { dir, lockspace, a, b, segs };
}

const verify = (lockspace: string, extra: string[] = []) => cli(['journal', 'verify', '--cluster', '--lockspace', lockspace, '--journal', '/nonexistent/journal.db', ...extra]);

test('an intact cluster verifies; one altered byte in a fact is named by host, segment file and seq', async () => {
  const s = await published();
  assert.ok(s.segs('hv-b').length >= 3, `several segments: ${s.segs('hv-b')}`);
  const ok = verify(s.lockspace);
  assert.is(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /host hv-a journal a0000000000000a1: ok/);
  assert.match(ok.stdout, /host hv-b journal b0000000000000b1: ok/);

  // One byte of a fact's time in the middle segment of hv-b.
  const seg = s.segs('hv-b')[1]!;
  const file = path.join(s.lockspace, '.journal', 'hv-b', seg);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const victim = JSON.parse(lines[2]!) as { seq: number; at: string };
  lines[2] = lines[2]!.replace(victim.at, victim.at.replace(/\d(?=Z$)/, (d) => String((Number(d) + 1) % 10)));
  fs.writeFileSync(file, lines.join('\n'));
  const bad = verify(s.lockspace, ['--json']);
  assert.is(bad.code, 1, bad.stdout + bad.stderr);
  const r = JSON.parse(bad.stdout);
  const chain = r.chains.find((c: any) => c.host === 'hv-b');
  assert.equal(chain.problems.map((p: any) => [p.segment, p.seq]), [[seg, victim.seq]]);
  assert.match(chain.problems[0].reason, /hash does not chain/);
  assert.ok(r.chains.find((c: any) => c.host === 'hv-a').ok, 'the other host is fine');
});

test('a truncated segment and a missing segment are named; a torn last line of the live segment is only a note', async () => {
  const s = await published();
  const dirB = path.join(s.lockspace, '.journal', 'hv-b');
  const segsB = s.segs('hv-b');
  // hv-b: the first segment loses its seal and last fact (cut mid-file).
  const f0 = path.join(dirB, segsB[0]!);
  const text = fs.readFileSync(f0, 'utf8');
  const keep = text.split('\n').slice(0, -3).join('\n') + '\n';
  fs.writeFileSync(f0, keep);
  // hv-a: its second segment is gone, and its live segment ends in half a line.
  const dirA = path.join(s.lockspace, '.journal', 'hv-a');
  const segsA = s.segs('hv-a');
  fs.rmSync(path.join(dirA, segsA[1]!));
  fs.appendFileSync(path.join(dirA, segsA[segsA.length - 1]!), '{"t":"fact","seq":');
  const r = verify(s.lockspace);
  assert.is(r.code, 1, r.stdout);
  assert.match(r.stdout, new RegExp(`host hv-b journal b0000000000000b1: segment ${segsB[0]} seq \\d+: truncated segment`));
  assert.match(r.stdout, /host hv-a journal a0000000000000a1: segment \S+ seq \d+: gap: seq \d+ to \d+ are in no segment/);
  assert.match(r.stdout, /note: .*last line .* is not finished/);
  // A torn tail alone is no problem.
  const t = await published();
  const segsT = t.segs('hv-a');
  fs.appendFileSync(path.join(t.lockspace, '.journal', 'hv-a', segsT[segsT.length - 1]!), '{"t":"fact"');
  const torn = verify(t.lockspace);
  assert.is(torn.code, 0, torn.stdout);
  assert.match(torn.stdout, /not finished/);
});

test('run on a host: its published facts are compared with its local journal', async () => {
  const s = await published();
  await s.a.kill('SIGTERM');
  running.splice(running.indexOf(s.a), 1);
  const journal = path.join(s.a.opts.stateDir, 'journal.db');
  const db = new Database(journal);
  db.prepare(`INSERT INTO meta (key, value) VALUES ('journal_id', ?)`).run(IDS['hv-a']);
  db.close();
  // DaemonStopped is in the journal but not published yet: lag, not a problem.
  const r = cli(['journal', 'verify', '--cluster', '--lockspace', s.lockspace, '--journal', journal]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /host hv-a journal a0000000000000a1: note: published through seq \d+; the local journal is at seq \d+/);
  // A published fact that is not the local one (both chains valid on their own): named.
  const seg = s.segs('hv-a')[0]!;
  const file = path.join(s.lockspace, '.journal', 'hv-a', seg);
  const local = new Database(journal);
  local.exec(`DROP TRIGGER facts_no_update`);
  local.prepare(`UPDATE facts SET hash = zeroblob(32) WHERE seq = 2`).run();
  local.close();
  const r2 = cli(['journal', 'verify', '--cluster', '--lockspace', s.lockspace, '--journal', journal]);
  assert.is(r2.code, 1, r2.stdout);
  assert.match(r2.stdout, new RegExp(`segment ${seg} seq 2: published fact seq 2 differs from the local journal`));
});

test.run();
