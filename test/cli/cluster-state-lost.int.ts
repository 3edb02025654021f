// a host's state directory lost while its VM holds a disk (new journal id): audit --cluster
// across the two journals of one host.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, cli, tmpdir, UUID1, UUID2 } from '../helpers/daemon.js';
import { status } from '../helpers/published.js';

const test = suite('cluster: a host whose state directory was lost');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});
async function caughtUp(d: TestDaemon) {
  for (const deadline = Date.now() + 30_000; ; ) {
    const st = await status(d.socket);
    if (st.publication?.publishedSeq === st.lastSeq) return st;
    if (Date.now() > deadline) throw new Error('not caught up');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('one host, two journals, a disk held across the loss, then released; another host takes it after', async () => {
  const root = tmpdir('vmlockd-r15-lost-');
  const ls = path.join(root, 'lockspace');
  const disk = path.join(root, 'd1.img');
  fs.writeFileSync(disk, '');
  const env = { VMLOCKD_PUBLISH_INTERVAL_MS: '20' };
  const a1 = new TestDaemon({ stateDir: path.join(root, 'a-state'), lockspace: ls, hostId: 'hv-a', env });
  running.push(await a1.start());
  assert.is(a1.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  await caughtUp(a1);
  const during = new Date().toISOString();
  await a1.kill('SIGKILL');
  running.splice(0);
  fs.rmSync(path.join(root, 'a-state'), { recursive: true });
  const a2 = new TestDaemon({ stateDir: path.join(root, 'a-state'), lockspace: ls, hostId: 'hv-a', env });
  running.push(await a2.start());
  await caughtUp(a2);
  const after = new Date().toISOString();
  const rel = a2.cli(['release', '--vm', UUID1]);
  console.log('release after state loss:', rel.code, rel.stdout.trim(), rel.stderr.trim());
  await caughtUp(a2);
  const b = new TestDaemon({ stateDir: path.join(root, 'b-state'), lockspace: ls, hostId: 'hv-b', env });
  running.push(await b.start());
  assert.is(b.cli(['acquire', '--vm', UUID2, '--name', 'db1', disk]).code, 0);
  await caughtUp(b);
  const home = path.join(root, 'aud');
  fs.mkdirSync(home);
  const e = { HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const q = (args: string[]) => cli(['audit', '--cluster', '--lockspace', ls, ...args], { env: e });
  const r1 = q(['--disk', disk, '--at', during]);
  const r2 = q(['--disk', disk, '--at', after]);
  const r3 = q(['--disk', disk, '--at', 'now']);
  const ov = q(['--overlaps']);
  const tl = q(['--disk', disk, '--timeline']);
  console.log('timeline json:', q(['--disk', disk, '--timeline', '--json']).stdout.replace(/\s+/g, ' ').slice(0, 1500));
  console.log('list:', q(['--disk', disk, '--csv']).stdout);
  for (const [n, r] of [['during', r1], ['after restart', r2], ['now', r3], ['overlaps', ov], ['timeline', tl]] as const) console.log(`${n}: ${r.code} ${r.stdout.trim()} | ${r.stderr.trim()}`);
  // r1 (between the last fact and the SIGKILL) is answered with the crash rule: fine.
  assert.match(r2.stdout, /web1/, 'after the restart, before the release, web1 still held the disk');
  assert.match(r3.stdout, /db1/);
  assert.not.match(r3.stdout, /web1/);
  assert.match(ov.stdout, /^no overlaps/);
  // The timeline: web1 was released (LockReleased in the second journal) before db1 was granted, so
  // no column may show both web1 and db1 holding the disk.
  const rows = tl.stdout.split('\n');
  const bar = (name: string) => rows.find((l) => l.includes(`${name} (`))!.split('|')[1]!;
  const w = bar('web1');
  const d = bar('db1');
  const both = [...w].filter((ch, i) => ch === '\u2588' && d[i] === '\u2588').length;
  assert.is(both, 0, `the timeline shows web1 (hv-a) and db1 (hv-b) both holding the disk in ${both} column(s)`);

  // Which journal each row is from: hv-a has two, each counting seq from 1 (review15, item 3).
  const ids = fs.readdirSync(path.join(ls, '.journal', 'hv-a')).filter((n) => n.endsWith('.seg')).map((n) => n.slice(0, 16));
  const [j1, j2] = [...new Set(ids)];
  assert.ok(j1 !== undefined && j2 !== undefined, `hv-a has two journals: ${ids.join(', ')}`);
  const csv = q(['--disk', disk, '--csv']).stdout.trim().split('\r\n');
  const head = csv[0]!.split(',');
  const jc = head.indexOf('journal');
  assert.ok(jc > 0, `a journal column in the CSV header: ${csv[0]}`);
  const hostCol = head.indexOf('host');
  const aJournals = new Set(csv.slice(1).map((l) => l.split(',')).filter((c) => c[hostCol] === 'hv-a').map((c) => c[jc]));
  assert.equal([...aJournals].sort(), [j1, j2].sort(), 'hv-a rows name both of its journals');
  const json = JSON.parse(q(['--disk', disk, '--json']).stdout) as Array<{ host: string; journal?: string }>;
  assert.ok(json.every((f) => typeof f.journal === 'string' && f.journal.length === 16), 'every JSON fact names its journal');
  const table = q(['--disk', disk]).stdout.split('\n');
  assert.match(table[0]!, /\bJOURNAL\b/, 'the table has a JOURNAL column when a host has two journals');
  assert.ok(table.some((l) => l.includes(j1!)) && table.some((l) => l.includes(j2!)), 'both journal ids in the table');
  const holders = q(['--disk', disk, '--at', after, '--csv']).stdout;
  assert.match(holders.split('\r\n')[0]!, /,journal,state,reading,note$/, "the holders CSV names the journal (then the answer's state, reading and note: review31a HIGH 2)");
});

test.run();
