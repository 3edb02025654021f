// A scripted `virsh` for integration tests: an executable put first on a daemon's PATH that plays
// libvirt for the event orders and failures a real libvirtd cannot be made to produce on demand
// (a late Stopped, vol-path failing once, domstate failing). The daemon under test is real; only
// libvirt is scripted.
//   `virsh [-q] -c URI event ...`  follows DIR/events from its end when it starts, printing each new
//                                  line; a line `!exit N` makes it exit N (libvirtd went away).
//   `virsh [-q] -c URI ARGS...`    answers from DIR/answers.json (key: ARGS joined by spaces);
//                                  an unknown key fails as an unknown domain does.
// Every call is appended to DIR/calls.log.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const SCRIPT = `#!${process.execPath}
const fs = require('fs');
const path = require('path');
const dir = process.env.SCRIPTED_VIRSH_DIR;
const argv = process.argv.slice(2);
const a = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '-q') continue;
  if (argv[i] === '-c') { i++; continue; }
  a.push(argv[i]);
}
fs.appendFileSync(path.join(dir, 'calls.log'), a.join(' ') + '\\n');
if (a[0] === 'event') {
  const file = path.join(dir, 'events');
  let off = fs.statSync(file).size;
  const mark = path.join(dir, 'listener.' + process.pid);
  fs.writeFileSync(mark, '');
  const bye = (code) => { try { fs.unlinkSync(mark); } catch {} process.exit(code); };
  process.on('SIGTERM', () => bye(0));
  setInterval(() => {
    const size = fs.statSync(file).size;
    if (size <= off) return;
    const buf = Buffer.alloc(size - off);
    const fd = fs.openSync(file, 'r');
    fs.readSync(fd, buf, 0, buf.length, off);
    fs.closeSync(fd);
    off = size;
    for (const line of buf.toString('utf8').split('\\n')) {
      if (line === '') continue;
      const m = /^!exit (\\d+)$/.exec(line);
      if (m) { process.stderr.write('error: Disconnected from test:///scripted due to end of file\\n'); bye(Number(m[1])); }
      process.stdout.write(line + '\\n');
    }
  }, 20);
} else {
  const answers = JSON.parse(fs.readFileSync(path.join(dir, 'answers.json'), 'utf8'));
  const r = answers[a.join(' ')];
  if (!r) {
    const name = a[a.length - 1];
    process.stderr.write("error: failed to get domain '" + name + "'\\nerror: Domain not found: no domain with matching name '" + name + "'\\n");
    process.exit(1);
  }
  process.stdout.write(r.stdout || '');
  process.stderr.write(r.stderr || '');
  process.exit(r.code || 0);
}
`;

export class ScriptedVirsh {
  readonly bin: string;
  private readonly answers: Record<string, { code: number; stdout: string; stderr: string }> = {};

  constructor(readonly dir: string) {
    this.bin = path.join(dir, 'bin');
    fs.mkdirSync(this.bin, { recursive: true });
    fs.writeFileSync(path.join(this.bin, 'virsh'), SCRIPT, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'events'), '');
    fs.writeFileSync(path.join(dir, 'calls.log'), '');
    // It plays this host's libvirtd, the one the qemu hook serves (decision 0025): which libvirt it is.
    this.answers['uri'] = { code: 0, stdout: 'qemu:///system\n', stderr: '' };
    this.answers['hostname'] = { code: 0, stdout: `${os.hostname()}\n`, stderr: '' };
    this.save();
  }

  /** The daemon's environment: this virsh first on PATH. */
  env(): NodeJS.ProcessEnv {
    return { PATH: `${this.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, SCRIPTED_VIRSH_DIR: this.dir };
  }

  on(args: string, stdout: string): this {
    this.answers[args] = { code: 0, stdout, stderr: '' };
    return this.save();
  }

  fail(args: string, stderr: string): this {
    this.answers[args] = { code: 1, stdout: '', stderr: stderr.endsWith('\n') ? stderr : stderr + '\n' };
    return this.save();
  }

  /** Forget an answer: the call then fails as for an unknown domain. */
  forget(args: string): this {
    delete this.answers[args];
    return this.save();
  }

  /** One event line, as `virsh event --timestamp` prints it. */
  emit(domain: string, what: string): void {
    fs.appendFileSync(path.join(this.dir, 'events'), `2026-11-30 04:00:00.000+0000: event 'lifecycle' for domain '${domain}': ${what}\n`);
  }

  /** Make the running `virsh event` exit (libvirtd went away); the daemon restarts it and reconciles. */
  disconnect(): void {
    fs.appendFileSync(path.join(this.dir, 'events'), '!exit 1\n');
  }

  calls(): string[] {
    return fs.readFileSync(path.join(this.dir, 'calls.log'), 'utf8').split('\n').filter(Boolean);
  }

  /** How many `virsh event` processes are listening now. */
  listeners(): number {
    return fs.readdirSync(this.dir).filter((f) => f.startsWith('listener.')).length;
  }

  private save(): this {
    const tmp = path.join(this.dir, 'answers.json.tmp');
    fs.writeFileSync(tmp, JSON.stringify(this.answers));
    fs.renameSync(tmp, path.join(this.dir, 'answers.json'));
    return this;
  }
}
