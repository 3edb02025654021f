// The daemon's log as an operator's tools read it (src/daemon/log.ts): JSON lines whose fact lines
// join `vmlockd audit` by seq, and journald's native protocol received on a real datagram socket.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { MESSAGE_IDS } from '../../src/daemon/log.js';
import { MAIN, UUID1, UUID2, cli, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

const children: ChildProcess[] = [];
const daemons: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of daemons.splice(0)) await d.kill('SIGKILL');
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** A process of its own holding a POSIX lock on the whole file (conflicts with the daemon's OFD locks). */
async function holdLock(file: string): Promise<ChildProcess> {
  const p = spawn('python3', ['-c', 'import fcntl,sys,time\nf=open(sys.argv[1],"r+")\nfcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\nprint("locked",flush=True)\ntime.sleep(3600)', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(p);
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  await until('the other process to lock the lock file', () => out.includes('locked'));
  return p;
}

test('--log-format json: every line is a JSON object; a LeaseLost line carries the disk, VM and seq that audit --json shows', async () => {
  const dir = tmpdir();
  const lockspace = path.join(dir, 'lockspace');
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'image');
  const d = await startDaemon({ stateDir: path.join(dir, 'state'), lockspace, extra: ['--log-format', 'json', '--log-level', 'info'] });
  daemons.push(d);
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  await d.kill('SIGKILL');
  await holdLock(path.join(lockspace, sha256Hex(disk)));
  await d.start();
  const lines = await until('the LeaseLost log line', () => {
    const ls = d.stderr.split('\n').filter(Boolean);
    return ls.some((l) => l.includes('"LeaseLost"')) && ls;
  });
  const objs = lines.map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      throw new Error(`not a JSON line: ${l}`);
    }
  });
  for (const o of objs) {
    assert.type(o.time, 'string');
    assert.ok(['debug', 'info', 'warning', 'error'].includes(o.level as string), JSON.stringify(o));
    assert.type(o.msg, 'string');
  }
  const lost = objs.find((o) => o.event === 'LeaseLost')!;
  assert.is(lost.level, 'error');
  assert.is(lost.disk, disk);
  assert.is(lost.vm, 'web1');
  assert.type(lost.seq, 'number');
  assert.match(lost.msg as string, 'LEASE LOST');
  const started = objs.find((o) => o.event === 'DaemonStarted')!;
  assert.type(started.seq, 'number');
  const audit = cli(['audit', '--json', '--state-dir', path.join(dir, 'state')]);
  assert.is(audit.code, 0, audit.stderr);
  const facts = JSON.parse(audit.stdout) as Array<{ seq: number; kind: string; disk: string | null; ownerName: string | null; host: string }>;
  const f = facts.find((x) => x.seq === lost.seq);
  assert.ok(f, `audit has seq ${String(lost.seq)}`);
  assert.is(f!.kind, 'LeaseLost');
  assert.is(f!.disk, disk);
  assert.is(f!.ownerName, 'web1');
  assert.is(f!.host, lost.host);
  assert.is(facts.find((x) => x.seq === started.seq)?.kind, 'DaemonStarted');
});

/** Fields of one native-protocol datagram (KEY=value lines; KEY\n<u64 LE length><value>\n). */
function parseEntry(b: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < b.length) {
    const nl = b.indexOf(0x0a, i);
    const eq = b.indexOf(0x3d, i);
    if (nl < 0) throw new Error(`unterminated field at ${i}`);
    if (eq >= 0 && eq < nl) {
      out.set(b.subarray(i, eq).toString(), b.subarray(eq + 1, nl).toString());
      i = nl + 1;
      continue;
    }
    const key = b.subarray(i, nl).toString();
    const len = Number(b.readBigUInt64LE(nl + 1));
    const start = nl + 9;
    out.set(key, b.subarray(start, start + len).toString());
    if (b[start + len] !== 0x0a) throw new Error(`binary field ${key} not followed by a newline`);
    i = start + len + 1;
  }
  return out;
}

