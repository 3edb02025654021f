// A vmlockd daemon serving the virtlockd protocol, for the protocol server's integration tests, and
// the small helpers they share (audit, locks, until, rpcError).
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { LockRpcError } from '../../src/events/virtlockd/client.js';
import { TestDaemon } from './daemon.js';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const UUID_A = '00112233-4455-6677-8899-aabbccddeeff';
export const UUID_B = 'ffeeddcc-bbaa-9988-7766-554433221100';

export interface Served {
  readonly daemon: TestDaemon;
  readonly socket: string;
}

export async function serve(dir: string, extra: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const socket = path.join(dir, 'run', 'virtlockd-sock');
  const daemon = new TestDaemon({
    stateDir: path.join(dir, 'state'),
    socket: path.join(dir, 'vmlockd.sock'),
    lockspace: path.join(dir, 'lockspace'),
    hostId: 'hv1',
    extra: ['--virtlockd-socket', socket, ...extra],
    env,
  });
  await daemon.start();
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(50);
  if (!existsSync(socket)) {
    await daemon.kill('SIGKILL');
    assert.unreachable(`no virtlockd socket at ${socket}\n${daemon.stderr}`);
  }
  return { daemon, socket };
}

export function audit(d: TestDaemon, kind: string): Array<{ payload: Record<string, any> }> {
  const r = d.cli(['audit', '--json', '--kind', kind, '--limit', '1000']);
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

export function locks(d: TestDaemon): Array<[string, string, string]> {
  const r = d.cli(['locks', '--json']);
  assert.is(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<Record<string, any>>).map((l): [string, string, string] => [path.basename(l.resource), l.mode, l.vm.uuid]).sort();
}

export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(100);
  }
  assert.unreachable(`timed out waiting for ${what}`);
}

export async function rpcError(p: Promise<unknown>): Promise<LockRpcError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  assert.instance(e, LockRpcError);
  return e as LockRpcError;
}
