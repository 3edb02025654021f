// One protocol conformance suite, two targets: the real virtlockd and vmlockd. The scenario
// (protocol-scenario.ts) runs as a separate process, as the uid each target accepts, in the same work
// directory path, so the two sets of replies compare byte for byte. A difference passes only when it is
// one of DIFFERENCES below, each of which docs/protocol.md lists with its reason.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ERR, ERR_DOMAIN, decodeReply } from '../../src/events/virtlockd/codec.js';
import { ROOT, TestDaemon } from './daemon.js';
import type { Observations } from './protocol-scenario.js';

export type { Observations };

export const NOBODY = 65534;
const SCENARIO = path.join(ROOT, 'test', 'helpers', 'protocol-scenario.ts');
export const VIRTLOCKD = process.env.VIRTLOCKD_BIN ?? '/usr/sbin/virtlockd';

export interface TargetInfo {
  readonly socket: string;
  /** The uid the target accepts; the scenario runs as this uid. */
  readonly clientUid: number;
  /** A uid the target must refuse, or null when this process cannot switch to one. */
  readonly foreignUid: number | null;
  /** The serving process (benchmarks read its CPU time), when known. */
  readonly pid?: number;
}

export interface ProtocolTarget {
  readonly name: 'virtlockd' | 'vmlockd';
  start(): Promise<TargetInfo>;
  stop(): Promise<void>;
}

const isRoot = (): boolean => process.getuid?.() === 0;
const asUid = (uid: number): string[] => (uid === process.getuid?.() ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups']);

async function waitFor(p: string, ms: number): Promise<boolean> {
  for (let t = 0; t < ms; t += 50) {
    if (existsSync(p)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** A fresh work directory at a fixed path (replies that name paths must match), owned by `uid`. */
export function freshWork(work: string, uid: number): string {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true, mode: 0o755 });
  if (uid !== process.getuid?.()) chownSync(work, uid, uid);
  return work;
}

/** Runs the scenario as `uid` against `socket`; resolves with its observations. */
export async function runScenario(socket: string, work: string, uid: number, mode: 'full' | 'peer' = 'full'): Promise<Observations> {
  const argv = [...asUid(uid), process.execPath, '--import', 'tsx', SCENARIO];
  const { stdout } = await promisify(execFile)(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, SOCK: socket, WORK: work, MODE: mode },
    timeout: 60_000,
    maxBuffer: 16 << 20,
  }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    if (e.stdout) return { stdout: e.stdout };
    throw new Error(`scenario failed: ${e.message}\n${e.stderr ?? ''}`);
  });
  const obs = JSON.parse(stdout.trim().split('\n').pop()!) as Observations;
  if (typeof obs.__error === 'string') throw new Error(`scenario failed after ${Object.keys(obs).length - 1} cases: ${obs.__error}`);
  return obs;
}

// ── targets ──────────────────────────────────────────────────────────────────────────────────

