// The wall clock steps back (review26b F1/F2): the journal's seq order is the truth on one host,
// time is a label. A disk alpha released at "+300 s" and beta took at "+120 s" after the clock was set
// back: before, `audit --at` a moment the clock passed twice named one holder as if sure (beta across a
// restart, alpha under a running daemon), the timeline drew alpha and beta both holding it (restart),
// and `--at now` with the clock set back named alpha while `locks` said beta. Now the daemon journals a
// ClockStepped fact, facts' times never go back along seq (the clock's own reading kept as wallAt),
// and an --at inside the stepped-back window is answered as ambiguous with both readings.
// Real daemons under libfaketime, whose offset a file sets while they run; the real CLI on the journal.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, cli, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const running: TestDaemon[] = [];
const dirs: string[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});
test.after(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Story {
  dir: string;
  stateDir: string;
  disk: string;
  /** The faketime offset file: the clock of every process started with `env` is real time plus it. */
  offset: (spec: string) => void;
  env: NodeJS.ProcessEnv;
  opts: { stateDir: string; lockspace: string; hostId: string; env: NodeJS.ProcessEnv };
}

function story(): Story {
  assert.ok(fs.existsSync(FAKETIME), 'apt-get install faketime');
  const dir = tmpdir('vmlockd-clock-back-');
  dirs.push(dir);
  fs.mkdirSync(path.join(dir, 'images'));
  const disk = path.join(dir, 'images', 'db.qcow2');
  fs.writeFileSync(disk, 'image');
  const rc = path.join(dir, 'faketime.rc');
  const offset = (spec: string) => fs.writeFileSync(rc, `${spec}\n`);
  offset('+0');
  const env = { LD_PRELOAD: FAKETIME, FAKETIME_TIMESTAMP_FILE: rc, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' };
  const stateDir = path.join(dir, 'state');
  return { dir, stateDir, disk, offset, env, opts: { stateDir, lockspace: path.join(dir, 'ls'), hostId: 'ha', env } };
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.is(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

interface Fact {
  seq: number;
  at: string;
  kind: string;
  payload: { owner?: { name?: string }; wallAt?: string; from?: string; to?: string };
}

function facts(s: Story, extra: string[] = []): Fact[] {
  return JSON.parse(ok(cli(['audit', '--state-dir', s.stateDir, '--json', '--limit', '0', ...extra]), 'audit list')) as Fact[];
}

interface Reading {
  holders: Array<{ owner: { name?: string } }>;
}
interface Answer {
  holders: Array<{ owner: { name?: string } }>;
  ambiguous?: { readings: Reading[] };
  current?: { step: number; asOf: number };
}

function at(s: Story, t: string, env?: NodeJS.ProcessEnv): Answer {
  return JSON.parse(ok(cli(['audit', '--state-dir', s.stateDir, '--disk', s.disk, '--at', t, '--json'], env ? { env } : {}), `audit --at ${t}`)) as Answer;
}

const names = (hs: Array<{ owner: { name?: string } }>) => hs.map((h) => h.owner.name).sort().join(',');
const plus = (iso: string, s: number) => new Date(Date.parse(iso) + s * 1000).toISOString();

/** The journal's times never go back along seq, and the step is journaled between alpha's release and beta's grant. */
function checkOrder(s: Story): { alphaAt: string; step: Fact } {
  const all = facts(s);
  for (let i = 1; i < all.length; i++) {
    assert.ok(all[i]!.at >= all[i - 1]!.at, `seq ${all[i]!.seq} (${all[i]!.kind}) at ${all[i]!.at} is before seq ${all[i - 1]!.seq} at ${all[i - 1]!.at}`);
  }
  const alpha = all.find((f) => f.kind === 'LockAcquired' && f.payload.owner?.name === 'alpha')!;
  const released = all.find((f) => f.kind === 'LockReleased')!;
  const beta = all.find((f) => f.kind === 'LockAcquired' && f.payload.owner?.name === 'beta')!;
  const step = all.find((f) => f.kind === 'ClockStepped');
  assert.ok(step !== undefined, `a ClockStepped fact: ${all.map((f) => `${f.seq} ${f.kind} ${f.at}`).join('; ')}`);
  assert.ok(step!.seq > released.seq && step!.seq < beta.seq, 'the step lies between the release and the new grant');
  assert.ok(step!.payload.to! < step!.payload.from!, `the step goes back: ${JSON.stringify(step!.payload)}`);
  // A start's step comes right after its DaemonStarted: the fact before a start says how the last run ended.
  if ((step!.payload as { seenBy?: string }).seenBy === 'start') {
    assert.is(all.find((f) => f.seq === step!.seq - 1)?.kind, 'DaemonStarted');
    assert.is(all.find((f) => f.seq === step!.seq - 2)?.kind, 'DaemonStopped');
  }
  // beta's grant keeps the clock's own reading, 3 minutes before the label it is ordered by.
  assert.ok(beta.payload.wallAt !== undefined && beta.payload.wallAt < beta.at, `beta's grant keeps its wall time: ${JSON.stringify(beta)}`);
  return { alphaAt: alpha.at, step: step! };
}

/** A moment the clock passed twice: alpha held it the first time, beta the second. */
function checkAmbiguous(s: Story, alphaAt: string): void {
  const t = plus(alphaAt, 200);
  const a = at(s, t);
  assert.ok(a.ambiguous !== undefined, `--at ${t} is ambiguous: ${JSON.stringify(a)}`);
  assert.equal(a.holders, [], 'no holder is picked');
  assert.equal(a.ambiguous!.readings.map((r) => names(r.holders)), ['alpha', 'beta'], JSON.stringify(a.ambiguous));
  const table = ok(cli(['audit', '--state-dir', s.stateDir, '--disk', s.disk, '--at', t]), 'table');
  assert.match(table, /ambiguous/);
  assert.match(table, /alpha/);
  assert.match(table, /beta/);
  // Before alpha's release and before the step's window: alpha, surely.
  assert.is(names(at(s, plus(alphaAt, 60)).holders), 'alpha');
  // A list over the window says the clock stepped back there (stderr).
  assert.match(cli(['audit', '--state-dir', s.stateDir, '--disk', s.disk]).stderr, /clock on this host stepped back/);
  // What happened while the clock showed 100-200 s after alpha's grant: beta's grant, made on the second pass.
  const listed = facts(s, ['--disk', s.disk, '--since', plus(alphaAt, 100), '--until', plus(alphaAt, 200)]);
  assert.equal(listed.map((f) => `${f.kind} ${f.payload.owner?.name}`), ['LockAcquired beta'], JSON.stringify(listed));
}

/** The same from the published history, as every host asks it: this host's answer is ambiguous, no holder named. */
async function checkCluster(s: Story, alphaAt: string): Promise<void> {
  const t = plus(alphaAt, 200);
  const ask = (extra: string[]) => cli(['audit', '--cluster', '--lockspace', s.opts.lockspace, '--cache', path.join(s.dir, 'cache'), '--disk', s.disk, '--at', t, ...extra], { env: { HOME: s.dir, VMLOCKD_CONFIG: '/nonexistent' } });
  const a = await until('beta published', () => {
    const r = ask(['--json']);
    if (r.code !== 0) return undefined;
    const v = JSON.parse(r.stdout) as { holders: unknown[]; hosts: Array<{ host: string; answer: Answer }> };
    return v.hosts[0]?.answer.ambiguous !== undefined ? v : undefined;
  });
  assert.equal(a.holders, []);
  assert.equal(a.hosts[0]!.answer.ambiguous!.readings.map((r) => names(r.holders)), ['alpha', 'beta']);
  const table = ok(ask([]), 'cluster table');
  assert.match(table, /ambiguous on ha/);
  assert.match(table, /the clock on host ha stepped back/);
}

/** The timeline never draws two exclusive holders at once, nor an interval that ends before it begins. */
function checkTimeline(s: Story, alphaAt: string): void {
  const t = JSON.parse(ok(cli(['audit', '--state-dir', s.stateDir, '--disk', s.disk, '--timeline', '--json', '--since', plus(alphaAt, -1), '--until', plus(alphaAt, 600)]), 'timeline')) as {
    intervals: Array<{ owner: { name?: string }; from: string; to?: string }>;
  };
  const iv = t.intervals;
  assert.is(iv.length, 2, JSON.stringify(iv));
  for (const i of iv) assert.ok(i.to === undefined || i.from <= i.to, `negative interval ${JSON.stringify(i)}`);
  assert.ok(iv[0]!.to !== undefined && iv[0]!.to <= iv[1]!.from, `overlapping intervals ${JSON.stringify(iv)}`);
}

test('the clock set back across a restart: journaled, ordered by seq, --at in the window ambiguous', async () => {
  const s = story();
  const a = await startDaemon(s.opts);
  running.push(a);
  ok(a.cli(['acquire', '--vm', UUID1, '--name', 'alpha', s.disk]), 'alpha takes the disk');
  s.offset('+300');
  ok(a.cli(['release', '--vm', UUID1, s.disk]), 'alpha lets go 5 minutes later');
  await a.kill('SIGTERM');
  running.splice(0);
  s.offset('+120');
  const b = await startDaemon(s.opts);
  running.push(b);
  ok(b.cli(['acquire', '--vm', UUID2, '--name', 'beta', s.disk]), 'beta takes it after the clock was set back');
  await until('the facts in SQLite', () => facts(s).some((f) => f.payload.owner?.name === 'beta'));
  const { alphaAt } = checkOrder(s);
  checkAmbiguous(s, alphaAt);
  checkTimeline(s, alphaAt);
  await checkCluster(s, alphaAt);
  assert.match(b.stdout + b.stderr, /CLOCK STEPPED BACK/);
});

test('the clock stepped back under a running daemon: journaled at once, --at in the window ambiguous, --at now not alpha', async () => {
  const s = story();
  const a = await startDaemon(s.opts);
  running.push(a);
  ok(a.cli(['acquire', '--vm', UUID1, '--name', 'alpha', s.disk]), 'alpha takes the disk');
  s.offset('+300');
  ok(a.cli(['release', '--vm', UUID1, s.disk]), 'alpha lets go 5 minutes later');
  await new Promise((r) => setTimeout(r, 300));
  s.offset('+120');
  // The monotonic clock shows the step within a second, before any command comes.
  await new Promise((r) => setTimeout(r, 2000));
  const logged = /CLOCK STEPPED BACK/.test(a.stdout + a.stderr);
  ok(a.cli(['acquire', '--vm', UUID2, '--name', 'beta', s.disk]), 'beta takes it after the step');
  await until('the facts in SQLite', () => facts(s).some((f) => f.payload.owner?.name === 'beta'));
  const { alphaAt } = checkOrder(s);
  checkAmbiguous(s, alphaAt);
  checkTimeline(s, alphaAt);
  await checkCluster(s, alphaAt);
  // On this host's clock (set back), "now" is inside the window: answered by the current pass, beta,
  // as `locks` says (clock27 (b): it was "ambiguous" like any moment in the window).
  const nowAnswer = at(s, 'now', s.env);
  assert.is(names(nowAnswer.holders), 'beta', `--at now names beta: ${JSON.stringify(nowAnswer)}`);
  assert.is(nowAnswer.ambiguous, undefined, `--at now is the present, not ambiguous: ${JSON.stringify(nowAnswer)}`);
  assert.ok(nowAnswer.current !== undefined, `--at now says it took the current pass: ${JSON.stringify(nowAnswer)}`);
  assert.match(ok(cli(['audit', '--state-dir', s.stateDir, '--disk', s.disk, '--at', 'now'], { env: s.env }), '--at now table'), /"now" is answered by the current pass/);
  assert.ok(logged, `the step logged before any command: ${a.stdout}${a.stderr}`);
});

test.run();
