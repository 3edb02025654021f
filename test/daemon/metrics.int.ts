// The Prometheus endpoint of a real daemon: counters and latency histograms per front door move as
// commands go through the control API and JSON lines; locks by mode, hosts alive and gone in the
// lockspace, build info and Node's process metrics are served (src/daemon/metrics.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, UUID3, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

/** One sample's value from the text format, or undefined when the series is absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

test('metrics: acquisitions, refusals, releases and latency per front door (api, jsonl); locks by mode; hosts alive and gone', async () => {
  const dir = tmpdir();
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'images'));
  const disk = (n: string) => {
    const p = path.join(dir, 'images', n);
    if (!fs.existsSync(p)) fs.writeFileSync(p, 'image');
    return p;
  };
  const port = await freePort();
  const a = await startDaemon({ stateDir: path.join(dir, 'state-a'), lockspace, hostId: 'hv-a', extra: ['--metrics-address', `127.0.0.1:${port}`] });
  running.push(a);
  const b = await startDaemon({ stateDir: path.join(dir, 'state-b'), lockspace, hostId: 'hv-b' });
  running.push(b);
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.is(res.status, 200);
    return res.text();
  };

  const before = await scrape();
  assert.is(sample(before, 'vmlockd_acquisitions_total{source="api"}'), undefined);
  assert.is(sample(before, 'vmlockd_lease_lost_total'), 0);
  assert.is(sample(before, 'vmlockd_conflicts_total'), 0);
  // Publication (issue 15) is on by default: its gauges are part of the scrape.
  assert.is(sample(before, 'vmlockd_publish_enabled'), 1);
  assert.ok(sample(before, 'vmlockd_publish_lag_facts') !== undefined, 'vmlockd_publish_lag_facts is scraped');

  // hv-b holds x.img: hv-a's acquires of it are refused, whichever door they come through.
  assert.is(b.cli(['acquire', '--vm', UUID3, disk('x.img')]).code, 0);
  // Control API: one acquire, one refusal, one release.
  assert.is(a.cli(['acquire', '--vm', UUID1, disk('a.img')]).code, 0);
  assert.is(a.cli(['acquire', '--vm', UUID1, disk('x.img')]).code, 3);
  // JSON lines: a VM started (acquire, shared disk too), another refused, the first stopped (release).
  const lines = [
    { type: 'started', vm: { uuid: UUID2 }, disks: [{ path: disk('b.img') }, { path: disk('s.img'), shareable: true }] },
    { type: 'started', vm: { uuid: UUID3 }, disks: [{ path: disk('x.img') }] },
  ].map((l) => JSON.stringify(l));
  const ing = a.cli(['ingest', '-'], { input: lines.join('\n') + '\n' });
  assert.is(ing.code, 3, ing.stdout + ing.stderr);

  let text = await scrape();
  assert.is(sample(text, 'vmlockd_acquisitions_total{source="api"}'), 1, text);
  assert.is(sample(text, 'vmlockd_refusals_total{source="api",kind="acquire"}'), 1);
  assert.is(sample(text, 'vmlockd_acquisitions_total{source="jsonl"}'), 1);
  assert.is(sample(text, 'vmlockd_refusals_total{source="jsonl",kind="acquire"}'), 1);
  assert.is(sample(text, 'vmlockd_request_duration_seconds_count{source="api",kind="acquire"}'), 2);
  assert.is(sample(text, 'vmlockd_request_duration_seconds_count{source="jsonl",kind="acquire"}'), 2);
  assert.is(sample(text, 'vmlockd_request_duration_seconds_bucket{le="+Inf",source="api",kind="acquire"}'), 2);
  assert.is(sample(text, 'vmlockd_locks_held_by_mode{mode="exclusive"}'), 2);
  assert.is(sample(text, 'vmlockd_locks_held_by_mode{mode="shared"}'), 1);
  // The names from before prom-client still answer.
  assert.is(sample(text, 'vmlockd_locks_held'), 3);
  assert.is(sample(text, 'vmlockd_facts_total{kind="LockRefused"}'), 2);
  assert.match(text, /^# TYPE vmlockd_seconds_since_verified gauge$/m);
  assert.match(text, /^vmlockd_build_info\{version="[^"]+",node="20\.[^"]+"\} 1$/m);
  assert.match(text, /^process_cpu_seconds_total \d/m);
  assert.match(text, /^nodejs_heap_size_used_bytes \d/m);
  assert.is(sample(text, 'vmlockd_lockspace_hosts{state="alive"}'), 2);
  assert.is(sample(text, 'vmlockd_lockspace_host_up{host="hv-b"}'), 1);
  assert.is(sample(text, 'vmlockd_lockspace_settings_mismatch'), 0);
  assert.ok((sample(text, 'vmlockd_last_verified_timestamp_seconds') ?? 0) > 1.7e9);
  // Journal: the staging file is fdatasync'ed per group commit (the default journal_sync), each timed.
  assert.ok((sample(text, 'vmlockd_journal_sync_seconds_count') ?? 0) >= 4, 'journal syncs counted');
  assert.is(typeof sample(text, 'vmlockd_journal_pending_facts'), 'number');

  // Releases through both doors.
  assert.is(a.cli(['release', '--vm', UUID1, disk('a.img')]).code, 0);
  assert.is(a.cli(['ingest', '-'], { input: JSON.stringify({ type: 'stopped', vm: { uuid: UUID2 } }) + '\n' }).code, 0);
  text = await scrape();
  assert.is(sample(text, 'vmlockd_releases_total{source="api"}'), 1, text);
  assert.is(sample(text, 'vmlockd_releases_total{source="jsonl"}'), 1);
  assert.is(sample(text, 'vmlockd_request_duration_seconds_count{source="api",kind="release"}'), 1);
  assert.is(sample(text, 'vmlockd_locks_held'), 0);
  assert.is(sample(text, 'vmlockd_acquisitions_total{source="api"}'), 1);

  // hv-b dies: the lockspace says so once the host-file read (cached 10 s) is refreshed.
  await b.kill('SIGKILL');
  let gone = '';
  const t0 = Date.now();
  for (let i = 0; ; i++) {
    const t = await scrape();
    if (sample(t, 'vmlockd_lockspace_host_up{host="hv-b"}') === 0 && sample(t, 'vmlockd_lockspace_hosts{state="gone"}') === 1) break;
    gone = t;
    if (Date.now() - t0 > 40_000) assert.unreachable(`hv-b not seen gone in 40 s:\n${gone}`);
    await new Promise((r) => setTimeout(r, 250));
  }
});

test.run();
