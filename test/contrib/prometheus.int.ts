// contrib/prometheus: the alerting rules pass `promtool check rules` and their unit tests
// (`promtool test rules`), and a real Prometheus server, started here on free ports with a temporary
// config and TSDB, scrapes a running daemon, loads the rules and answers a query for its series
// (and every query of the Grafana dashboard, contrib/prometheus/vmlockd.grafana.json).
// Skips with a clear message only if promtool / prometheus are absent (.ci/install-system.sh installs
// Debian's prometheus package); in CI a skip fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';

const CONTRIB = path.join(path.dirname(path.dirname(path.dirname(fileURLToPath(import.meta.url)))), 'contrib', 'prometheus');

function has(bin: string): boolean {
  return spawnSync(bin, ['--version'], { encoding: 'utf8' }).status === 0;
}

if (!has('promtool') || !has('prometheus')) {
  test('prometheus rules and scrape', () => {
    const why = 'promtool or prometheus not on PATH (Debian package prometheus; .ci/install-system.sh installs it)';
    if (process.env.CI === 'true') assert.unreachable(`the prometheus suite cannot run in CI: ${why}`);
    console.log(`  skipped: prometheus suite: ${why}`);
  });
} else {
  test('promtool check rules: contrib/prometheus/vmlockd.rules.yml is valid', () => {
    const r = spawnSync('promtool', ['check', 'rules', path.join(CONTRIB, 'vmlockd.rules.yml')], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS: 8 rules found/);
  });

  test('promtool test rules: every alert fires on its condition and not without it', () => {
    const r = spawnSync('promtool', ['test', 'rules', 'vmlockd.rules.test.yml'], { cwd: CONTRIB, encoding: 'utf8' });
    assert.is(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /SUCCESS/);
  });

  test('the dashboard\'s LeaseLost panel shows a LeaseLost journaled at a restart, as VmlockdLeaseLost does (the counter reads 1 -> 1, the time gauge moves)', () => {
    const dash = JSON.parse(fs.readFileSync(path.join(CONTRIB, 'vmlockd.grafana.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string; legendFormat?: string }> }> };
    const target = dash.panels.flatMap((p) => p.targets).find((t) => t.legendFormat?.startsWith('LeaseLost'));
    assert.ok(target, 'a LeaseLost query in the dashboard');
    const expr = target.expr.replaceAll('$instance', '.*');
    // The restart samples of vmlockd.rules.test.yml (test/contrib/alert-leaselost-restart.int.ts
    // takes them from real daemons): a LeaseLost at minute 1, a restart at 31, another at its start.
    const dir = tmpdir('vmlockd-grafana-');
    try {
      const at = (min: number, value: number) => `      - expr: '${expr.replaceAll("'", "''")}'\n        eval_time: ${min}m\n        exp_samples:\n          - labels: '{instance="hv-a:9464",job="vmlockd"}'\n            value: ${value}\n`;
      fs.writeFileSync(
        path.join(dir, 't.yml'),
        `evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'vmlockd_lease_lost_total{instance="hv-a:9464",job="vmlockd"}'
        values: '0 1x29 _ 1x30'
      - series: 'vmlockd_last_lease_lost_timestamp_seconds{instance="hv-a:9464",job="vmlockd"}'
        values: '0 60x29 _ 1920x30'
    promql_expr_test:
${at(5, 1)}${at(20, 0)}${at(34, 1)}${at(50, 0)}`,
      );
      const r = spawnSync('promtool', ['test', 'rules', 't.yml'], { cwd: dir, encoding: 'utf8' });
      assert.is(r.status, 0, `${expr}\n${r.stdout}${r.stderr}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a real Prometheus scrapes a running daemon, loads the rules and answers a query for vmlockd_locks_held', async () => {
    const dir = tmpdir('vmlockd-prom-');
    const metricsPort = await freePort();
    const promPort = await freePort();
    const disk = path.join(dir, 'a.img');
    fs.writeFileSync(disk, 'image');
    let d: TestDaemon | undefined;
    let prom: ChildProcess | undefined;
    let log = '';
    try {
      d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: 'hv-p', extra: ['--metrics-address', `127.0.0.1:${metricsPort}`] });
      assert.is(d.cli(['acquire', '--vm', UUID1, disk]).code, 0);
      const config = path.join(dir, 'prometheus.yml');
      fs.writeFileSync(
        config,
        [
          'global: { scrape_interval: 1s, evaluation_interval: 1s }',
          `rule_files: [${JSON.stringify(path.join(CONTRIB, 'vmlockd.rules.yml'))}]`,
          'scrape_configs:',
          '  - job_name: vmlockd',
          `    static_configs: [{ targets: ["127.0.0.1:${metricsPort}"] }]`,
          '',
        ].join('\n'),
      );
      prom = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      prom.stdout!.on('data', (b: Buffer) => (log += b.toString()));
      prom.stderr!.on('data', (b: Buffer) => (log += b.toString()));
      const api = async (p: string): Promise<any> => {
        try {
          const res = await fetch(`http://127.0.0.1:${promPort}${p}`);
          return res.ok ? await res.json() : undefined;
        } catch {
          return undefined; // not listening yet
        }
      };
      const t0 = Date.now();
      let last: unknown;
      for (;;) {
        assert.ok(prom.exitCode === null, `prometheus exited (${prom.exitCode}):\n${log}`);
        last = await api(`/api/v1/query?query=${encodeURIComponent('vmlockd_locks_held{job="vmlockd"}')}`);
        const r = (last as { data?: { result?: Array<{ value: [number, string] }> } } | undefined)?.data?.result;
        if (r && r.length === 1 && r[0]!.value[1] === '1') break;
        if (Date.now() - t0 > 60_000) assert.unreachable(`no vmlockd_locks_held 1 from Prometheus in 60 s: ${JSON.stringify(last)}\n${log}`);
        await new Promise((res) => setTimeout(res, 500));
      }
      const rules = await api('/api/v1/rules');
      const group = rules?.data?.groups?.find((g: { name: string }) => g.name === 'vmlockd');
      assert.ok(group, JSON.stringify(rules));
      assert.is(group.rules.length, 8);
      for (const r of group.rules) assert.is(r.health, 'ok', JSON.stringify(r));
      const q = await api(`/api/v1/query?query=${encodeURIComponent('sum(vmlockd_acquisitions_total{job="vmlockd",source="api"})')}`);
      assert.is(q?.data?.result?.[0]?.value?.[1], '1', JSON.stringify(q));
      // Every query of the Grafana dashboard beside the rules is valid PromQL this server answers.
      const dash = JSON.parse(fs.readFileSync(path.join(CONTRIB, 'vmlockd.grafana.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
      let n = 0;
      for (const p of dash.panels) {
        for (const t of p.targets) {
          const expr = t.expr.replaceAll('$instance', '.*');
          const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`);
          const body = (await res.json()) as { status: string; error?: string };
          assert.is(body.status, 'success', `${p.title}: ${expr}: ${body.error}`);
          n++;
        }
      }
      assert.ok(n >= 10, `${n} dashboard queries`);
    } finally {
      if (prom && prom.exitCode === null) {
        const exited = new Promise((r) => prom!.once('exit', r));
        prom.kill('SIGKILL');
        await exited;
      }
      await d?.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
