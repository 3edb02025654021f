// review31b (fix31's CSV state/reading/note columns): audit --cluster --at after a host's journal went
// on under a new host id (review15, cluster-host-rename.int.ts's fixture). The table says who held the
// disk through it is unknown and --json carries `changed`; the CSV drops that host's answer entirely:
// formatClusterHolders writes rows from answerRows(answer), and holdersOf empties that host's holders
// (they are `unknown`), so neither a holder row nor a marked row is left: header only, the CSV of
// 'nobody held it', while web1 really held the disk then (re-taken under hv-new).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, cli, tmpdir, UUID1, UUID2 } from '../helpers/daemon.js';
import { publishedAll, status, waitFor } from '../helpers/published.js';

const test = suite('review31b: cluster --at --csv after a host id change');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});



test('audit --cluster --at --csv after the host id change: a row for hv-old marked unknown, not the CSV of nobody', async () => {
  const root = tmpdir('vmlockd-r31b-rename-');
  const ls = path.join(root, 'lockspace');
  const stateDir = path.join(root, 'state');
  const disk = path.join(root, 'd1.img');
  fs.writeFileSync(disk, '');
  const env = { VMLOCKD_PUBLISH_INTERVAL_MS: '20' };
  const a = new TestDaemon({ stateDir, lockspace: ls, hostId: 'hv-old', env });
  running.push(await a.start());
  assert.is(a.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  await publishedAll(a.socket);
  await a.kill('SIGTERM');
  running.splice(0);
  const renamed = new TestDaemon({ stateDir, lockspace: ls, hostId: 'hv-new', env });
  running.push(await renamed.start());
  await waitFor('publication to stop at the host id change', async () => {
    const s = await status(renamed.socket);
    return s.publication?.lastError?.code === 'VMLOCKD_ERR_PUBLISH_HOST' ? s : undefined;
  });
  const during = new Date().toISOString(); // web1 holds the disk through hv-new now (re-taken at its start)
  await renamed.kill('SIGTERM');
  running.splice(0);

  const home = path.join(root, 'auditor');
  fs.mkdirSync(home, { recursive: true });
  const e = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const q = (args: string[]) => cli(['audit', '--cluster', '--lockspace', ls, '--disk', disk, '--at', during, ...args], { env: e });
  const table = q([]);
  assert.match(table.stdout, /went on as host hv-new .*unknown/, table.stdout);
  const csv = q(['--csv']);
  assert.is(csv.code, 0, csv.stderr);
  const lines = csv.stdout.trim().split(/\r?\n/);
  assert.is(lines[0], 'host,disk,at,vm_uuid,vm_name,mode,generation,since,resource,seq,via,journal,state,reading,note');
  // The table's answer is 'unknown' for hv-old: the CSV must carry a row of hv-old that says so (a
  // state other than agreed, a note naming the host id change), not a header alone.
  const old = lines.slice(1).filter((l) => l.startsWith('hv-old,'));
  assert.ok(old.length > 0, `the CSV has no row for hv-old (header only reads as nobody held ${disk} at ${during}):\n${csv.stdout}`);
  assert.ok(old.every((l) => !/,agreed,/.test(l) && /hv-new|unknown/.test(l)), `hv-old's rows marked unknown:\n${csv.stdout}`);
  fs.rmSync(root, { recursive: true, force: true });
});

test.run();
