// The daemon's log as an operator's tools read it (src/daemon/log.ts): JSON lines whose fact lines
// join `vmlockd audit` by seq, and journald's native protocol received on a real datagram socket.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../src/engine/resolve.js';
import { JournalSink, MESSAGE_IDS, journalEntry } from '../../src/daemon/log.js';
import { call } from '../../src/cli/client.js';
import { MAIN, UUID1, UUID2, cli, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';
import { freePort } from '../helpers/ports.js';

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

/** A datagram socket standing in for a journald that has stopped reading: bound, never read. */
async function deafJournal(sockPath: string): Promise<void> {
  const p = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("ready",flush=True)\ntime.sleep(3600)', sockPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(p);
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  await until('the deaf journal socket to bind', () => out.includes('ready'));
}

/** Scrapes until `ok` holds for the vmlockd_log_* series (until() polls synchronous probes only). */
async function scrapeUntil(what: string, port: number, ok: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = await scrape(port);
    if (ok(m)) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify([...m])}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return new Map(text.split('\n').filter((l) => l.startsWith('vmlockd_log_')).map((l) => [l.split(' ')[0]!, Number(l.split(' ')[1])]));
}

/** acquire + release of one disk, n times, through the control API: every one must be answered. */
async function churn(sock: string, disk: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const a = await call(sock, 'POST', '/v1/acquire', { vm: { uuid: UUID1, name: `web${i}` }, disks: [{ path: disk }] });
    assert.is((a.body as { status?: string }).status, 'ok', JSON.stringify(a.body));
    const r = await call(sock, 'POST', '/v1/release', { vm: { uuid: UUID1 }, disks: [disk] });
    assert.is((r.body as { status?: string }).status, 'ok', JSON.stringify(r.body));
  }
}

test('a journal socket that stops reading (its queue full): entries go to stderr, one warning says why, the daemon answers on, metrics count them', async () => {
  const dir = tmpdir();
  const jsock = path.join(dir, 'journal.sock');
  await deafJournal(jsock);
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'image');
  const port = await freePort();
  const { errFile, sock } = await journalDaemon(dir, jsock, ['--metrics-address', `127.0.0.1:${port}`]);
  await churn(sock, disk, 40);
  const m = await scrapeUntil('the queue-full count', port, (got) => (got.get('vmlockd_log_journal_queue_full_total') ?? 0) > 0);
  assert.ok(m.get('vmlockd_log_journal_fallback_total')! >= m.get('vmlockd_log_journal_queue_full_total')!, JSON.stringify([...m]));
  assert.is(m.get('vmlockd_log_entries_dropped_total'), 0, 'stderr (a file) took every line the journal did not');
  const err = fs.readFileSync(errFile, 'utf8');
  assert.is(err.match(/did not take a log entry \(its queue is full: journald is not reading\)/g)?.length, 1, err.slice(0, 2000));
  assert.match(err, /event=LockAcquired/);
});

