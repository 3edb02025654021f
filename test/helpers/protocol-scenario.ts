// The protocol conformance scenario, run as a separate process (as the uid the target accepts) against
// one server: the real virtlockd or vmlockd. It prints one JSON object: case name -> what was observed
// (a reply frame as hex, null for no reply, or a plain value). protocol-suite.ts compares the targets.
//
//   SOCK=<socket> WORK=<dir> [MODE=full|peer] node --import tsx test/helpers/protocol-scenario.ts
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LockClient } from '../../src/events/virtlockd/client.js';
import { LOCK_PROGRAM, PROC, encodeCall, encodeFrame, encodeKeepalive, type Header, type OwnerInput } from '../../src/events/virtlockd/codec.js';

export type Observations = Record<string, string | number | boolean | null>;

const SOCK = process.env.SOCK ?? '';
const WORK = process.env.WORK ?? '';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_URL = pathToFileURL(path.join(HERE, '..', '..', 'src', 'events', 'virtlockd', 'client.ts')).href;

// Lockspace and resource of the captured vectors (VIRTLOCKD_PROTOCOL.md §6); the lockspace path
// travels in calls only, never in these replies, so a private directory gives the same reply bytes.
export const LEASE = '0590089b1c3be5b105c84e8a36464becebe44b1764e00a3c1ee9ffaeb1b1c487';
const OWNER_A: OwnerInput = { uuid: '00112233445566778899aabbccddeeff', name: 'vm-a', id: 1, pid: 4242 };
const OWNER_B: OwnerInput = { uuid: 'ffeeddccbbaa99887766554433221100', name: 'vm-b', id: 2, pid: 4343 };
const OWNER_C: OwnerInput = { uuid: '0123456789abcdef0123456789abcdef', name: 'vm-c', id: 3, pid: 4444 };
const owner = (n: number, pid: number): OwnerInput => ({ uuid: `000000000000000000000000000000${n.toString(16).padStart(2, '0')}`, name: `vm-${n}`, id: n, pid });

const SHARED = 1;
const AUTO = 2;

