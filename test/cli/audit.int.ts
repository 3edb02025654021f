// `vmlockd audit` and `vmlockd journal` through the real CLI, on journals written by real daemons,
// running and stopped.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, UUID1, UUID2, UUID3, cli, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { settledJournal } from '../helpers/settled.js';

const running: TestDaemon[] = [];
const dirs: string[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});
test.after(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Setup {
  dir: string;
  stateDir: string;
  disk: (name: string) => string;
  daemon: TestDaemon;
}

async function setup(): Promise<Setup> {
  const dir = tmpdir('vmlockd-audit-');
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'images'));
  const stateDir = path.join(dir, 'state');
  const daemon = await startDaemon({ stateDir, lockspace: path.join(dir, 'lockspace'), hostId: 'host-a' });
  running.push(daemon);
  const disk = (name: string) => {
    const p = path.join(dir, 'images', name);
    if (!fs.existsSync(p)) fs.writeFileSync(p, 'image');
    return p;
  };
  return { dir, stateDir, disk, daemon };
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.is(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function json<T>(r: { code: number; stdout: string; stderr: string }, what: string): T {
  return JSON.parse(ok(r, what)) as T;
}

const now = () => new Date().toISOString();
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** alpha takes a.qcow2, beta is refused it, alpha and beta share b.qcow2, alpha stops. Returns the moments between. */
async function story(s: Setup): Promise<{ whileAlphaHeld: string; afterAlphaStopped: string }> {
  const a = s.disk('a.qcow2');
  const b = s.disk('b.qcow2');
  ok(s.daemon.cli(['acquire', '--vm', UUID1, '--name', 'alpha', a]), 'alpha takes a');
  assert.is(s.daemon.cli(['acquire', '--vm', UUID2, '--name', 'beta', a]).code, 3, 'beta is refused a');
  ok(s.daemon.cli(['acquire', '--vm', UUID2, '--name', 'beta', '--shared', b]), 'beta shares b');
  ok(s.daemon.cli(['acquire', '--vm', UUID1, '--name', 'alpha', '--shared', b]), 'alpha shares b');
  await pause(20);
  const whileAlphaHeld = now();
  await pause(20);
  ok(s.daemon.cli(['release', '--vm', UUID1]), 'alpha stops');
  await pause(20);
  return { whileAlphaHeld, afterAlphaStopped: now() };
}

interface Holder {
  owner: { uuid: string; name?: string };
  host: string;
  mode: string;
  generation: number | null;
  since: string;
}

test('given a running daemon\'s journal, when asking who held a disk at a moment, then the answer comes from the facts before it', async () => {
  const s = await setup();
  const t = await story(s);
  const a = s.disk('a.qcow2');
  const held = json<{ disk: string; holders: Holder[] }>(s.daemon.cli(['audit', '--disk', a, '--at', t.whileAlphaHeld, '--json']), 'at while held');
  assert.is(held.disk, fs.realpathSync(a));
  assert.equal(held.holders.map((h) => [h.owner.uuid, h.owner.name, h.host, h.mode]), [[UUID1, 'alpha', 'host-a', 'exclusive']]);
  assert.ok(held.holders[0]!.generation! >= 1, 'file lockspaces grant exclusive locks with a fencing generation');
  assert.ok(held.holders[0]!.since < t.whileAlphaHeld);
  const later = json<{ holders: Holder[] }>(s.daemon.cli(['audit', '--disk', a, '--at', t.afterAlphaStopped, '--json']), 'at after stop');
  assert.equal(later.holders, []);
  const shared = json<{ holders: Holder[] }>(s.daemon.cli(['audit', '--disk', s.disk('b.qcow2'), '--at', t.whileAlphaHeld, '--json']), 'shared');
  assert.equal(shared.holders.map((h) => [h.owner.name, h.mode]).sort(), [['alpha', 'shared'], ['beta', 'shared']]);

  const table = ok(s.daemon.cli(['audit', '--disk', a, '--at', t.whileAlphaHeld]), 'table');
  assert.match(table, /alpha\s+11111111-1111-4111-8111-111111111111\s+host-a\s+exclusive/);
  assert.match(ok(s.daemon.cli(['audit', '--disk', a, '--at', t.afterAlphaStopped]), 'nobody'), /^nobody held .*a\.qcow2 at /);
});

test('given a running daemon\'s journal, when asking for a disk\'s and a VM\'s history and the conflicts, then every acquire, refusal and release is there with both parties', async () => {
  const s = await setup();
  await story(s);
  const a = s.disk('a.qcow2');
  const history = json<Array<{ kind: string; owner: string | null }>>(s.daemon.cli(['audit', '--disk', a, '--json']), 'disk history');
  assert.equal(history.map((f) => `${f.kind}:${f.owner}`), [`LockAcquired:${UUID1}`, `LockRefused:${UUID2}`, `LockReleased:${UUID1}`]);
  // `release --vm UUID` journals no name: a name still finds the VM's releases through its uuid.
  const alpha = json<Array<{ kind: string; disk: string | null }>>(s.daemon.cli(['audit', '--vm', 'alpha', '--json']), 'vm alpha');
  assert.equal(alpha.filter((f) => f.disk !== null).map((f) => `${f.kind}:${path.basename(f.disk!)}`), ['LockAcquired:a.qcow2', 'LockAcquired:b.qcow2', 'LockReleased:a.qcow2', 'LockReleased:b.qcow2']);

  const vm = json<Array<{ kind: string; disk: string | null }>>(s.daemon.cli(['audit', '--vm', 'beta', '--json']), 'vm by name');
  assert.equal(vm.filter((f) => f.disk !== null).map((f) => `${f.kind}:${path.basename(f.disk!)}`), ['LockRefused:a.qcow2', 'LockAcquired:b.qcow2']);
  const byUuid = json<unknown[]>(s.daemon.cli(['audit', '--vm', UUID2, '--json']), 'vm by uuid');
  assert.is(byUuid.length, vm.length);

  const csv = ok(s.daemon.cli(['audit', '--conflicts', '--csv']), 'conflicts').trim().split('\r\n');
  assert.is(csv[0], 'seq,at,host,kind,disk,vm_uuid,vm_name,mode,generation,other_host,other_vm_uuid,other_vm_name,other_mode,other_since,other_generation,detail,client_at');
  assert.is(csv.length, 2, csv.join('\n'));
  const cells = csv[1]!.split(',');
  assert.equal([cells[3], cells[5], cells[6], cells[9], cells[10], cells[11], cells[12]], ['LockRefused', UUID2, 'beta', 'host-a', UUID1, 'alpha', 'exclusive']);

  const kinds = json<Array<{ kind: string }>>(s.daemon.cli(['audit', '--kind', 'LockReleased', '--host', 'host-a', '--since=-1h', '--json']), 'kind+host+since');
  assert.equal(kinds.map((f) => f.kind), ['LockReleased', 'LockReleased']);
  assert.equal(json<unknown[]>(s.daemon.cli(['audit', '--host', 'host-z', '--json']), 'other host'), []);
  const limited = json<Array<{ seq: number }>>(s.daemon.cli(['audit', '--limit', '2', '--json']), 'limit');
  const all = json<Array<{ seq: number }>>(s.daemon.cli(['audit', '--limit', '0', '--json']), 'no limit');
  assert.equal(limited.map((f) => f.seq), all.slice(-2).map((f) => f.seq), '--limit keeps the newest');

  const chart = ok(s.daemon.cli(['audit', '--timeline', '--disk', a, '--width', '80']), 'timeline');
  assert.match(chart, /alpha \(11111111\)\s+\|█+ *\|/);
  assert.match(chart, /beta \(22222222\)\s+\| *x *\|/);
});

test('given bad arguments, when auditing, then the message says what is wrong and the exit code is 2', async () => {
  const s = await setup();
  await story(s);
  const cases: Array<[string[], RegExp]> = [
    [['--disk', s.disk('never.qcow2')], /unknown disk .*never\.qcow2.*no fact in .*journal\.db names/],
    [['--disk', s.disk('a.qcow2'), '--at', 'last tuesday'], /--at must be an ISO-8601 time .* got "last tuesday"/],
    [['--since', '2026-13-45'], /--since must be an ISO-8601 time/],
    [['--vm', 'nobody'], /unknown VM "nobody"/],
    [['--at', now()], /--at needs --disk PATH/],
    [['--kind', 'LockStolen'], /--kind must name fact kinds from DaemonStarted, /],
    [['--limit', '-3'], /argument is ambiguous|--limit must be an integer/],
    [['--json', '--csv'], /choose one of --json and --csv/],
    [['--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = s.daemon.cli(['audit', ...args]);
    assert.is(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stdout}${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
  const missing = cli(['audit', '--state-dir', path.join(s.dir, 'no-such-state')]);
  assert.is(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /no journal at .*no-such-state.*journal\.db/);
});

test('given audit --follow, when the daemon journals new facts, then they stream out as JSON lines until SIGINT', async () => {
  const s = await setup();
  const follower = spawn(process.execPath, [MAIN, 'audit', '--follow', '--json', '--kind', 'LockAcquired,LockReleased', '--socket', s.daemon.socket], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  follower.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => follower.once('exit', (code) => resolve(code)));
  try {
    await pause(600);
    ok(s.daemon.cli(['acquire', '--vm', UUID3, '--name', 'gamma', s.disk('c.qcow2')]), 'gamma takes c');
    ok(s.daemon.cli(['release', '--vm', UUID3]), 'gamma stops');
    const deadline = Date.now() + 5000;
    while (out.trim().split('\n').filter(Boolean).length < 2 && Date.now() < deadline) await pause(50);
  } finally {
    follower.kill('SIGINT');
  }
  assert.is(await exited, 0);
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; owner: string | null });
  assert.equal(lines.map((f) => `${f.kind}:${f.owner}`), [`LockAcquired:${UUID3}`, `LockReleased:${UUID3}`]);
});

test('given a stopped daemon, when its state dir is audited, verified and compacted, then answers stay right and the next start re-takes the held lock', async () => {
  const s = await setup();
  const t = await story(s);
  const b = s.disk('b.qcow2');
  await s.daemon.kill('SIGTERM');
  const dir = ['--state-dir', s.stateDir];

  // The kernel dropped every lock when the daemon stopped: nobody holds b now (issue 18.1).
  const held = json<{ holders: Holder[]; stopped?: { at: string } }>(cli(['audit', '--disk', b, '--at', 'now', '--json', ...dir]), 'stopped: at now');
  assert.equal(held.holders, []);
  assert.ok(held.stopped !== undefined, 'the answer says the daemon stopped');
  assert.match(ok(cli(['audit', '--disk', b, '--at', 'now', ...dir]), 'table'), /^nobody held .*\nnote: vmlockd on this host stopped at /);
  const before = json<{ holders: Holder[] }>(cli(['audit', '--disk', b, '--at', t.afterAlphaStopped, '--json', ...dir]), 'before the stop');
  assert.equal(before.holders.map((h) => h.owner.name), ['beta']);
  assert.match(ok(cli(['journal', 'verify', ...dir]), 'verify'), /^journal .*journal\.db: ok \(\d+ facts, seq 1\.\.\d+, hash chain intact\)\n$/);

  const compact = ok(cli(['journal', 'compact', '--before', 'now', ...dir]), 'compact');
  assert.match(compact, /moved facts seq 1\.\.\d+ to .*journal-archive\.db/);
  const after = json<{ holders: Holder[]; stopped?: unknown }>(cli(['audit', '--disk', b, '--at', 'now', '--json', ...dir]), 'compacted: at now');
  assert.equal(after.holders, [], 'the carried stop still ends the hold');
  assert.ok(after.stopped !== undefined);
  // Before the cut, without --archive: the carried holds answer, and the answer says it reaches back.
  const back = cli(['audit', '--disk', b, '--at', t.afterAlphaStopped, '--json', ...dir]);
  assert.equal(json<{ holders: Holder[] }>(back, 'carried at a moment before the cut').holders.map((h) => h.owner.name), ['beta']);
  assert.match(back.stderr, /note: --at .* reaches before the compaction cut .*add --archive/);
  const tl = cli(['audit', '--timeline', '--disk', b, '--json', ...dir]);
  const intervals = json<{ intervals: Array<{ owner: { name?: string }; end?: string }> }>(tl, 'timeline from carried holds').intervals;
  assert.equal(intervals.map((i) => [i.owner.name, i.end]), [['beta', 'stopped']], 'the carried hold is drawn, ended by the stop');
  assert.match(tl.stderr, /note: the timeline reaches before the compaction cut/);
  const noHistory = cli(['audit', '--disk', s.disk('a.qcow2'), '--at', t.whileAlphaHeld, '--json', ...dir]);
  assert.is(noHistory.code, 2, 'a.qcow2 is only in the archive now');
  assert.match(noHistory.stderr, /add --archive to read them/);
  const archived = json<{ holders: Holder[] }>(cli(['audit', '--disk', s.disk('a.qcow2'), '--at', t.whileAlphaHeld, '--archive', '--json', ...dir]), 'archive');
  assert.equal(archived.holders.map((h) => h.owner.name), ['alpha']);
  const verified = ok(cli(['journal', 'verify', ...dir]), 'verify after compact');
  assert.match(verified, /journal .*: ok \(no facts/);
  assert.match(verified, /archive .*journal-archive\.db: ok \(\d+ facts, seq 1\.\./);

  // Start-up reads the snapshot compaction left, so beta's lock is held again.
  const again = await startDaemon({ stateDir: s.stateDir, lockspace: path.join(s.dir, 'lockspace'), hostId: 'host-a' });
  running.push(again);
  const locks = json<Array<{ vm: { name?: string }; disk: string }>>(again.cli(['locks', '--json']), 'locks after restart');
  assert.equal(locks.map((l) => [l.vm.name, path.basename(l.disk)]), [['beta', 'b.qcow2']]);
  const retaken = json<Array<{ kind: string }>>(again.cli(['audit', '--kind', 'Reacquired', '--json']), 're-take journaled');
  assert.is(retaken.length, 1);
  assert.match(ok(again.cli(['journal', 'verify']), 'verify with the daemon running'), /journal .*: ok/);
});

test('given a daemon SIGKILLed while holding a disk and not started again, audit at a later moment names no holder and says the journal cannot tell', async () => {
  const s = await setup();
  const d = s.disk('orphan.qcow2');
  ok(s.daemon.cli(['acquire', '--vm', UUID1, '--name', 'vm-left', d]), 'the daemon takes the disk');
  await pause(20);
  const whileRunning = now();
  const dir = ['--state-dir', s.stateDir];
  // While it runs, it holds the disk.
  assert.equal(json<{ holders: Holder[] }>(cli(['audit', '--disk', d, '--at', whileRunning, '--json', ...dir]), 'while running').holders.map((h) => h.owner.name), ['vm-left']);
  await s.daemon.kill('SIGKILL');
  await pause(20);
  const later = now();
  const answer = json<{ holders: Holder[]; crash?: { holds: Holder[]; notRestarted?: boolean } }>(cli(['audit', '--disk', d, '--at', later, '--json', ...dir]), 'after the crash');
  assert.equal(answer.holders, [], 'a dead daemon\'s lock is not shown as held');
  assert.equal(answer.crash?.holds.map((h) => h.owner.name), ['vm-left']);
  assert.is(answer.crash?.notRestarted, true);
  assert.match(ok(cli(['audit', '--disk', d, '--at', later, ...dir]), 'table after the crash'), /note: vmlockd on this host is not running and did not stop cleanly/);
  // Up to the dead run's last fact (the grant) the journal proves the hold; after it, it cannot
  // (the moment taken while the daemon ran is now in that window too: nothing journaled shows it alive).
  const granted = json<Array<{ at: string }>>(cli(['audit', '--disk', d, '--kind', 'LockAcquired', '--json', ...dir]), 'the grant')[0]!.at;
  assert.equal(json<{ holders: Holder[] }>(cli(['audit', '--disk', d, '--at', granted, '--json', ...dir]), 'at the grant').holders.map((h) => h.owner.name), ['vm-left']);
  assert.equal(json<{ holders: Holder[] }>(cli(['audit', '--disk', d, '--at', whileRunning, '--json', ...dir]), 'after the grant').holders, []);
});

test('given a daemon whose journal lives outside its state directory SIGKILLed and not restarted, audit --journal names no holder after its last fact', async () => {
  const dir = tmpdir('vmlockd-audit-');
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'images'));
  fs.mkdirSync(path.join(dir, 'elsewhere'));
  const journal = path.join(dir, 'elsewhere', 'j.db');
  const d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'host-j', extra: ['--journal', journal] });
  running.push(d);
  const disk = path.join(dir, 'images', 'j.qcow2');
  fs.writeFileSync(disk, 'image');
  ok(d.cli(['acquire', '--vm', UUID1, '--name', 'vm-j', disk]), 'takes the disk');
  settledJournal(journal); // the grant is in SQLite, not only in the staging file, when the daemon dies
  await d.kill('SIGKILL');
  await pause(20);
  const answer = json<{ holders: Holder[]; crash?: { notRestarted?: boolean } }>(cli(['audit', '--journal', journal, '--disk', disk, '--at', now(), '--json']), 'after the crash');
  assert.equal(answer.holders, []);
  assert.is(answer.crash?.notRestarted, true);
});

test('given h1 SIGKILLed while holding a disk and h2 taking it, when h1 restarts with LeaseLost, then audit at the gap names nobody on h1 and the timeline ends the hold at the crash', async () => {
  const s = await setup();
  const d = s.disk('shared.qcow2');
  const lockspace = path.join(s.dir, 'lockspace');
  ok(s.daemon.cli(['acquire', '--vm', UUID1, '--name', 'vm-on-h1', d]), 'h1 takes the disk');
  await pause(20);
  const whileHeld = now();
  await pause(20);
  await s.daemon.kill('SIGKILL');
  const h2 = await startDaemon({ stateDir: path.join(s.dir, 'state-h2'), lockspace, hostId: 'host-b' });
  running.push(h2);
  ok(h2.cli(['acquire', '--vm', UUID2, '--name', 'vm-on-h2', d]), 'h2 takes the disk once h1 is dead');
  await pause(20);
  const gap = now();
  await pause(20);
  const h1 = await startDaemon({ stateDir: s.stateDir, lockspace, hostId: 'host-a' });
  running.push(h1);
  const lost = json<Array<{ kind: string; at: string }>>(h1.cli(['audit', '--kind', 'LeaseLost', '--json']), 'LeaseLost journaled');
  assert.is(lost.length, 1);
  const dir = ['--state-dir', s.stateDir];

  const atGap = cli(['audit', '--disk', d, '--at', gap, '--json', ...dir]);
  const answer = json<{ holders: Holder[]; crash?: unknown }>(atGap, 'at the gap');
  assert.equal(answer.holders, [], 'h1 lost the lock when it died');
  assert.not.match(atGap.stdout, /vm-on-h1|11111111-1111-4111-8111-111111111111/, 'h1\'s VM is not named at the gap');
  assert.not.match(ok(cli(['audit', '--disk', d, '--at', gap, ...dir]), 'table at the gap'), /vm-on-h1/);
  // The grant is h1's last fact before the crash: from it on, the journal cannot tell when the lock
  // ended, only that it did by h2's grant; the answer says so instead of naming a holder.
  const granted = json<Array<{ at: string }>>(cli(['audit', '--disk', d, '--kind', 'LockAcquired', '--json', ...dir]), 'the grant')[0]!.at;
  const atGrant = json<{ holders: Holder[] }>(cli(['audit', '--disk', d, '--at', granted, '--json', ...dir]), 'at the grant');
  assert.equal(atGrant.holders.map((h) => h.owner.name), ['vm-on-h1']);
  const inWindow = json<{ holders: Holder[]; crash?: { holds: Holder[] } }>(cli(['audit', '--disk', d, '--at', whileHeld, '--json', ...dir]), 'in the crash window');
  assert.equal(inWindow.holders, []);
  assert.equal(inWindow.crash?.holds.map((h) => h.owner.name), ['vm-on-h1']);
  assert.match(ok(cli(['audit', '--disk', d, '--at', whileHeld, ...dir]), 'table in the window'), /note: vmlockd on this host crashed between /);

  const t = json<{ intervals: Array<{ owner: { name?: string }; from: string; to?: string; end?: string; crashBefore?: string }> }>(
    cli(['audit', '--timeline', '--disk', d, '--json', ...dir]),
    'timeline',
  );
  assert.is(t.intervals.length, 1, JSON.stringify(t.intervals));
  const hold = t.intervals[0]!;
  assert.is(hold.owner.name, 'vm-on-h1');
  assert.is(hold.end, 'crash');
  assert.ok(hold.to !== undefined && hold.to < gap, `the hold ends before the gap: ${hold.to}`);
  assert.ok(hold.crashBefore !== undefined && hold.crashBefore <= gap, `the crash is bounded by h2's grant: ${hold.crashBefore}`);
  assert.match(ok(cli(['audit', '--timeline', '--disk', d, '--width', '90', ...dir]), 'chart'), /\? until a crash/);
});

test('given late events dated in the past, when they are ingested, then facts carry the daemon\'s time in journal order, the client\'s time beside it, and locks and audit agree', async () => {
  const s = await setup();
  const d = s.disk('late.qcow2');
  const e = s.disk('early.qcow2');
  const minuteAgo = new Date(Date.now() - 60_000).toISOString();
  const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
  const ingest = (lines: object[]) => ok(s.daemon.cli(['ingest', '-'], { input: lines.map((l) => JSON.stringify(l)).join('\n') + '\n' }), 'ingest');
  // A started now, then a stopped dated a minute ago (a late report): nothing is held.
  ingest([{ type: 'started', vm: { uuid: UUID1, name: 'late' }, disks: [{ path: d }] }]);
  ingest([{ type: 'stopped', vm: { uuid: UUID1 }, at: minuteAgo }]);
  // The reverse: a stopped, then a started dated two days ago: held.
  ingest([{ type: 'stopped', vm: { uuid: UUID2 } }]);
  ingest([{ type: 'started', vm: { uuid: UUID2, name: 'early' }, disks: [{ path: e }], at: twoDaysAgo }]);
  await pause(20);

  const locks = json<Array<{ vm: { uuid: string } }>>(s.daemon.cli(['locks', '--json']), 'locks');
  assert.equal(locks.map((l) => l.vm.uuid), [UUID2]);
  assert.equal(json<{ holders: Holder[] }>(s.daemon.cli(['audit', '--disk', d, '--at', 'now', '--json']), 'late at now').holders, [], 'audit agrees with locks');
  assert.equal(json<{ holders: Holder[] }>(s.daemon.cli(['audit', '--disk', e, '--at', 'now', '--json']), 'early at now').holders.map((h) => h.owner.uuid), [UUID2]);

  const facts = json<Array<{ seq: number; at: string; kind: string; payload: { clientAt?: string } }>>(s.daemon.cli(['audit', '--since=-1h', '--json', '--limit', '0']), 'since -1h');
  const kinds = facts.filter((f) => f.kind.startsWith('Lock')).map((f) => [f.kind, f.payload.clientAt ?? '-']);
  assert.equal(kinds, [['LockAcquired', '-'], ['LockReleased', minuteAgo], ['LockAcquired', twoDaysAgo]], 'found by the daemon\'s time, each with the client\'s time beside');
  for (let i = 1; i < facts.length; i++) {
    assert.ok(facts[i]!.seq > facts[i - 1]!.seq && facts[i]!.at >= facts[i - 1]!.at, 'journal order, times nondecreasing');
  }
  const csv = ok(s.daemon.cli(['audit', '--disk', e, '--csv']), 'csv').trim().split('\r\n');
  assert.ok(csv[1]!.endsWith(`,${twoDaysAgo}`), csv.join('\n'));
  assert.match(ok(s.daemon.cli(['audit', '--disk', d]), 'table'), new RegExp(`client's time ${minuteAgo.replace(/\./g, '\\.')}`));
});

test('given a VM asked by an upper-case uuid without dashes, a name two VMs used, and a release by uuid, then audit normalises, refuses to merge, and names the VM in CSV', async () => {
  const s = await setup();
  const d = s.disk('names.qcow2');
  ok(s.daemon.cli(['acquire', '--vm', UUID1, '--name', 'dup', d]), 'first dup');
  ok(s.daemon.cli(['release', '--vm', UUID1]), 'release by uuid');
  ok(s.daemon.cli(['acquire', '--vm', UUID3, '--name', 'dup', d]), 'second dup');
  const byUuid = json<Array<{ owner: string }>>(s.daemon.cli(['audit', '--vm', UUID1.replace(/-/g, '').toUpperCase(), '--json']), 'upper-case uuid');
  assert.ok(byUuid.length >= 2 && byUuid.every((f) => f.owner === UUID1), JSON.stringify(byUuid));
  const merged = s.daemon.cli(['audit', '--vm', 'dup']);
  assert.is(merged.code, 2, merged.stdout + merged.stderr);
  assert.match(merged.stderr, new RegExp(`VM name "dup" was used by 2 VMs \\(${UUID1}, ${UUID3}\\); ask for one with --vm UUID`));
  const csv = ok(s.daemon.cli(['audit', '--vm', UUID1, '--kind', 'LockReleased', '--csv']), 'csv').trim().split('\r\n');
  assert.is(csv.length, 2, csv.join('\n'));
  assert.is(csv[1]!.split(',')[6], 'dup', 'the release by uuid still names the VM');
});

test('given a fact rewritten in a stopped daemon\'s journal, when verified, then the first bad seq is named and the exit code is 1', async () => {
  const s = await setup();
  await story(s);
  await s.daemon.kill('SIGTERM');
  const db = new Database(path.join(s.stateDir, 'journal.db'));
  try {
    db.exec('DROP TRIGGER facts_no_update');
    db.prepare(`UPDATE facts SET payload = json_set(payload, '$.mode', 'shared') WHERE seq = (SELECT min(seq) FROM facts WHERE kind = 'LockAcquired')`).run();
  } finally {
    db.close();
  }
  const r = cli(['journal', 'verify', '--state-dir', s.stateDir]);
  assert.is(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /hash chain: first bad seq \d+: hash does not match/);
  assert.match(r.stdout, /append-only trigger facts_no_update is missing/);
  const alias = cli(['integrity', '--state-dir', s.stateDir, '--json']);
  assert.is(alias.code, 1);
  assert.is((JSON.parse(alias.stdout) as { ok: boolean }).ok, false);
});

test.run();
