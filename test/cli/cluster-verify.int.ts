// `vmlockd journal verify --cluster` on real daemons' published history: an altered byte, a truncated
// segment and a gap are named by host, segment file and seq; a torn last line is not corruption; run on
// a host, its published facts are compared with its journal.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, cli, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';
import { journalHashes, readPublished } from '../helpers/published.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

/**
 * Two hosts with a few dozen facts each, published by their own daemons in small segments (several
 * per host), then stopped (SIGKILL: the published history stays as the daemons left it), so the test
 * may damage the segments without a live writer beside it.
 */
async function published(): Promise<{ dir: string; lockspace: string; a: TestDaemon; b: TestDaemon; ids: Record<string, string>; segs(host: string): string[] }> {
  const dir = tmpdir('vmlockd-cluster-verify-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'images'));
  const small = ['--publish-segment-bytes', '4096'];
  const a = await startDaemon({ stateDir: path.join(dir, 'state-a'), lockspace, hostId: 'hv-a', extra: small });
  const b = await startDaemon({ stateDir: path.join(dir, 'state-b'), lockspace, hostId: 'hv-b', extra: small });
  running.push(a, b);
  for (let i = 0; i < 12; i++) {
    const disk = path.join(dir, 'images', `d${i}.img`);
    const other = path.join(dir, 'images', `e${i}.img`);
    fs.writeFileSync(disk, 'x');
    fs.writeFileSync(other, 'x');
    assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
    assert.is(b.cli(['acquire', '--vm', UUID2, other]).code, 0);
  }
  const ids: Record<string, string> = {};
  for (const d of [a, b]) {
    const host = d.opts.hostId!;
    const journal = path.join(d.opts.stateDir, 'journal.db');
    await until(`${host} published its journal`, () => {
      const want = [...journalHashes(journal).keys()].pop();
      const facts = readPublished(path.join(lockspace, '.journal', host), host).facts;
      return want !== undefined && facts.length > 0 && facts[facts.length - 1]!.seq === want && facts.length >= 12;
    }, 30_000);
    ids[host] = readPublished(path.join(lockspace, '.journal', host), host).journalIds[0]!;
  }
  for (const d of [a, b]) await d.kill('SIGKILL');
  running.splice(0);
  const segs = (host: string) => fs.readdirSync(path.join(lockspace, '.journal', host)).filter((n) => n.endsWith('.seg')).sort();
  return { dir, lockspace, a, b, ids, segs };
}

/**
 * The state of a live writer mid-line: the host's newest segment, unsealed (a seal the writer wrote
 * before the daemon was killed is taken off: a live segment has none yet), ending in half a line.
 */
function tornTail(lockspace: string, host: string, segs: string[], text: string): void {
  const file = path.join(lockspace, '.journal', host, segs[segs.length - 1]!);
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  if (lines.length >= 2 && lines[lines.length - 2]!.startsWith('{"t":"seal"')) lines.splice(lines.length - 2, 1);
  fs.writeFileSync(file, lines.join('\n') + text);
}

const verify = (lockspace: string, extra: string[] = []) => cli(['journal', 'verify', '--cluster', '--lockspace', lockspace, '--journal', '/nonexistent/journal.db', ...extra]);

test('an intact cluster verifies; one altered byte in a fact is named by host, segment file and seq', async () => {
  const s = await published();
  assert.ok(s.segs('hv-b').length >= 3, `several segments: ${s.segs('hv-b')}`);
  const ok = verify(s.lockspace);
  assert.is(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, new RegExp(`host hv-a journal ${s.ids['hv-a']}: ok`));
  assert.match(ok.stdout, new RegExp(`host hv-b journal ${s.ids['hv-b']}: ok`));

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
  assert.ok(segsA.length >= 3, `three segments or more: ${segsA}`);
  fs.rmSync(path.join(dirA, segsA[1]!));
  tornTail(s.lockspace, 'hv-a', s.segs('hv-a'), '{"t":"fact","seq":');
  const r = verify(s.lockspace);
  assert.is(r.code, 1, r.stdout);
  assert.match(r.stdout, new RegExp(`host hv-b journal ${s.ids['hv-b']}: segment ${segsB[0]} seq \\d+: truncated segment`));
  assert.match(r.stdout, new RegExp(`host hv-a journal ${s.ids['hv-a']}: segment \\S+ seq \\d+: gap: seq \\d+ to \\d+ are in no segment`));
  assert.ok(/note: .*last line .* is not finished/.test(r.stdout), r.stdout);
  // A torn tail alone is no problem.
  const t = await published();
  const segsT = t.segs('hv-a');
  tornTail(t.lockspace, 'hv-a', segsT, '{"t":"fact"');
  const torn = verify(t.lockspace);
  assert.is(torn.code, 0, torn.stdout);
  assert.match(torn.stdout, /not finished/);
});

test('run on a host: its published facts are compared with its local journal', async () => {
  const s = await published();
  const journal = path.join(s.a.opts.stateDir, 'journal.db');
  const r = cli(['journal', 'verify', '--cluster', '--lockspace', s.lockspace, '--journal', journal]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`host hv-a journal ${s.ids['hv-a']}: note: (matches the local journal|published through seq \\d+; the local journal is at seq \\d+)`));
  // A published fact that is not the local one (both chains valid on their own): named.
  const seg = s.segs('hv-a')[0]!;
  const local = new Database(journal);
  local.exec(`DROP TRIGGER facts_no_update`);
  local.prepare(`UPDATE facts SET hash = zeroblob(32) WHERE seq = 2`).run();
  local.close();
  const r2 = cli(['journal', 'verify', '--cluster', '--lockspace', s.lockspace, '--journal', journal]);
  assert.is(r2.code, 1, r2.stdout);
  assert.match(r2.stdout, new RegExp(`segment ${seg} seq 2: published fact seq 2 differs from the local journal`));
});

test.run();