/** A daemon whose stderr is a file named by JOURNAL_STREAM (as systemd does with its stream socket). */
async function journalDaemon(dir: string, socketPath: string, extra: string[] = []): Promise<{ proc: ChildProcess; errFile: string; sock: string }> {
  const errFile = path.join(dir, 'stderr');
  const outFile = path.join(dir, 'stdout');
  const err = fs.openSync(errFile, 'w');
  const out = fs.openSync(outFile, 'w');
  const st = fs.fstatSync(err);
  const sock = path.join(dir, 'd.sock');
  const proc = spawn(process.execPath, [MAIN, 'serve', '--state-dir', path.join(dir, 'state'), '--lockspace', path.join(dir, 'lockspace'), '--socket', sock, '--log-level', 'debug', ...extra], {
    stdio: ['ignore', out, err],
    env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}`, VMLOCKD_JOURNAL_SOCKET: socketPath },
  });
  fs.closeSync(err);
  fs.closeSync(out);
  children.push(proc);
  await until('the daemon to listen', () => fs.readFileSync(outFile, 'utf8').includes('listening on'));
  return { proc, errFile, sock };
}

test('under systemd (JOURNAL_STREAM is stderr): native journal datagrams with PRIORITY, MESSAGE_ID and VMLOCKD_* fields, a multi-line message intact', async () => {
  const dir = tmpdir();
  const jsock = path.join(dir, 'journal.sock');
  const rx = spawn('python3', ['-c', 'import socket,sys,base64\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("ready",flush=True)\nwhile True:\n  print(base64.b64encode(s.recv(1<<20)).decode(),flush=True)', jsock], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(rx);
  let got = '';
  rx.stdout!.setEncoding('utf8').on('data', (d: string) => (got += d));
  await until('the journal stand-in to bind', () => got.includes('ready'));
  const entries = () => got.split('\n').filter((l) => l && l !== 'ready').map((l) => parseEntry(Buffer.from(l, 'base64')));
  fs.writeFileSync(path.join(dir, 'a.img'), 'image');
  const disk = path.join(dir, 'a.img');
  const { errFile, sock } = await journalDaemon(dir, jsock);
  const name = 'web1\nsecond line';
  assert.is(cli(['acquire', '--socket', sock, '--vm', UUID1, '--name', name, disk]).code, 0);
  assert.is(cli(['acquire', '--socket', sock, '--vm', UUID2, '--name', 'web2', disk]).code !== 0, true);
  const acquired = await until('the LockAcquired entry', () => entries().find((e) => e.get('VMLOCKD_EVENT') === 'LockAcquired'));
  assert.is(acquired.get('SYSLOG_IDENTIFIER'), 'vmlockd');
  assert.is(acquired.get('PRIORITY'), '7');
  assert.is(acquired.get('VMLOCKD_DISK'), disk);
  assert.is(acquired.get('VMLOCKD_VM'), name);
  assert.match(acquired.get('MESSAGE')!, `for VM ${name} (${UUID1})`);
  assert.ok(/^\d+$/.test(acquired.get('VMLOCKD_SEQ')!));
  assert.ok(acquired.get('VMLOCKD_HOST'));
  const refused = await until('the LockRefused entry', () => entries().find((e) => e.get('VMLOCKD_EVENT') === 'LockRefused'));
  assert.is(refused.get('PRIORITY'), '4');
  assert.is(refused.get('MESSAGE_ID'), MESSAGE_IDS.LockRefused);
  assert.is(refused.get('VMLOCKD_VM'), 'web2');
  const started = entries().find((e) => e.get('VMLOCKD_EVENT') === 'DaemonStarted')!;
  assert.is(started.get('MESSAGE_ID'), MESSAGE_IDS.DaemonStarted);
  assert.is(started.get('PRIORITY'), '6');
  // Nothing went to stderr: the journal took every line.
  assert.is(fs.readFileSync(errFile, 'utf8'), '');
});

test('journal socket missing: the lines go to stderr as text, with one warning, and the daemon serves on', async () => {
  const dir = tmpdir();
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'image');
  const { errFile, sock } = await journalDaemon(dir, path.join(dir, 'no-journal.sock'));
  assert.is(cli(['acquire', '--socket', sock, '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  const err = await until('the LockAcquired line on stderr', () => {
    const s = fs.readFileSync(errFile, 'utf8');
    return s.includes('event=LockAcquired') && s;
  });
  assert.match(err, /did not take a log entry/);
  assert.is(err.match(/did not take a log entry/g)!.length, 1);
  assert.match(err, new RegExp(`locked disk ${disk.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} for VM web1 .* \\[event=LockAcquired seq=\\d+ disk=`));
});

test('JOURNAL_STREAM naming another stream (inherited, not ours): text on stderr, no journal', async () => {
  const dir = tmpdir();
  const r = spawn(process.execPath, [MAIN, 'serve', '--state-dir', path.join(dir, 'state'), '--lockspace', path.join(dir, 'ls'), '--socket', path.join(dir, 'd.sock'), '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, JOURNAL_STREAM: '1:1', VMLOCKD_JOURNAL_SOCKET: path.join(dir, 'none') },
  });
  children.push(r);
  let err = '';
  r.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  await until('the DaemonStarted line', () => err.includes('event=DaemonStarted'));
  assert.not.match(err, /did not take a log entry/);
});

test.run();
