// `vmlockd audit --cluster` with real daemons on one lockspace: every host's history answered from its
// published segments, from a process that never ran a daemon (its own cache directory, no state dir).
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, UUID3, cli, startDaemon, until, type TestDaemon } from '../helpers/daemon.js';
import { readPublished } from '../helpers/published.js';
import { cluster, type Cluster } from '../helpers/cluster-dir.js';

type Site = Cluster;
const site = (): Site => cluster('vmlockd-cluster-audit-');

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

async function host(s: Site, id: string): Promise<TestDaemon> {
  const d = await startDaemon({ stateDir: path.join(s.dir, `state-${id}`), lockspace: s.lockspace, hostId: id });
  running.push(d);
  return d;
}

function journalCount(d: TestDaemon, kind: string): number {
  const db = new Database(path.join(d.opts.stateDir, 'journal.db'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM facts WHERE kind = ?').get(kind) as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Until each host's own daemon has published its whole journal (a host to be killed: before the kill). */
async function publish(s: Site, ...hosts: TestDaemon[]): Promise<void> {
  for (const d of hosts) {
    const dir = path.join(s.lockspace, '.journal', d.opts.hostId!);
    await until(`${d.opts.hostId} published its journal`, () => {
      const db = new Database(path.join(d.opts.stateDir, 'journal.db'), { readonly: true });
      const last = (db.prepare('SELECT max(seq) AS n FROM facts').get() as { n: number }).n;
      db.close();
      const facts = readPublished(dir, d.opts.hostId!).facts;
      return facts.length > 0 && facts[facts.length - 1]!.seq === last;
    });
  }
}

/** The CLI as a machine that never ran a daemon: no config, no state directory, its own cache home. */
function audit(s: Site, args: string[]): { code: number; stdout: string; stderr: string } {
  const home = path.join(s.dir, 'auditor-home');
  fs.mkdirSync(home, { recursive: true });
  return cli(['audit', '--cluster', '--lockspace', s.lockspace, ...args], { env: { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
}

test('three hosts: --disk --at names the holder and its host, from any host\'s history, with no daemon on the asking machine', async () => {
  const s = site();
  const [a, b, c] = [await host(s, 'hv-a'), await host(s, 'hv-b'), await host(s, 'hv-c')];
  const d1 = s.disk('d1.img');
  const d2 = s.disk('d2.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', d1]).code, 0);
  await until('A journaled its grant', () => journalCount(a, 'LockAcquired') === 1);
  const held = new Date().toISOString();
  assert.is(a.cli(['release', '--vm', UUID1]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'db1', d1]).code, 0);
  assert.is(c.cli(['acquire', '--vm', UUID3, '--name', 'cache1', d2]).code, 0);
  await until('all journaled', () => journalCount(a, 'LockReleased') === 1 && journalCount(b, 'LockAcquired') === 1 && journalCount(c, 'LockAcquired') === 1);
  await publish(s, a, b, c);

  const then = audit(s, ['--disk', d1, '--at', held, '--json']);
  assert.is(then.code, 0, then.stderr);
  const j = JSON.parse(then.stdout);
  assert.equal(j.holders.map((h: any) => `${h.host}:${h.owner.name}`), ['hv-a:web1']);
  const now = audit(s, ['--disk', d1, '--at', 'now']);
  assert.is(now.code, 0, now.stderr);
  assert.match(now.stdout, /HOST\s+VM/);
  assert.match(now.stdout, /hv-b\s+db1/);
  assert.not.match(now.stdout, /web1/);
  // The cache sits in the user's cache directory (no state directory here), and a second question reads it incrementally.
  assert.ok(fs.readdirSync(path.join(s.dir, 'auditor-home', '.cache', 'vmlockd')).length > 0, 'cache under XDG_CACHE_HOME/vmlockd');
  const list = audit(s, ['--disk', d1, '--csv']);
  assert.is(list.code, 0, list.stderr);
  const rows = list.stdout.trim().split('\r\n').slice(1).map((r) => r.split(','));
  assert.equal(rows.map((r) => `${r[2]}:${r[3]}`), ['hv-a:LockAcquired', 'hv-a:LockReleased', 'hv-b:LockAcquired']);
  const vm = audit(s, ['--vm', 'cache1', '--kind', 'LockAcquired,LockReleased', '--json']);
  assert.equal(JSON.parse(vm.stdout).map((f: any) => `${f.host}:${f.kind}`), ['hv-c:LockAcquired']);
  const clean = audit(s, ['--overlaps']);
  assert.is(clean.code, 0, clean.stderr);
  assert.match(clean.stdout, /^no overlaps/);
});

test('a host SIGKILLed and never restarted stays answerable: its holder before the kill, the crash note after', async () => {
  const s = site();
  const [a, b] = [await host(s, 'hv-a'), await host(s, 'hv-b')];
  const d1 = s.disk('d1.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', d1]).code, 0);
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'other', s.disk('d2.img')]).code, 0);
  await until('journaled', () => journalCount(a, 'LockAcquired') === 1 && journalCount(b, 'LockAcquired') === 1);
  const before = new Date().toISOString();
  await publish(s, a);
  await a.kill('SIGKILL');
  running.splice(running.indexOf(a), 1);
  await publish(s, b);
  const r1 = audit(s, ['--disk', d1, '--at', before, '--json']);
  assert.is(r1.code, 0, r1.stderr);
  const j1 = JSON.parse(r1.stdout);
  // The kill came after `before`, but the journal cannot know when exactly: the answer says so.
  assert.ok(j1.holders.length === 1 || j1.hosts[0].answer.crash?.notRestarted === true, r1.stdout);
  const r2 = audit(s, ['--disk', d1, '--at', 'now']);
  assert.is(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, /nobody held/);
  assert.match(r2.stdout, /host hv-a is not running and did not stop cleanly/);
  const tl = audit(s, ['--timeline', '--disk', d1, '--width', '100']);
  assert.is(tl.code, 0, tl.stderr);
  assert.match(tl.stdout, /hv-a: web1/);
  assert.match(tl.stdout, /hv-a: daemon down\s+\|[ █]*~+\|/);
});

test('--overlaps finds the restart gap: A held, A\'s daemon down, B granted, A restarted and lost it', async () => {
  const s = site();
  const [a, b] = [await host(s, 'hv-a'), await host(s, 'hv-b')];
  const d1 = s.disk('d1.img');
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', d1]).code, 0);
  await until('A journaled', () => journalCount(a, 'LockAcquired') === 1);
  await publish(s, a);
  await a.kill('SIGKILL');
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'intruder', d1]).code, 0);
  await a.start();
  await until('LeaseLost journaled', () => journalCount(a, 'LeaseLost') === 1 && journalCount(b, 'LockAcquired') === 1);
  await publish(s, a, b);
  const r = audit(s, ['--overlaps', '--json']);
  assert.is(r.code, 0, r.stderr);
  const o = JSON.parse(r.stdout);
  assert.is(o.length, 1, r.stdout);
  assert.equal([o[0].a.host, o[0].a.owner.name, o[0].a.end, o[0].b.host, o[0].b.owner.name], ['hv-a', 'web1', 'lost', 'hv-b', 'intruder']);
  assert.is(o[0].from, o[0].b.from, 'from B\'s grant');
  assert.is(o[0].to, o[0].a.to, 'to A\'s LeaseLost');
  const table = audit(s, ['--overlaps', '--disk', d1]);
  assert.match(table.stdout, /1 overlap\(s\)/);
});

test.run();