const obs: Observations = {};
const hex = (b: Buffer | null): string | null => (b === null ? null : b.toString('hex'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sends a call with an explicit serial (as the vectors do) and records the reply frame. */
async function raw(label: string, c: LockClient, frame: Buffer, timeoutMs = 2000): Promise<string | null> {
  const r = hex(await c.send(frame, { timeoutMs }));
  obs[label] = r;
  return r;
}

/** Per connection serials, from 0 like the plugin, so replies are comparable byte for byte. */
class Conn {
  serial = 0;
  private constructor(readonly c: LockClient) {}
  static async open(): Promise<Conn> {
    return new Conn(await LockClient.connect(SOCK, { callTimeoutMs: 5000 }));
  }
  call<P extends Parameters<typeof encodeCall>[0]>(label: string, proc: P, args: Parameters<typeof encodeCall<P>>[2]): Promise<string | null> {
    return raw(label, this.c, encodeCall(proc, this.serial++, args));
  }
  register(label: string, o: OwnerInput, flags = 0) {
    return this.call(label, PROC.REGISTER, { owner: o, flags });
  }
  acquire(label: string, ls: string, name: string, flags: number) {
    return this.call(label, PROC.ACQUIRE_RESOURCE, { path: ls, name, flags });
  }
  release(label: string, ls: string, name: string, flags = 0) {
    return this.call(label, PROC.RELEASE_RESOURCE, { path: ls, name, flags });
  }
  close(): Promise<void> {
    return this.c.close();
  }
}

const isOk = (h: string | null): boolean => h !== null && h.length === 56 && h.endsWith('00000000');

function mode(p: string): number | null {
  try {
    return fs.statSync(p).mode & 0o777;
  } catch {
    return null;
  }
}

/** A child process that registers its own pid (as QEMU does), runs `body`, and reports on stdout. */
let ownerSeq = 0;
function ownerProcess(body: string): { pid: Promise<number>; done: Promise<{ code: number | null; signal: string | null }>; kill(): void } {
  const script = `
    const { LockClient } = await import(${JSON.stringify(CLIENT_URL)});
    const c = await LockClient.connect(${JSON.stringify(SOCK)});
    const LS = ${JSON.stringify(path.join(WORK, 'files'))};
    const me = { uuid: '00000000000000000000000000000a${(ownerSeq++).toString(16).padStart(2, '0')}', name: 'qemu', id: 9, pid: process.pid };
    await c.register(me);
    ${body}
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: path.join(HERE, '..', '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const pid = new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) resolve(child.pid!);
    });
    // 'close', not 'exit': stdout may still hold READY when the process has already exited.
    child.once('close', (code, sig) => reject(new Error(`owner process exited (${code ?? sig}) before READY: ${out}${err}`)));
  });
  const done = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return { pid, done, kill: () => void child.kill('SIGKILL') };
}

/** Retries an acquire until it succeeds or `ms` pass (a close is processed asynchronously). */
async function acquireEventually(label: string, c: Conn, ls: string, name: string, flags: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  // Every attempt carries the same serial: how many attempts a daemon needed (the close rule runs
  // asynchronously) must not show in this reply's bytes or in the serials of the calls after it.
  const serial = c.serial++;
  for (;;) {
    const r = await raw(label, c.c, encodeCall(PROC.ACQUIRE_RESOURCE, serial, { path: ls, name, flags }));
    if (isOk(r) || Date.now() > until) return;
    await sleep(100);
  }
}

async function full(): Promise<void> {
  const LS = path.join(WORK, 'files');
  const LS_MISSING = `${LS}-nope`;
  fs.mkdirSync(path.join(WORK, 'images'), { recursive: true });
  fs.writeFileSync(path.join(WORK, 'plainfile'), 'x');
  const DISK = path.join(WORK, 'images', 'disk.img');
  fs.writeFileSync(DISK, '');

  // ── §6 vectors ───────────────────────────────────────────────────────────────────────────
  const c0 = await Conn.open();
  await c0.call('vec_b_create_lockspace', PROC.CREATE_LOCKSPACE, { path: LS });
  obs.vec_b_dir_mode = mode(LS);
  await c0.close();
  const a = await Conn.open();
  await a.register('vec_a_register', OWNER_A);
  await a.acquire('vec_c_acquire', LS, LEASE, AUTO);
  obs.vec_c_file_mode = mode(path.join(LS, LEASE));
  const b = await Conn.open();
  await b.register('vec_d_register', OWNER_B);
  await b.acquire('vec_d_busy', LS, LEASE, AUTO);
  await a.release('vec_e_release', LS, LEASE);
  obs.vec_e_file_after_release = fs.existsSync(path.join(LS, LEASE));
  const c = await Conn.open();
  await c.register('vec_f_register', OWNER_C);
  await c.call('vec_f_restrict', PROC.RESTRICT, {});
  await c.acquire('vec_f_restricted_acquire', LS, LEASE, AUTO);
  const g = await Conn.open();
  await raw('vec_g_unknown_9', g.c, Buffer.from('000000200ea7beef000000010000000900000000000000050000000000000000', 'hex'));
  await raw('vec_g_truncated_restrict', g.c, Buffer.from('0000001c0ea7beef0000000100000002000000000000000a00000000', 'hex'));
  await raw('vec_g_ping', g.c, encodeKeepalive(1));

  // ── check order ──────────────────────────────────────────────────────────────────────────
  const d = await Conn.open();
  await d.acquire('order_unregistered_bad_flags', LS, 'x', 4);
  await d.acquire('order_unregistered_missing_lockspace', LS_MISSING, 'x', AUTO);
  await d.call('order_unregistered_restrict', PROC.RESTRICT, {});
  await d.call('order_unregistered_new', PROC.NEW, { path: path.join(WORK, 'new0') });
  await d.release('order_unregistered_release', LS, 'x');
  await d.register('order_register_id0', { ...owner(4, 5555), id: 0 });
  await d.register('order_register_id0_bad_flags', { ...owner(4, 5555), id: 0 }, 1);
  await d.register('order_register', owner(4, 5555));
  await d.acquire('order_missing_lockspace', LS_MISSING, 'x', AUTO);
  await d.acquire('order_missing_lockspace_bad_flags', LS_MISSING, 'x', 8);
  await d.release('order_missing_lockspace_release', LS_MISSING, 'x');
  await d.call('order_missing_lockspace_create', PROC.CREATE_RESOURCE, { path: LS_MISSING, name: 'x' });
  await d.call('order_missing_lockspace_delete', PROC.DELETE_RESOURCE, { path: LS_MISSING, name: 'x' });
  await d.acquire('order_trailing_slash_lockspace', `${LS}/`, 'x', AUTO);
  await d.call('order_restrict_bad_flags', PROC.RESTRICT, { flags: 2 });
  await d.register('order_register_again', { ...owner(4, 5555), name: 'renamed' });
  await d.call('order_restrict', PROC.RESTRICT, {});
  await d.acquire('order_restricted_bad_flags', LS, 'x', 4);
  await d.acquire('order_restricted_acquire', LS, 'x', AUTO);
  await d.register('order_restricted_register', owner(4, 5555));
  await d.register('order_restricted_register_id0', { ...owner(4, 5555), id: 0 });
  await d.call('order_restricted_create_lockspace', PROC.CREATE_LOCKSPACE, { path: LS });
  await d.call('order_restricted_restrict', PROC.RESTRICT, {});
  await d.call('order_restricted_new', PROC.NEW, { path: path.join(WORK, 'new0') });
  await d.release('order_restricted_release', LS, 'x');
  obs.order_restricted_still_open = !d.c.closed;

  // ── CREATE_LOCKSPACE and NEW ─────────────────────────────────────────────────────────────
  const e = await Conn.open();
  await e.call('cl_known', PROC.CREATE_LOCKSPACE, { path: LS });
  await e.call('cl_default', PROC.CREATE_LOCKSPACE, { path: '' });
  await e.call('cl_unknown', PROC.CREATE_LOCKSPACE, { path: path.join(WORK, 'ls2', 'deep') });
  obs.cl_unknown_dir_mode = mode(path.join(WORK, 'ls2', 'deep'));
  await e.call('cl_not_a_directory', PROC.CREATE_LOCKSPACE, { path: path.join(WORK, 'plainfile') });
  await e.call('cl_under_a_file', PROC.CREATE_LOCKSPACE, { path: path.join(WORK, 'plainfile', 'sub') });
  await e.register('new_register', owner(5, 5656));
  await e.call('new_default', PROC.NEW, { path: '' });
  await e.call('new_known', PROC.NEW, { path: LS });
  await e.call('new_fresh', PROC.NEW, { path: path.join(WORK, 'new1') });
  obs.new_fresh_dir_mode = mode(path.join(WORK, 'new1'));
  await e.call('new_again', PROC.NEW, { path: path.join(WORK, 'new1') });
  await e.acquire('new_acquire_inside', path.join(WORK, 'new1'), 'r', AUTO);
  await e.release('new_release_inside', path.join(WORK, 'new1'), 'r');

  // ── CREATE_RESOURCE / DELETE_RESOURCE ────────────────────────────────────────────────────
  await e.call('cr_create', PROC.CREATE_RESOURCE, { path: LS, name: 'cr1' });
  obs.cr_file_mode = mode(path.join(LS, 'cr1'));
  await e.call('cr_create_again', PROC.CREATE_RESOURCE, { path: LS, name: 'cr1' });
  await e.acquire('cr_acquire_existing_no_autocreate', LS, 'cr1', 0);
  await e.call('cr_create_held', PROC.CREATE_RESOURCE, { path: LS, name: 'cr1' });
  await e.call('dr_delete_held', PROC.DELETE_RESOURCE, { path: LS, name: 'cr1' });
  await e.release('cr_release', LS, 'cr1');
  obs.cr_file_after_release = fs.existsSync(path.join(LS, 'cr1'));
  await e.call('dr_delete', PROC.DELETE_RESOURCE, { path: LS, name: 'cr1' });
  obs.dr_file_after_delete = fs.existsSync(path.join(LS, 'cr1'));
  await e.call('dr_delete_missing', PROC.DELETE_RESOURCE, { path: LS, name: 'never-created' });
  await e.call('cr_bad_flags', PROC.CREATE_RESOURCE, { path: LS, name: 'cr2', flags: 1 });

  // ── ACQUIRE / RELEASE ────────────────────────────────────────────────────────────────────
  const G = owner(6, 6001);
  const g6 = await Conn.open();
  const h6 = await Conn.open();
  const i6 = await Conn.open();
  await g6.register('acq_register_g', G);
  await h6.register('acq_register_h', owner(7, 6002));
  await i6.register('acq_register_i', owner(8, 6003));
  await g6.acquire('sh_g', LS, 'sh', SHARED | AUTO);
  await h6.acquire('sh_h', LS, 'sh', SHARED | AUTO);
  await i6.acquire('sh_i_exclusive_busy', LS, 'sh', AUTO);
  await g6.acquire('sh_g_again_stacks', LS, 'sh', SHARED | AUTO);
  await g6.acquire('sh_g_upgrade_busy', LS, 'sh', AUTO);
  await g6.release('sh_g_release_1', LS, 'sh');
  await g6.release('sh_g_release_2', LS, 'sh');
  await g6.release('sh_g_release_3_not_owner', LS, 'sh');
  await i6.release('sh_i_release_not_owner', LS, 'sh');
  await h6.release('sh_h_release', LS, 'sh');
  await h6.release('sh_h_release_not_locked', LS, 'sh');
  obs.sh_file_after_last_release = fs.existsSync(path.join(LS, 'sh'));
  await g6.acquire('ex_g', LS, 'ex', AUTO);
  obs.ex_file_exists = fs.existsSync(path.join(LS, 'ex'));
  await h6.acquire('ex_h_shared_busy', LS, 'ex', SHARED | AUTO);
  await h6.acquire('ex_h_exclusive_busy', LS, 'ex', AUTO);
  await g6.acquire('ex_g_again_busy', LS, 'ex', AUTO);
  const g6b = await Conn.open();
  await g6b.register('ex_same_owner_other_conn_register', G);
  await g6b.acquire('ex_same_owner_other_conn_busy', LS, 'ex', AUTO);
  await g6b.release('ex_same_owner_other_conn_release', LS, 'ex');
  obs.ex_file_after_release = fs.existsSync(path.join(LS, 'ex'));
  await g6.acquire('noauto_missing_file', LS, 'missing', 0);
  await g6.acquire('noauto_missing_file_shared', LS, 'missing', SHARED);
  await g6.acquire('default_ls_existing', '', DISK, 0);
  await h6.acquire('default_ls_busy', '', DISK, 0);
  await g6.release('default_ls_release', '', DISK);
  obs.default_ls_file_after_release = fs.existsSync(DISK);
  await g6.acquire('default_ls_missing', '', path.join(WORK, 'images', 'none.img'), 0);
  const auto = path.join(WORK, 'images', 'auto.img');
  await g6.acquire('default_ls_autocreate', '', auto, AUTO);
  obs.default_ls_autocreate_file = fs.existsSync(auto);
  if (isOk(obs.default_ls_autocreate as string)) await g6.release('default_ls_autocreate_release', '', auto);
  await g6.acquire('name_dotdot', LS, '../escaped', AUTO);
  if (isOk(obs.name_dotdot as string)) await g6.release('name_dotdot_release', LS, '../escaped');
  await g6.acquire('name_empty', LS, '', AUTO);
  for (const x of [a, b, c, g, e, g6, h6, i6, g6b]) await x.close();

  // ── close rule ───────────────────────────────────────────────────────────────────────────
  const j = await Conn.open();
  await j.register('close_register_j', owner(10, 7001));
  // QEMU-like: registers its own pid, holds a lock and a twice-acquired shared lock, then exits.
  const q1 = ownerProcess(`
    await c.acquire(LS, 'qemu1', { autocreate: true });
    await c.acquire(LS, 'qemu1sh', { shared: true, autocreate: true });
    await c.acquire(LS, 'qemu1sh', { shared: true, autocreate: true });
    await c.restrict();
    console.log('READY');
    process.exit(0);
  `);
  await q1.pid;
  await q1.done;
  await acquireEventually('close_own_pid_released', j, LS, 'qemu1', AUTO, 3000);
  await j.acquire('close_stacked_shared_after_exit', LS, 'qemu1sh', AUTO);
  // libvirtd-like: registers the QEMU pid (not its own): closing it must release nothing.
  const k = await Conn.open();
  await k.register('close_other_pid_register', owner(11, 7002));
  await k.acquire('close_other_pid_acquire', LS, 'lv1', AUTO);
  await k.close();
  await sleep(300);
  await j.acquire('close_other_pid_kept', LS, 'lv1', AUTO);
  // An owner that closes its connection but keeps running: virtlockd signals it, vmlockd never does.
  const q2 = ownerProcess(`
    await c.acquire(LS, 'qemu2', { autocreate: true });
    // READY first: virtlockd signals this process as soon as it sees the close.
    console.log('READY');
    setTimeout(() => process.exit(0), 4000);
    await c.close();
  `);
  await q2.pid;
  await acquireEventually('close_alive_owner_released', j, LS, 'qemu2', AUTO, 3000);
  const fate = await Promise.race([q2.done, sleep(2500).then(() => null)]);
  obs.close_alive_owner_signalled = fate === null ? 'not signalled' : fate.signal ?? `exit ${fate.code}`;
  q2.kill();

  // ── bad frames, while another client keeps working ──────────────────────────────────────
  const m = await Conn.open();
  await m.register('bad_other_client_register', owner(12, 7101));
  const l = await Conn.open();
  await l.register('bad_register', owner(13, 7102));
  const H = (over: Partial<Header>): Header => ({ prog: LOCK_PROGRAM, vers: 1, proc: 2, type: 0, serial: 9, status: 0, ...over });
  const flags0 = Buffer.alloc(4);
  await raw('bad_proc_0', l.c, encodeFrame(H({ proc: 0 }), flags0));
  await raw('bad_proc_negative', l.c, encodeFrame(H({ proc: -1 }), flags0));
  await raw('bad_wrong_program', l.c, encodeFrame(H({ prog: 0x12345678 }), flags0));
  await raw('bad_wrong_version', l.c, encodeFrame(H({ vers: 2 }), flags0));
  await raw('bad_status', l.c, encodeFrame(H({ status: 1 }), flags0));
  await raw('bad_string_too_long', l.c, encodeFrame(H({ proc: 8 }), Buffer.concat([Buffer.from('00010001', 'hex'), Buffer.alloc(65540, 0x61)])));
  await raw('bad_string_truncated', l.c, encodeFrame(H({ proc: 8 }), Buffer.from('0000001000616263', 'hex')));
  await raw('bad_register_truncated', l.c, encodeFrame(H({ proc: 1 }), Buffer.alloc(10)));
  await raw('bad_message_type_dropped', l.c, encodeFrame(H({ type: 2 }), flags0), 300);
  await raw('bad_reply_type_dropped', l.c, encodeFrame(H({ type: 1 }), flags0), 300);
  await raw('bad_extra_bytes_ignored', l.c, encodeFrame(H({ proc: 8 }), Buffer.concat([Buffer.alloc(4), Buffer.alloc(8, 0xee)])));
  await raw('bad_with_fds_zero', l.c, encodeFrame(H({ type: 4, proc: 7 }), Buffer.concat([Buffer.alloc(4), encodeCall(PROC.RELEASE_RESOURCE, 0, { path: LS, name: 'none' }).subarray(28)])));
  obs.bad_connection_still_open = !l.c.closed;
  await m.acquire('bad_other_client_acquire', LS, 'other', AUTO);
  const short = await Conn.open();
  await raw('bad_length_20', short.c, Buffer.concat([Buffer.from('00000014', 'hex'), Buffer.alloc(16)]));
  obs.bad_length_20_closed = await short.c.waitClosed(2000);
  const tiny = await Conn.open();
  await raw('bad_length_3', tiny.c, Buffer.from('00000003', 'hex'));
  obs.bad_length_3_closed = await tiny.c.waitClosed(2000);
  const big = await Conn.open();
  await raw('bad_length_over_32MiB', big.c, Buffer.from((4 + 32 * 1024 * 1024 + 1).toString(16).padStart(8, '0'), 'hex'));
  obs.bad_length_over_32MiB_closed = await big.c.waitClosed(2000);
  await m.release('bad_other_client_release', LS, 'other');
  await l.release('bad_connection_works_after', LS, 'other');
  for (const x of [j, m, l]) await x.close();
}

/** A peer with a uid the server does not accept: closed without a frame. */
async function peer(): Promise<void> {
  const c = await LockClient.connect(SOCK);
  obs.peer_reply = hex(await c.send(encodeCall(PROC.CREATE_LOCKSPACE, 0, { path: '' }), { timeoutMs: 2000 }));
  obs.peer_closed = await c.waitClosed(2000);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const run = process.env.MODE === 'peer' ? peer : full;
  run().then(
    () => {
      process.stdout.write(JSON.stringify(obs) + '\n');
      process.exit(0);
    },
    (e: unknown) => {
      process.stdout.write(JSON.stringify({ ...obs, __error: (e as Error).stack ?? String(e) }) + '\n');
      process.exit(1);
    },
  );
}