/** The real virtlockd, unprivileged (as nobody when we are root) on a private session socket. */
export function virtlockdTarget(): ProtocolTarget {
  let proc: ChildProcess | undefined;
  let root = '';
  return {
    name: 'virtlockd',
    async start() {
      const uid = isRoot() ? NOBODY : process.getuid!();
      root = mkdtempSync(path.join(tmpdir(), 'vmlockd-real-virtlockd-'));
      for (const d of ['run', 'config', 'cache', 'home']) mkdirSync(path.join(root, d), { mode: 0o700 });
      if (uid !== process.getuid?.()) for (const d of ['', 'run', 'config', 'cache', 'home']) chownSync(path.join(root, d), uid, uid);
      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: path.join(root, 'home'),
        XDG_RUNTIME_DIR: path.join(root, 'run'),
        XDG_CONFIG_HOME: path.join(root, 'config'),
        XDG_CACHE_HOME: path.join(root, 'cache'),
      };
      const socket = path.join(root, 'run', 'libvirt', 'virtlockd-sock');
      const argv = [...asUid(uid), VIRTLOCKD];
      proc = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      if (!(await waitFor(socket, 5000))) throw new Error(`virtlockd did not create ${socket}: ${stderr}`);
      return { socket, clientUid: uid, foreignUid: isRoot() ? 0 : null };
    },
    async stop() {
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc!.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A real vmlockd daemon process serving the protocol; its client runs as this process's uid. */
export function vmlockdTarget(opts: { hostId?: string } = {}): ProtocolTarget & { daemon(): TestDaemon } {
  let d: TestDaemon | undefined;
  let dir = '';
  return {
    name: 'vmlockd',
    daemon: () => d!,
    async start() {
      dir = mkdtempSync(path.join(tmpdir(), 'vmlockd-proto-'));
      const socket = path.join(dir, 'run', 'virtlockd-sock');
      d = new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'lockspace'), hostId: opts.hostId ?? 'hv-test', extra: ['--virtlockd-socket', socket] });
      await d.start();
      if (!(await waitFor(socket, 3000))) {
        // A live daemon's pipes would keep the test runner from ever exiting.
        await d.kill('SIGKILL');
        throw new Error(`vmlockd started but ${socket} never appeared: is registerVirtlockd(daemon) called in src/main.ts?\n${d.stderr}`);
      }
      return { socket, clientUid: process.getuid!(), foreignUid: isRoot() ? NOBODY : null, ...(d.proc?.pid !== undefined ? { pid: d.proc.pid } : {}) };
    },
    async stop() {
      await d?.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Why the real virtlockd cannot be run here, or null. */
export function virtlockdSkipReason(): string | null {
  if (!existsSync(VIRTLOCKD)) return `${VIRTLOCKD} is not installed (apt-get install libvirt-daemon)`;
  if (isRoot() && !existsSync('/usr/bin/setpriv')) return 'setpriv is missing: cannot run virtlockd unprivileged';
  return null;
}

// ── §6 vectors (replies captured from virtlockd 9.0.0) ────────────────────────────────────────

export const VECTOR_REPLIES: Readonly<Record<string, string>> = {
  vec_b_create_lockspace: '0000001c0ea7beef0000000100000008000000010000000000000000',
  vec_a_register: '0000001c0ea7beef0000000100000001000000010000000000000000',
  vec_c_acquire: '0000001c0ea7beef0000000100000006000000010000000100000000',
  vec_d_register: '0000001c0ea7beef0000000100000001000000010000000000000000',
  vec_d_busy:
    '000001380ea7beef00000001000000060000000100000001000000010000005700000033000000010000006e7265736f7572636520627573793a204c6f636b7370616365207265736f7572636520273035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383727206973206c6f636b65640000000000020000000000000001000000117265736f7572636520627573793a202573000000000000010000005f4c6f636b7370616365207265736f7572636520273035393030383962316333626535623130356338346538613336343634626563656265343462313736346530306133633165653966666165623162316334383727206973206c6f636b65640000000000ffffffffffffffff00000000',
  vec_e_release: '0000001c0ea7beef0000000100000007000000010000000200000000',
  vec_f_register: '0000001c0ea7beef0000000100000001000000010000000000000000',
  vec_f_restrict: '0000001c0ea7beef0000000100000002000000010000000100000000',
  vec_f_restricted_acquire:
    '000000d80ea7beef00000001000000060000000100000002000000010000001d0000000700000001000000406f7065726174696f6e20666f7262696464656e3a206c6f636b206d616e6167657220636f6e6e656374696f6e20686173206265656e2072657374726963746564000000020000000000000001000000176f7065726174696f6e20666f7262696464656e3a20257300000000010000002b6c6f636b206d616e6167657220636f6e6e656374696f6e20686173206265656e20726573747269637465640000000000ffffffffffffffff00000000',
  vec_g_unknown_9:
    '000000800ea7beef000000010000000900000001000000050000000100000027000000070000000100000014756e6b6e6f776e2070726f6365647572653a203900000002000000000000000100000002257300000000000100000014756e6b6e6f776e2070726f6365647572653a203900000000ffffffffffffffff00000000',
  vec_g_truncated_restrict:
    '000000980ea7beef0000000100000002000000010000000a0000000100000027000000070000000100000020556e61626c6520746f206465636f6465206d657373616765207061796c6f616400000002000000000000000100000002257300000000000100000020556e61626c6520746f206465636f6465206d657373616765207061796c6f616400000000ffffffffffffffff00000000',
  vec_g_ping: '0000001c6b6565700000000100000002000000020000000000000000',
};

// ── deliberate differences ───────────────────────────────────────────────────────────────────

type Value = Observations[string] | undefined;

export interface Difference {
  /** The anchor docs/protocol.md uses for this difference. */
  readonly id: string;
  readonly reason: string;
  /** True when (virtlockd's value, vmlockd's value) for `key` is this difference, and nothing else. */
  applies(key: string, real: Value, ours: Value): boolean;
}

function errorOf(v: Value) {
  if (typeof v !== 'string' || v.length < 56 || !/^[0-9a-f]+$/.test(v)) return null;
  try {
    const r = decodeReply(Buffer.from(v, 'hex'));
    return r.kind === 'error' ? r : null;
  } catch {
    return null;
  }
}
const okReply = (v: Value): boolean => typeof v === 'string' && v.length === 56 && v.endsWith('00000000');
const isError = (v: Value, code: number, domain: number): boolean => {
  const e = errorOf(v);
  return e !== null && e.error.code === code && e.error.domain === domain;
};

export const DIFFERENCES: readonly Difference[] = [
  {
    id: 'D1-busy-names-holder',
    reason: 'RESOURCE_BUSY "is locked" replies append ": disk <path> is held ... by VM <name> (uuid ...) on host <host> since ..." to virtlockd\'s text',
    applies(_key, real, ours) {
      const r = errorOf(real);
      const o = errorOf(ours);
      if (!r || !o || r.error.code !== ERR.RESOURCE_BUSY || o.error.code !== ERR.RESOURCE_BUSY) return false;
      const same = (['prog', 'vers', 'proc', 'type', 'serial', 'status'] as const).every((k) => r.header[k] === o.header[k]);
      return (
        same &&
        o.error.domain === r.error.domain &&
        o.error.str1 === r.error.str1 &&
        /is locked$/.test(r.error.message ?? '') &&
        (o.error.message ?? '').startsWith(`${r.error.message}: disk `) &&
        o.error.str2 === (o.error.message ?? '').slice('resource busy: '.length) &&
        o.error.int1 === r.error.int1 &&
        o.error.int2 === r.error.int2
      );
    },
  },
  {
    id: 'D2-no-unlink',
    reason: 'lease files are never unlinked on release (docs/decisions/0004): virtlockd unlinks AUTOCREATE leases',
    applies: (key, real, ours) => key.endsWith('_after_release') || key.endsWith('_after_last_release') ? real === false && ours === true : false,
  },
  {
    id: 'D3-close-releases-every-occurrence',
    reason: 'when the owner process closes, every stacked shared occurrence is released; virtlockd removes one and leaks the rest',
    applies: (key, real, ours) => key === 'close_stacked_shared_after_exit' && isError(real, ERR.RESOURCE_BUSY, ERR_DOMAIN.LOCKSPACE) && okReply(ours),
  },
  {
    id: 'D4-never-signals',
    reason: 'an owner that closes its connection while alive is never signalled (virtlockd SIGTERMs, then SIGKILLs it); vmlockd records OwnerGone alive=true and logs a warning',
    applies: (key, real, ours) => key === 'close_alive_owner_signalled' && (real === 'SIGTERM' || real === 'SIGKILL') && ours === 'not signalled',
  },
  {
    id: 'D5-default-lockspace-no-autocreate',
    reason: 'AUTOCREATE in the default lockspace does not create the file (virtlockd creates it and later unlinks the real path)',
    applies(key, real, ours) {
      if (key === 'default_ls_autocreate') return okReply(real) && isError(ours, ERR.SYSTEM_ERROR, ERR_DOMAIN.LOCKSPACE);
      if (key === 'default_ls_autocreate_file') return real === true && ours === false;
      if (key === 'default_ls_autocreate_release') return okReply(real) && ours === undefined;
      return false;
    },
  },
  {
    id: 'D6-resource-names-checked',
    reason: 'a resource name in a directory lockspace must be one file name ("../x", "" and "a/b" get INVALID_ARG 8/51); virtlockd opens whatever the name reaches',
    applies(key, real, ours) {
      if (key === 'name_dotdot_release') return okReply(real) && ours === undefined;
      if (key !== 'name_dotdot' && key !== 'name_empty') return false;
      return real !== ours && isError(ours, ERR.INVALID_ARG, ERR_DOMAIN.LOCKSPACE);
    },
  },
];

/** Problems: every case whose values differ and that no listed difference explains. */
export function compare(real: Observations, ours: Observations): string[] {
  const problems: string[] = [];
  const keys = new Set([...Object.keys(real), ...Object.keys(ours)]);
  for (const key of keys) {
    const r = real[key];
    const o = ours[key];
    if (r === o) continue;
    if (DIFFERENCES.some((d) => d.applies(key, r, o))) continue;
    problems.push(`${key}: virtlockd ${describe(r)} / vmlockd ${describe(o)}`);
  }
  return problems;
}

export function describe(v: Value): string {
  const e = errorOf(v);
  if (e) return `ERROR ${e.error.code}/${e.error.domain} "${e.error.message}" (int1 ${e.error.int1})`;
  if (okReply(v)) return 'OK';
  return JSON.stringify(v);
}

/** The ids of the listed differences that this pair of runs actually showed. */
export function differencesSeen(real: Observations, ours: Observations): Set<string> {
  const seen = new Set<string>();
  for (const key of new Set([...Object.keys(real), ...Object.keys(ours)])) {
    if (real[key] === ours[key]) continue;
    for (const d of DIFFERENCES) if (d.applies(key, real[key], ours[key])) seen.add(d.id);
  }
  return seen;
}