test('the journal and stderr both stuck (journald hung): the daemon answers on, its stderr backlog stays bounded, lost lines are counted', async () => {
  const dir = tmpdir();
  const jsock = path.join(dir, 'journal.sock');
  await deafJournal(jsock);
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'image');
  const port = await freePort();
  const sock = path.join(dir, 'd.sock');
  const outFile = path.join(dir, 'stdout');
  // stderr: a stream socket (as systemd's journal stream) whose other end is held and never read.
  const holder = spawn(
    'python3',
    [
      '-c',
      'import socket,subprocess,sys,os,time\na,b=socket.socketpair()\nst=os.fstat(b.fileno())\nenv=dict(os.environ,JOURNAL_STREAM="%d:%d"%(st.st_dev,st.st_ino))\np=subprocess.Popen(sys.argv[2:],stderr=b,stdout=open(sys.argv[1],"w"),env=env)\nb.close()\nprint(p.pid,flush=True)\ntime.sleep(3600)',
      outFile,
      process.execPath, MAIN, 'serve', '--state-dir', path.join(dir, 'state'), '--lockspace', path.join(dir, 'lockspace'), '--socket', sock, '--log-level', 'debug', '--metrics-address', `127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, VMLOCKD_JOURNAL_SOCKET: jsock, VMLOCKD_LOG_BACKLOG_MAX: '65536' } },
  );
  children.push(holder);
  let pidText = '';
  holder.stdout!.setEncoding('utf8').on('data', (d: string) => (pidText += d));
  const pid = Number(await until('the daemon pid', () => /^\d+\n/.test(pidText) && pidText.trim()));
  try {
    await until('the daemon to listen', () => fs.existsSync(outFile) && fs.readFileSync(outFile, 'utf8').includes('listening on'), 30_000);
    // Each round logs a few debug lines: far more than the socket buffers (about 200 KB) and the 64 KB backlog.
    await churn(sock, disk, 400);
    const m = await scrapeUntil('dropped lines counted', port, (got) => (got.get('vmlockd_log_entries_dropped_total') ?? 0) > 0);
    assert.ok(m.get('vmlockd_log_journal_queue_full_total')! > 0, JSON.stringify([...m]));
    const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    assert.ok(rss < 400_000, `the daemon's resident memory stayed reasonable: ${rss} kB`);
    assert.is(cli(['status', '--socket', sock]).code, 0, 'still answering');
  } finally {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

test('an entry too big for one datagram goes as a sealed memfd (journald protocol); a NUL or newline in a value in the binary form', async () => {
  const dir = tmpdir();
  const jsock = path.join(dir, 'journal.sock');
  // A real datagram socket standing in for journald's: it prints each datagram's size, the descriptors
  // it carried, each descriptor's seals and content (base64).
  const rx = spawn(
    'python3',
    [
      '-c',
      'import socket,sys,os,fcntl,base64,array,json\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("ready",flush=True)\nwhile True:\n  d,anc,fl,a=s.recvmsg(1<<20,socket.CMSG_SPACE(16*4))\n  fds=[]\n  for lv,ty,da in anc:\n    if lv==socket.SOL_SOCKET and ty==socket.SCM_RIGHTS:\n      fds+=list(array.array("i",da[:len(da)-len(da)%4]))\n  out=[]\n  for f in fds:\n    seals=fcntl.fcntl(f,fcntl.F_GET_SEALS)\n    os.lseek(f,0,0)\n    b=b""\n    while True:\n      c=os.read(f,1<<20)\n      if not c: break\n      b+=c\n    os.close(f)\n    out.append({"seals":seals,"data":base64.b64encode(b).decode()})\n  print(json.dumps({"len":len(d),"data":base64.b64encode(d).decode(),"fds":out}),flush=True)',
      jsock,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(rx);
  let got = '';
  rx.stdout!.setEncoding('utf8').on('data', (d: string) => (got += d));
  await until('the journal stand-in to bind', () => got.includes('ready'));
  const received = () => got.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { len: number; data: string; fds: Array<{ seals: number; data: string }> });
  const sink = new JournalSink(jsock);
  const small = journalEntry([['MESSAGE', 'small'], ['VMLOCKD_VM', 'a\nb\u0000c']]);
  assert.is(sink.send(small), 'sent');
  const big = journalEntry([['MESSAGE', `big ${'z'.repeat(600_000)}`], ['VMLOCKD_DISK', '/d\u0000x']]);
  assert.is(sink.send(big), 'sent');
  const [one, two] = await until('both entries', () => received().length >= 2 && received());
  assert.is(one!.fds.length, 0);
  const fields = parseEntry(Buffer.from(one!.data, 'base64'));
  assert.is(fields.get('VMLOCKD_VM'), 'a\nb\u0000c');
  // The big one: an empty datagram carrying exactly one descriptor, a memfd sealed against any change
  // (F_SEAL_SEAL 1 | SHRINK 2 | GROW 4 | WRITE 8), holding the whole entry.
  assert.is(two!.len, 0);
  assert.is(two!.fds.length, 1);
  assert.is(two!.fds[0]!.seals & 15, 15);
  const bigFields = parseEntry(Buffer.from(two!.fds[0]!.data, 'base64'));
  assert.is(bigFields.get('MESSAGE')!.length, 4 + 600_000);
  assert.is(bigFields.get('VMLOCKD_DISK'), '/d\u0000x');
  assert.is(sink.viaMemfd, 1);
  // The NUL went in the binary form (a text-form KEY=value line would carry it raw).
  assert.ok(small.includes(Buffer.from('VMLOCKD_VM\n')), small.toString('latin1'));
});

test.run();
