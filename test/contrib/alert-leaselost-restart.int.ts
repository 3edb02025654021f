// VmlockdLeaseLost sees a LeaseLost a daemon journals at its start also when the daemon before it had
// counted one (review14: vmlockd_lease_lost_total is per process and counted before the first scrape,
// so the new process's first sample is 1 like the old one's last and increase() sees nothing). Real
// daemons give the samples (SIGKILL, another process takes the lock file, restart, scrape; twice):
// the counter reads 1 and 1, vmlockd_last_lease_lost_timestamp_seconds moves; promtool evaluates the
// shipped rule on those samples, each process scraped for 30 minutes with a missed scrape between.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { freePort } from '../helpers/ports.js';
import { ROOT, UUID1, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

const children: ChildProcess[] = [];
let d: TestDaemon | undefined;
test.after.each(async () => {
  await d?.kill('SIGKILL');
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

async function holdLock(file: string): Promise<ChildProcess> {
  const p = spawn('python3', ['-c', 'import fcntl,sys,time\nf=open(sys.argv[1],"r+")\nfcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\nprint("locked",flush=True)\ntime.sleep(3600)', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(p);
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (x: string) => (out += x));
  await until('the other process locks the lock file', () => out.includes('locked'));
  return p;
}

async function leaseLost(port: number): Promise<{ count: number; last: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return { count: Number(/^vmlockd_lease_lost_total (\S+)$/m.exec(text)?.[1]), last: Number(/^vmlockd_last_lease_lost_timestamp_seconds (\S+)$/m.exec(text)?.[1]) };
}

test('a LeaseLost journaled at a restart fires VmlockdLeaseLost, also after an earlier one', async () => {
  const root = tmpdir('vmlockd-r14-alert-');
  const lockspace = path.join(root, 'ls');
  const disk = path.join(root, 'a.img');
  fs.writeFileSync(disk, 'image');
  const port = await freePort();
  d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace, extra: ['--metrics-address', `127.0.0.1:${port}`] });
  const samples: Array<{ count: number; last: number }> = [];
  for (let round = 0; round < 2; round++) {
    assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
    await d.kill('SIGKILL');
    const holder = await holdLock(path.join(lockspace, sha256Hex(disk)));
    await d.start();
    await until('the LeaseLost', () => d!.stderr.includes('LEASE LOST'));
    samples.push(await leaseLost(port));
    holder.kill('SIGKILL');
    await until('the lock file free again', () => {
      const r = spawnSync('python3', ['-c', 'import fcntl,sys\nf=open(sys.argv[1],"r+")\nfcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)', path.join(lockspace, sha256Hex(disk))]);
      return r.status === 0;
    });
  }
  assert.equal(samples.map((x) => x.count), [1, 1], 'each process counts its own start LeaseLost');
  assert.ok(samples[0]!.last > 0 && samples[1]!.last > samples[0]!.last, `the last LeaseLost's time moves across the restart: ${JSON.stringify(samples)}`);

  // The scrapes as Prometheus stores them, one a minute, on promtool's clock (it starts at 0): the
  // first process from minute 1 for 30 minutes, a missed scrape for the restart, the second process
  // from minute 32; each LeaseLost's time placed at the minute its process was first scraped.
  const dir = tmpdir('vmlockd-r14-promtool-');
  fs.copyFileSync(path.join(ROOT, 'contrib', 'prometheus', 'vmlockd.rules.yml'), path.join(dir, 'vmlockd.rules.yml'));
  const series = `0 ${samples[0]!.count}x29 _ ${samples[1]!.count}x30`;
  const times = `0 60x29 _ ${60 + Math.max(31 * 60, Math.round(samples[1]!.last - samples[0]!.last))}x30`;
  fs.writeFileSync(
    path.join(dir, 't.yml'),
    `rule_files: [vmlockd.rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'vmlockd_lease_lost_total{instance="hv-a:9464",job="vmlockd"}'
        values: '${series}'
      - series: 'vmlockd_last_lease_lost_timestamp_seconds{instance="hv-a:9464",job="vmlockd"}'
        values: '${times}'
    alert_rule_test:
      - eval_time: 34m
        alertname: VmlockdLeaseLost
        exp_alerts:
          - exp_labels: { severity: critical, instance: 'hv-a:9464', job: vmlockd }
            exp_annotations:
              summary: 'vmlockd on hv-a:9464 journaled a LeaseLost'
              description: 'A VM on hv-a:9464 runs without a disk lock it had; check it now (vmlockd audit --kind LeaseLost).'
`,
  );
  const r = spawnSync('promtool', ['test', 'rules', 't.yml'], { cwd: dir, encoding: 'utf8' });
  // The second LeaseLost alerts (before: no alert, increase() of 1 -> 1 is 0).
  assert.is(r.status, 0, `promtool: the second LeaseLost did not fire VmlockdLeaseLost (series ${series}):\n${r.stdout}${r.stderr}`);
});

test.run();
