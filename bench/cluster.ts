// Acquire round trip and `who` latency on a GlusterFS mount beside a local directory, in one run.
//   node --import tsx bench/cluster.ts [--quick] [--gluster-state DIR]
// The GlusterFS volume comes from .ci/gluster-up.sh (DIR/gluster/env); without one the local
// figures are printed alone and the run says why.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { who } from '../src/cli/cluster-view.js';
import { startBenchDaemon, writeReadmeSection } from './lib.js';

const QUICK = process.argv.includes('--quick');
const SAMPLES = QUICK ? 300 : 2000;
const stateArg = process.argv.indexOf('--gluster-state');
const GLUSTER_STATE = stateArg > 0 ? process.argv[stateArg + 1] : process.env.VMLOCKD_E2E_GLUSTER_STATE;

function glusterMount(): string | string[] {
  if (!GLUSTER_STATE) return ['no GlusterFS volume: pass --gluster-state DIR (from .ci/gluster-up.sh DIR)'];
  const file = path.join(GLUSTER_STATE, 'gluster', 'env');
  if (!fs.existsSync(file)) return [`${file} does not exist`];
  const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('GLUSTER_MNT_A='));
  return line ? line.slice('GLUSTER_MNT_A='.length) : [`${file} has no GLUSTER_MNT_A`];
}

function post(agent: http.Agent, socket: string, p: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = http.request({ agent, socketPath: socket, method: 'POST', path: p, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function measure(label: string, lockspace: string): Promise<{ label: string; acq50: number; acq99: number; who50: number; who99: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-cluster-'));
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const disk = path.join(images, 'bench.qcow2');
  fs.writeFileSync(disk, 'x');
  const { proc, socket } = await startBenchDaemon(dir, lockspace, `bench-${path.basename(dir)}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const vm = { uuid: '00000000-0000-4000-8000-00000000beef', name: 'bench' };
  const acq: number[] = [];
  const whoT: number[] = [];
  try {
    for (let i = 0; i < SAMPLES + 50; i++) {
      const t0 = performance.now();
      const code = await post(agent, socket, '/v1/acquire', { vm, disks: [{ path: disk }] });
      const t1 = performance.now();
      if (code !== 200) throw new Error(`${label}: acquire answered ${code}`);
      const w = who(disk, lockspace);
      const t2 = performance.now();
      if (w.state !== 'exclusive') throw new Error(`${label}: who says ${w.state}`);
      await post(agent, socket, '/v1/release', { vm });
      if (i >= 50) {
        acq.push((t1 - t0) * 1000);
        whoT.push((t2 - t1) * 1000);
      }
    }
  } finally {
    agent.destroy();
    proc.kill('SIGTERM');
  }
  acq.sort((a, b) => a - b);
  whoT.sort((a, b) => a - b);
  return { label, acq50: pct(acq, 50), acq99: pct(acq, 99), who50: pct(whoT, 50), who99: pct(whoT, 99) };
}

async function main(): Promise<void> {
  const localDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-bench-ls-'));
  const results = [await measure('local directory', localDir)];
  const mnt = glusterMount();
  const notes: string[] = [];
  if (typeof mnt === 'string') results.push(await measure('GlusterFS mount', path.join(mnt, `bench-${process.pid}`)));
  else notes.push(...mnt);
  const base = results[0]!;
  const us = (n: number) => `${n.toFixed(0)} us`;
  const table = [
    '| lockspace | acquire p50 | acquire p99 | who p50 | who p99 | acquire p50 vs local |',
    '|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.label} | ${us(r.acq50)} | ${us(r.acq99)} | ${us(r.who50)} | ${us(r.who99)} | ${(r.acq50 / base.acq50).toFixed(1)}x |`),
  ].join('\n');
  const stamp = `Measured ${new Date().toISOString().slice(0, 16)}Z, ${SAMPLES} samples each, acquire through the control socket (keep-alive), \`who\` in-process (the CLI's code path without the process start).`;
  process.stdout.write(`${stamp}\n\n${table}\n${notes.map((n) => `\n(${n})`).join('')}\n`);
  if (!QUICK && notes.length === 0) {
    writeReadmeSection('bench:cluster', `${stamp}\n\n${table}`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
