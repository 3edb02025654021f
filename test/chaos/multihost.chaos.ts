// Chaos, seeded and reproducible (VMLOCKD_CHAOS_SEED; the seed is printed on failure): 3 daemons on one
// lockspace, random acquire/release through the control API socket and JSON lines (/v1/events),
// SIGKILL/SIGTERM/SIGSTOP and restarts. An external model of acknowledged grants checks: no disk held
// by two VMs at once (unless a LeaseLost names it), every acknowledged unreleased lock is held again
// after a restart (or LeaseLost), what a daemon lists is what the kernel holds (/proc/PID/fdinfo),
// the journal verifies after every crash, and no daemon dies on its own.
// VMLOCKD_CHAOS_SECONDS (default 45) sets the length.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, cli, tmpdir, until } from '../helpers/daemon.js';
import { mulberry32 } from '../helpers/prng.js';

const SEED = Number(process.env.VMLOCKD_CHAOS_SEED ?? Date.now() % 1_000_000);
const SECONDS = Number(process.env.VMLOCKD_CHAOS_SECONDS ?? 45);

function call(socketPath: string, method: string, urlPath: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method, path: urlPath, headers: body ? { 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(20_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** OFD/POSIX lock lines the kernel shows for this process's descriptors on lockspace files. */
function kernelLocks(pid: number, lockspace: string): Set<string> {
  const held = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (path.dirname(target) !== lockspace) continue;
    let info = '';
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    if (/^lock:/m.test(info)) held.add(path.basename(target));
  }
  return held;
}

test(`multi-host chaos (seed ${SEED})`, async () => {
  const rnd = mulberry32(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const dir = tmpdir('vmlockd-chaos-');
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'img'));
  const disks = Array.from({ length: 8 }, (_, i) => {
    const p = path.join(dir, 'img', `d${i}.img`);
    fs.writeFileSync(p, 'x');
    return p;
  });
  const vms = Array.from({ length: 6 }, (_, i) => `cccccccc-0000-4000-8000-${String(i).padStart(12, '0')}`);
  const hosts = ['h0', 'h1', 'h2'].map((id) => new TestDaemon({ stateDir: path.join(dir, `state-${id}`), lockspace, hostId: id }));
  for (const h of hosts) await h.start();
  // The model: disk -> { host, vm } for every acknowledged, unreleased acquisition.
  const model = new Map<string, { host: number; vm: string }>();
  const stats = { ops: 0, granted: 0, refused: 0, released: 0, sigkill: 0, sigterm: 0, sigstop: 0, restarts: 0, violations: 0, leaseLost: 0 };
  const fail = (msg: string) => {
    stats.violations++;
    throw new Error(`chaos seed ${SEED}: ${msg} (rerun with VMLOCKD_CHAOS_SEED=${SEED})\n${JSON.stringify(stats)}`);
  };
  const alive = (h: TestDaemon) => h.proc !== undefined && h.proc.exitCode === null && h.proc.signalCode === null;
  const stopped = new Set<number>();

  const leaseLost = (h: TestDaemon): Set<string> => {
    const r = cli(['audit', '--state-dir', h.opts.stateDir, '--kind', 'LeaseLost', '--json']);
    const out = new Set<string>();
    if (r.code === 0) for (const f of JSON.parse(r.stdout) as Array<{ disk?: string; payload?: { disk?: string } }>) out.add(f.disk ?? f.payload?.disk ?? '');
    return out;
  };

  const check = async () => {
    // Every running daemon lists what the kernel holds for it, and no disk has two VMs.
    const holders = new Map<string, string>();
    for (const [i, h] of hosts.entries()) {
      if (!alive(h)) fail(`daemon ${h.opts.hostId} died on its own: ${h.stderr.slice(-2000)}`);
      if (stopped.has(i)) continue;
      const locks = JSON.parse((await call(h.socket, 'GET', '/v1/locks')).text) as Array<{ disk: string; vm: { uuid: string }; name: string }>;
      const kernel = kernelLocks(h.proc!.pid!, lockspace);
      for (const l of locks) {
        if (!kernel.has(l.name)) fail(`${h.opts.hostId} lists ${l.disk} but the kernel shows no lock on ${l.name}`);
        const other = holders.get(l.disk);
        if (other !== undefined && other !== l.vm.uuid) fail(`${l.disk} held by two VMs: ${other} and ${l.vm.uuid}`);
        holders.set(l.disk, l.vm.uuid);
      }
    }
  };

  const deadline = Date.now() + SECONDS * 1000;
  while (Date.now() < deadline) {
    stats.ops++;
    const r = rnd();
    const hi = Math.floor(rnd() * hosts.length);
    const h = hosts[hi]!;
    if (r < 0.06 && !stopped.has(hi)) {
      // A crash or a stop, then a restart: every acknowledged lock of that host is held again or LeaseLost.
      const signal = pick(['SIGKILL', 'SIGTERM'] as const);
      if (signal === 'SIGKILL') stats.sigkill++;
      else stats.sigterm++;
      await h.kill(signal);
      const v = cli(['journal', 'verify', '--state-dir', h.opts.stateDir]);
      if (v.code !== 0) fail(`journal of ${h.opts.hostId} does not verify after ${signal}: ${v.stdout}${v.stderr}`);
      await h.start();
      stats.restarts++;
      const lost = leaseLost(h);
      const listed = new Set((JSON.parse((await call(h.socket, 'GET', '/v1/locks')).text) as Array<{ disk: string }>).map((l) => l.disk));
      for (const [disk, m] of model) {
        if (m.host !== hi) continue;
        if (!listed.has(disk) && !lost.has(disk)) fail(`${disk} acknowledged to ${m.vm} on ${h.opts.hostId} is neither held again nor LeaseLost after ${signal}`);
        if (lost.has(disk)) {
          stats.leaseLost++;
          model.delete(disk);
        }
      }
    } else if (r < 0.09) {
      // SIGSTOP a daemon for a moment: its locks stay (the kernel holds them), others are refused meanwhile.
      if (stopped.has(hi)) {
        h.proc!.kill('SIGCONT');
        stopped.delete(hi);
      } else {
        h.proc!.kill('SIGSTOP');
        stopped.add(hi);
        stats.sigstop++;
      }
    } else if (!stopped.has(hi)) {
      const disk = pick(disks);
      const vm = pick(vms);
      const viaLines = rnd() < 0.3;
      const acquire = rnd() < 0.6;
      let reply: { status: string; acquired?: Array<{ path: string }>; released?: Array<{ path: string }> };
      if (viaLines) {
        const ev = acquire ? { type: 'started', vm: { uuid: vm }, disks: [{ path: disk }] } : { type: 'stopped', vm: { uuid: vm } };
        const res = await call(h.socket, 'POST', '/v1/events', JSON.stringify(ev) + '\n');
        reply = JSON.parse(res.text.trim().split('\n')[0]!);
      } else {
        const body = acquire ? { vm: { uuid: vm }, disks: [{ path: disk }] } : { vm: { uuid: vm }, disks: [disk] };
        reply = JSON.parse((await call(h.socket, 'POST', acquire ? '/v1/acquire' : '/v1/release', JSON.stringify(body))).text);
      }
      if (acquire && reply.status === 'ok') {
        const m = model.get(disk);
        if (m !== undefined && m.vm !== vm) fail(`${disk} granted to ${vm} on ${h.opts.hostId} while acknowledged to ${m.vm} on h${m.host}`);
        model.set(disk, { host: hi, vm });
        stats.granted++;
      } else if (acquire) stats.refused++;
      else if (reply.status === 'ok') {
        for (const d of reply.released ?? []) if (model.get(d.path)?.vm === vm) model.delete(d.path);
        if (viaLines) for (const [d, m] of model) if (m.vm === vm && m.host === hi) model.delete(d);
        stats.released++;
      }
    }
    if (stats.ops % 20 === 0) await check();
  }
  for (const i of stopped) hosts[i]!.proc!.kill('SIGCONT');
  stopped.clear();
  await until('every daemon answers after SIGCONT', () => hosts.every((h) => alive(h)));
  await check();
  for (const h of hosts) await h.kill('SIGTERM');
  for (const h of hosts) {
    const v = cli(['journal', 'verify', '--state-dir', h.opts.stateDir]);
    assert.is(v.code, 0, v.stdout + v.stderr);
  }
  console.log(`  chaos seed ${SEED}: ${JSON.stringify(stats)}`);
  fs.appendFileSync(path.join(process.env.VMLOCKD_CHAOS_REPORT ?? tmpdir('vmlockd-chaos-report-'), 'chaos.jsonl'), JSON.stringify({ seed: SEED, seconds: SECONDS, ...stats }) + '\n');
});

test.run();
