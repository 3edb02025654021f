// The Debian package, as an operator meets it (docs/operations.md "Install the Debian package",
// decision 0013): `npm run package` builds vmlockd_<version>_<arch>.deb from this checkout, `apt-get
// install ./vmlockd_*.deb` installs it, the installed `vmlockd` runs on the installed defaults
// (/etc/vmlockd/vmlockd.conf, /var/lib/vmlockd, /run/vmlockd) from any working directory (acquire, a
// refusal, locks, audit), the installed qemu hook takes a VM's disks, a reinstall over the running
// daemon leaves it and its lock alone, `systemd-analyze verify` accepts the installed units, the man
// pages and the completion work, and remove / purge leave only what policy keeps.
// Root only (it installs a package); in CI a missing prerequisite fails, elsewhere it skips.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { ROOT, TestDaemon, UUID1, UUID2, UUID3, tmpdir, until } from '../helpers/daemon.js';
import { Sandbox, setUnitKey } from '../helpers/systemd.js';

const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const APT = ['-y', '-q', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300'];
const BIN = '/usr/bin/vmlockd';

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** A command's result; the environment has no VMLOCKD_* and no systemd variables, as an operator's shell. */
function sh(cmd: string, args: string[], opts: { cwd?: string; input?: string; timeout?: number; env?: Record<string, string> } = {}): Ran {
  const env: NodeJS.ProcessEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const k of Object.keys(env)) if (k.startsWith('VMLOCKD_') || k === 'NOTIFY_SOCKET' || k.startsWith('LISTEN_')) delete env[k];
  Object.assign(env, opts.env ?? {});
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? '/', input: opts.input ?? '', encoding: 'utf8', env, timeout: opts.timeout ?? 600_000, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, out: r.stdout ?? '', err: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

const installed = (): string => sh('dpkg-query', ['-W', '-f', '${db:Status-Status}', 'vmlockd']).out.trim();

function missing(): string | null {
  if (process.getuid?.() !== 0) return 'not root (the test installs a package)';
  if (!fs.existsSync('/lib/systemd/systemd')) return '/lib/systemd/systemd is missing (the systemd package)';
  for (const b of ['dpkg-deb', 'apt-get', 'systemd-analyze', 'man']) if (sh('sh', ['-c', `command -v ${b}`]).code !== 0) return `${b} is missing`;
  return null;
}

const why = missing();
if (why !== null) {
  test('the Debian package', () => {
    if (process.env.CI === 'true') assert.unreachable(`the package suite cannot run in CI: ${why}`);
    console.log(`  skipped: package suite: ${why}`);
  });
} else {
  const work = tmpdir('vmlockd-package-');
  const out = path.join(work, 'out');
  const deb = `vmlockd_${VERSION}_${sh('dpkg', ['--print-architecture']).out.trim()}.deb`;
  const cwd = path.join(work, 'cwd'); // where the installed binary runs: no ./var may appear here
  const disk = path.join(work, 'images', 'a.img');
  const hookDisk = path.join(work, 'images', 'hook.img');
  let daemon: ChildProcess | undefined;
  let daemonLog = '';
  let listing: string[] = [];

  const vmlockd = (...args: string[]): Ran => sh(BIN, args, { cwd });

  /** `vmlockd serve` as an operator would start it by hand: no flags, from a directory of its own. */
  const startDaemon = async (): Promise<void> => {
    daemonLog = '';
    daemon = spawn(BIN, ['serve'], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VMLOCKD_') && k !== 'NOTIFY_SOCKET' && !k.startsWith('LISTEN_'))) });
    daemon.stdout!.on('data', (b: Buffer) => (daemonLog += b.toString()));
    daemon.stderr!.on('data', (b: Buffer) => (daemonLog += b.toString()));
    await until('the installed daemon answers on /run/vmlockd/vmlockd.sock', () => daemon!.exitCode === null && vmlockd('status').code === 0, 60_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${daemonLog}`);
    });
    // The line may reach this process after the socket answers.
    await until('the listening line', () => /listening on/.test(daemonLog));
  };

  const stopDaemon = async (): Promise<void> => {
    if (daemon === undefined || daemon.exitCode !== null || daemon.signalCode !== null) return;
    const exited = new Promise((r) => daemon!.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
  };

  test.before(() => {
    fs.mkdirSync(cwd, { recursive: true });
    fs.mkdirSync(path.dirname(disk), { recursive: true });
    fs.writeFileSync(disk, 'image a');
    fs.writeFileSync(hookDisk, 'image hook');
    // A package left by an interrupted run of this test (never anything else's: the name is ours).
    if (installed() !== '') {
      console.log(`  package: purging a vmlockd package left installed (${installed()})`);
      sh('apt-get', ['purge', ...APT, 'vmlockd']);
    }
    if (fs.existsSync('/var/lib/vmlockd')) fs.rmSync('/var/lib/vmlockd', { recursive: true, force: true });
  });

  test.after(async () => {
    await stopDaemon();
    if (installed() !== '') sh('apt-get', ['purge', ...APT, 'vmlockd']);
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('npm run package builds vmlockd_<version>_<arch>.deb: units, conffile, man pages, completion, production modules only', () => {
    const r = sh('npm', ['run', 'package', '--', out], { cwd: ROOT });
    assert.is(r.code, 0, r.out + r.err);
    assert.ok(fs.existsSync(path.join(out, deb)), `${deb} in ${fs.readdirSync(out).join(', ')}`);
    const info = sh('dpkg-deb', ['-f', path.join(out, deb), 'Package', 'Version', 'Depends']).out;
    assert.match(info, /^Package: vmlockd$/m);
    assert.match(info, new RegExp(`^Version: ${VERSION}$`, 'm'));
    assert.match(info, /^Depends: nodejs \(>= 20\.19\), nodejs \(<< 21\)/m);
    // The native .node modules' libraries, computed by dpkg-shlibdeps (review14: lintian's missing-dependency-on-libc).
    assert.match(info, /^Depends: .*, libc6 \(>= [0-9.]+\)/m);
    assert.match(info, /^Depends: .*, libstdc\+\+6 \(>= [0-9.]+\)/m);
    const ctl = path.join(work, 'control');
    assert.is(sh('dpkg-deb', ['-e', path.join(out, deb), ctl]).code, 0);
    assert.is(fs.readFileSync(path.join(ctl, 'conffiles'), 'utf8').trim(), '/etc/vmlockd/vmlockd.conf');
    listing = sh('dpkg-deb', ['-c', path.join(out, deb)]).out.split('\n').filter(Boolean).map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\./, ''));
    for (const f of [
      '/usr/bin/vmlockd',
      '/usr/lib/vmlockd/dist/main.js',
      '/usr/lib/vmlockd/install-layout.json',
      '/usr/lib/vmlockd/native/build/Release/vmlockd_native.node',
      '/usr/lib/vmlockd/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      '/usr/lib/vmlockd/node_modules/fs-ext/build/Release/fs_ext.node',
      '/usr/lib/vmlockd/libvirt-hook-qemu',
      '/etc/vmlockd/vmlockd.conf',
      '/lib/systemd/system/vmlockd.service',
      '/lib/systemd/system/vmlockd.socket',
      '/lib/systemd/system/vmlockd-virtlockd.socket',
      '/usr/lib/tmpfiles.d/vmlockd.conf',
      '/usr/share/man/man8/vmlockd.8.gz',
      '/usr/share/man/man5/vmlockd.conf.5.gz',
      '/usr/share/bash-completion/completions/vmlockd',
      '/usr/share/doc/vmlockd/copyright',
    ]) {
      assert.ok(listing.includes(f), `${f} is in the package`);
    }
    const stray = listing.filter((f) => /node_modules\/(typescript|tsx|uvu|fast-check|@types|marked|marked-man|esbuild)\/|^\/usr\/lib\/vmlockd\/(test|bench|src)\/|^\/var\/lib\/vmlockd\/./.test(f));
    assert.equal(stray, [], 'no devDependency, test or state in the package');
    // lintian's cheap findings stay fixed: no dotfiles or native build debris in node_modules, a
    // Debian changelog, stripped .node files that are not executable, scripts executable, others not.
    const debris = listing.filter((f) => /^\/usr\/lib\/vmlockd\/node_modules\/(.*\/)?\.[^/]|\/(Makefile|binding\.gyp|config\.gypi|[^/]+\.mk|[^/]+\.html)$|\/build\/Release\/(obj|\.deps)/.test(f));
    assert.equal(debris, [], 'no dotfiles or build debris in the package');
    assert.ok(listing.includes('/usr/share/doc/vmlockd/changelog.gz'), 'the Debian changelog (native package: changelog.gz)');
    const tree = path.join(work, 'tree');
    assert.is(sh('dpkg-deb', ['-x', path.join(out, deb), tree]).code, 0);
    const changelog = sh('sh', ['-c', `zcat ${tree}/usr/share/doc/vmlockd/changelog.gz | dpkg-parsechangelog -l - -S Version`]);
    assert.is(changelog.out.trim(), VERSION, `the changelog's newest entry is this version: ${changelog.err}`);
    const nodes = listing.filter((f) => f.endsWith('.node'));
    assert.is(nodes.length, 3, nodes.join(', '));
    for (const f of nodes) {
      assert.is(fs.statSync(tree + f).mode & 0o777, 0o644, `${f} is 0644`);
      const sections = sh('readelf', ['-S', '--wide', tree + f]);
      assert.is(sections.code, 0, sections.err);
      assert.not.match(sections.out, /\.symtab|\.debug_/, `${f} is stripped`);
    }
    const modes = sh('sh', ['-c', `cd ${tree} && find usr/lib/vmlockd -type f -perm /111 -print0 | xargs -0 -r -n1 sh -c 'printf "%s %s\\n" "$(head -c 2 "$0")" "$0"'`]).out.split('\n').filter(Boolean);
    assert.equal(modes.filter((l) => !l.startsWith('#! ')), [], 'an executable file in /usr/lib/vmlockd is a script');
    assert.ok(modes.includes('#! usr/lib/vmlockd/dist/main.js'), `dist/main.js is executable: ${modes.join(', ')}`);
  });

  test('nodejs from dpkg satisfies Depends (the native parts are built for Node 20)', () => {
    const v = sh('dpkg-query', ['-W', '-f', '${Version}', 'nodejs']);
    assert.is(v.code, 0, `node is not a dpkg package here: apt-get cannot satisfy Depends: nodejs (${v.err.trim()}); decision 0013`);
    assert.is(sh('dpkg', ['--compare-versions', v.out, 'ge', '20.19']).code, 0, `nodejs ${v.out} < 20.19`);
    assert.is(sh('dpkg', ['--compare-versions', v.out, 'lt', '21']).code, 0, `nodejs ${v.out} >= 21`);
  });

  test('apt-get install ./vmlockd_*.deb: state and socket directories, the units enabled, the conffile is config show --defaults', () => {
    const r = sh('apt-get', ['install', ...APT, `./${deb}`], { cwd: out });
    assert.is(r.code, 0, r.out + r.err);
    assert.is(installed(), 'installed');
    assert.is(fs.statSync('/var/lib/vmlockd').mode & 0o777, 0o700);
    assert.ok(fs.statSync('/run/vmlockd').isDirectory());
    assert.ok(fs.existsSync('/etc/systemd/system/multi-user.target.wants/vmlockd.service'), 'vmlockd.service enabled');
    assert.ok(fs.existsSync('/etc/systemd/system/sockets.target.wants/vmlockd.socket'), 'vmlockd.socket enabled');
    assert.not.ok(fs.existsSync('/etc/systemd/system/sockets.target.wants/vmlockd-virtlockd.socket'), 'the virtlockd socket is not enabled');
    assert.not.ok(fs.existsSync('/etc/libvirt/hooks/qemu') && fs.realpathSync('/etc/libvirt/hooks/qemu') === '/usr/lib/vmlockd/libvirt-hook-qemu', 'the hook is not enabled');

    const conf = fs.readFileSync('/etc/vmlockd/vmlockd.conf', 'utf8');
    const defaults = vmlockd('config', 'show', '--defaults');
    assert.is(defaults.code, 0, defaults.err);
    assert.is(conf, defaults.out, 'the conffile is what config show --defaults prints on the installed system');
    const shown = vmlockd('config', 'show');
    assert.is(shown.code, 0, shown.err);
    // Every key config show prints is in the file, commented out, with the same value (but host_id).
    for (const line of shown.out.split('\n').filter((l) => /^[a-z_]+ = /.test(l))) {
      const [key, value] = [line.split(' = ')[0]!, line.split(' = ')[1]!.split('  # ')[0]!];
      if (key === 'host_id') assert.match(conf, /^#host_id = /m);
      else assert.ok(conf.split('\n').includes(`#${key} = ${value}  # default`), `#${key} = ${value} in the conffile`);
    }
    assert.match(shown.out, /^state_dir = "\/var\/lib\/vmlockd"  # default$/m);
    assert.match(shown.out, /^socket = "\/run\/vmlockd\/vmlockd.sock"  # default$/m);
    assert.is(vmlockd('config', 'check', '/etc/vmlockd/vmlockd.conf').code, 0);
  });

  test('the installed vmlockd on its installed defaults, from another directory: acquire, a refusal, locks, audit', async () => {
    await startDaemon();
    assert.match(daemonLog, /listening on \/run\/vmlockd\/vmlockd\.sock .*lockspace \/var\/lib\/vmlockd\/lockspace, journal \/var\/lib\/vmlockd\/journal\.db/);
    const status = JSON.parse(vmlockd('status', '--json').out) as { stateDir: string; socket: string };
    assert.is(status.stateDir, '/var/lib/vmlockd');
    assert.is(status.socket, '/run/vmlockd/vmlockd.sock');

    const a = vmlockd('acquire', '--vm', UUID1, '--name', 'web1', disk);
    assert.is(a.code, 0, a.err);
    assert.match(a.out, /^acquired .*a\.img \(exclusive\)/);
    const b = vmlockd('acquire', '--vm', UUID2, '--name', 'web2', disk);
    assert.is(b.code, 3, `a second VM is refused (exit 3): ${b.out}${b.err}`);
    assert.match(b.err, /refused: disk .*a\.img is held exclusively by VM web1/);
    const locks = JSON.parse(vmlockd('locks', '--json').out) as Array<{ path: string; vm: { uuid: string } }>;
    assert.equal(locks.map((l) => [l.path, l.vm.uuid]), [[disk, UUID1]]);
    const audit = JSON.parse(vmlockd('audit', '--disk', disk, '--json').out) as Array<{ kind: string }> | { facts: Array<{ kind: string }> };
    const kinds = (Array.isArray(audit) ? audit : audit.facts).map((f) => f.kind);
    assert.ok(kinds.includes('LockAcquired') && kinds.includes('LockRefused'), `audit: ${kinds.join(', ')}`);
    assert.ok(fs.existsSync('/var/lib/vmlockd/journal.db'));
    assert.equal(fs.readdirSync(cwd), [], 'nothing created in the working directory (no ./var)');
  });

  test('the installed qemu hook wrapper reaches the installed daemon (prepare begin takes, release end frees)', () => {
    const xml = `<domain type='qemu'><name>hooked</name><uuid>${UUID3}</uuid><devices><disk type='file' device='disk'><source file='${hookDisk}'/><target dev='vda'/></disk></devices></domain>`;
    const take = sh('/usr/lib/vmlockd/libvirt-hook-qemu', ['hooked', 'prepare', 'begin', '-'], { input: xml });
    assert.is(take.code, 0, take.err);
    const held = JSON.parse(vmlockd('locks', '--json').out) as Array<{ path: string; vm: { uuid: string } }>;
    assert.ok(held.some((l) => l.path === hookDisk && l.vm.uuid === UUID3), JSON.stringify(held));
    const free = sh('/usr/lib/vmlockd/libvirt-hook-qemu', ['hooked', 'release', 'end', '-'], { input: xml });
    assert.is(free.code, 0, free.err);
    const after = JSON.parse(vmlockd('locks', '--json').out) as Array<{ path: string }>;
    assert.not.ok(after.some((l) => l.path === hookDisk));
  });

  test('an upgrade (reinstall) over the running daemon: prerm does not stop it, the lock stays, the edited conffile is kept', () => {
    fs.appendFileSync('/etc/vmlockd/vmlockd.conf', '# an operator was here\n');
    const pid = daemon!.pid;
    const r = sh('apt-get', ['install', '--reinstall', ...APT, `./${deb}`], { cwd: out });
    assert.is(r.code, 0, r.out + r.err);
    assert.is(daemon!.exitCode, null, `the daemon exited during the upgrade: ${daemonLog}`);
    assert.is(daemon!.signalCode, null);
    const status = JSON.parse(vmlockd('status', '--json').out) as { pid: number };
    assert.is(status.pid, pid);
    assert.is(vmlockd('acquire', '--vm', UUID2, disk).code, 3, 'the lock is still held: another VM is refused');
    assert.match(fs.readFileSync('/etc/vmlockd/vmlockd.conf', 'utf8'), /# an operator was here\n$/);
  });

  test('systemd-analyze verify accepts the installed units (ExecStart, man:vmlockd(8) found)', () => {
    const r = sh('systemd-analyze', ['verify', '/lib/systemd/system/vmlockd.service', '/lib/systemd/system/vmlockd.socket', '/lib/systemd/system/vmlockd-virtlockd.socket']);
    const ours = `${r.out}${r.err}`.split('\n').filter((l) => /vmlockd/.test(l));
    assert.is(r.code, 0, `${r.out}${r.err}`);
    assert.equal(ours, [], 'no complaint about a vmlockd unit');
  });

  test('man vmlockd, man vmlockd.conf and the bash completion work as installed', () => {
    assert.is(sh('man', ['-w', 'vmlockd']).out.trim(), '/usr/share/man/man8/vmlockd.8.gz');
    const page = sh('sh', ['-c', 'MANWIDTH=120 man -P cat 8 vmlockd 2>/dev/null']).out;
    assert.match(page, /^NAME\n\s+vmlockd - cluster-aware disk lock daemon/m);
    assert.match(page, /acquire --vm UUID/, 'the usage table is the COMMANDS section');
    assert.not.match(page, /&quot;|&#39;|&lt;/, 'no HTML entities left');
    const conf = sh('sh', ['-c', 'MANWIDTH=120 man -P cat 5 vmlockd.conf 2>/dev/null']).out;
    assert.match(conf, /vmlockd\.conf - vmlockd configuration file/);
    assert.match(conf, /file_lockspace_dir/);
    const complete = (line: string): string =>
      sh('bash', ['-c', `source /usr/share/bash-completion/completions/vmlockd; read -ra COMP_WORDS <<< "$1"; [[ $1 == *' ' ]] && COMP_WORDS+=(''); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _vmlockd; echo "\${COMPREPLY[*]}"`, '_', line]).out.trim();
    assert.is(complete('vmlockd acq'), 'acquire');
    assert.is(complete('vmlockd serve --log-level w'), 'warning');
    assert.is(complete('vmlockd journal '), 'compact verify');
    assert.ok(complete('vmlockd serve --take').split(' ').includes('--takeover'));
    assert.is(sh('bash', ['-c', 'source /usr/share/bash-completion/completions/vmlockd; complete -p vmlockd']).out.trim(), 'complete -o filenames -F _vmlockd vmlockd');
  });

  test('under systemd (a confined manager) the installed units run /usr/bin/vmlockd serve unchanged; systemctl restart (the upgrade) leaves another host nothing', async () => {
    await stopDaemon(); // a stop without systemd: the journal still says VM 1 holds the disk
    const sbDir = path.join(work, 'sandbox');
    const log = path.join(work, 'unit.log');
    const sb = Sandbox.start(sbDir);
    let other: TestDaemon | undefined;
    let hammering = true;
    try {
      const installedUnit = (n: string): string => fs.readFileSync(`/lib/systemd/system/${n}`, 'utf8');
      let service = installedUnit('vmlockd.service');
      assert.match(service, /^ExecStart=\/usr\/bin\/vmlockd serve$/m);
      // A user manager would put StateDirectory= under $HOME; postinst made /var/lib/vmlockd. No journald here.
      service = setUnitKey(service, 'Service', 'StateDirectory', null);
      service = setUnitKey(service, 'Service', 'StateDirectoryMode', null);
      service = setUnitKey(service, 'Service', 'StandardOutput', `append:${log}`);
      service = setUnitKey(service, 'Service', 'StandardError', `append:${log}`);
      sb.install('vmlockd.service', service);
      sb.install('vmlockd.socket', installedUnit('vmlockd.socket'));
      assert.is(sb.ctl('daemon-reload').code, 0);
      const st = sb.ctl('start', 'vmlockd.socket', 'vmlockd.service');
      const unitLog = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
      assert.is(st.code, 0, `${st.out}\n${unitLog()}`);
      const socket = sb.inside('/run/vmlockd/vmlockd.sock');
      const status = (): Record<string, any> | undefined => {
        const r = vmlockd('status', '--json', '--socket', socket);
        return r.code === 0 ? (JSON.parse(r.out) as Record<string, any>) : undefined;
      };
      const first = await until('the unit answers on its socket', () => status(), 60_000);
      assert.is(first.stateDir, '/var/lib/vmlockd');
      assert.is(first.socket, '/run/vmlockd/vmlockd.sock', 'the installed default is the socket unit\'s ListenStream=');
      assert.ok(JSON.stringify(first.started?.sockets ?? '').includes('control'), `the control socket came from vmlockd.socket: ${JSON.stringify(first.started)}`);
      const held = JSON.parse(vmlockd('locks', '--json', '--socket', socket).out) as Array<{ path: string; vm: { uuid: string } }>;
      assert.equal(held.map((l) => [l.path, l.vm.uuid]), [[disk, UUID1]], 're-taken from the journal');
      await until('the lock in the descriptor store', () => status()?.started?.fdStore?.stored >= 1);

      // Another host on the same lockspace asks for the disk all through the restart.
      other = await new TestDaemon({ stateDir: path.join(work, 'other'), lockspace: '/var/lib/vmlockd/lockspace', hostId: 'package-other', socket: path.join(work, 'other.sock') }).start();
      let attempts = 0;
      const stolen: string[] = [];
      const hammer = (async () => {
        while (hammering) {
          try {
            const r = await call(other!.socket, 'POST', '/v1/acquire', { vm: { uuid: UUID2 }, disks: [{ path: disk }] });
            attempts++;
            if (r.status === 200 && (r.body as { status?: string }).status === 'ok') stolen.push(disk);
          } catch {
            if (!hammering) return;
          }
        }
      })();
      await until('the other host was refused once', () => attempts > 0);
      const pid = first.pid as number;
      const re = await sb.ctlAsync('restart', 'vmlockd.service');
      assert.is(re.code, 0, `${re.out}\n${unitLog()}`);
      const after = await until('the restarted daemon', () => {
        const s = status();
        return s !== undefined && s.pid !== pid ? s : undefined;
      }, 60_000);
      const before = attempts;
      await until('the other host asked again after the restart', () => attempts > before + 2);
      hammering = false;
      await hammer;
      assert.equal(stolen, [], `another host got the disk during systemctl restart (${attempts} attempts)`);
      assert.is(after.started?.how, 'store', `the restarted daemon adopted the lock from the store: ${JSON.stringify(after.started)}`);
    } finally {
      hammering = false;
      await other?.kill('SIGKILL');
      sb.ctl('stop', 'vmlockd.service', 'vmlockd.socket');
      const r = sb.stop();
      assert.is(r.code, 0, `systemd-sandbox stop: ${r.out}`);
    }
    await startDaemon(); // for the removal: a daemon run by hand, holding the disk again
    assert.is(vmlockd('acquire', '--vm', UUID2, disk).code, 3);
  });

  test('apt-get remove while the daemon holds a running VM\'s lock: refused, nothing touched (review14)', () => {
    const r = sh('apt-get', ['remove', ...APT, 'vmlockd']);
    assert.is.not(r.code, 0, 'the removal is refused');
    assert.match(r.out + r.err, /REFUSING to remove the package: the running vmlockd holds 1 disk lock\(s\)/);
    assert.match(r.out + r.err, /VMLOCKD_REMOVE_WITH_LOCKS=1/);
    assert.is(installed(), 'installed');
    assert.is(daemon!.exitCode, null);
    assert.is(vmlockd('acquire', '--vm', UUID2, disk).code, 3, 'the lock is still held');
  });

  test('apt-get remove with VMLOCKD_REMOVE_WITH_LOCKS=1: the package files go; the state, the journal and the conffile stay; a daemon run by hand is warned about, not killed', () => {
    const r = sh('apt-get', ['remove', ...APT, 'vmlockd'], { env: { VMLOCKD_REMOVE_WITH_LOCKS: '1' } });
    assert.is(r.code, 0, r.out + r.err);
    assert.match(r.out + r.err, /the running vmlockd holds 1 disk lock\(s\) of running VMs and is not stopped \(no systemd\)/);
    assert.is(daemon!.exitCode, null, 'no systemd: the package does not kill a daemon it did not start');
    assert.is(installed(), 'config-files');
    for (const f of listing.filter((f) => !f.endsWith('/') && f !== '/etc/vmlockd/vmlockd.conf')) assert.not.ok(fs.existsSync(f), `${f} removed`);
    assert.not.ok(fs.existsSync('/usr/lib/vmlockd'));
    assert.ok(fs.existsSync('/etc/vmlockd/vmlockd.conf'), 'the conffile stays until purge');
    assert.ok(fs.existsSync('/var/lib/vmlockd/journal.db'), 'the journal stays until purge');
  });

  test('apt-get purge while the daemon still runs: its journal, lockspace and socket are kept (review14)', () => {
    const r = sh('apt-get', ['purge', ...APT, 'vmlockd']);
    assert.is(r.code, 0, r.out + r.err);
    assert.match(r.out + r.err, /still runs on \/var\/lib\/vmlockd: its journal, lockspace and socket are KEPT/);
    assert.is(installed(), '');
    assert.is(daemon!.exitCode, null);
    assert.ok(fs.existsSync('/var/lib/vmlockd/journal.db'), 'the running daemon\'s journal is kept');
    assert.ok(fs.existsSync('/run/vmlockd/vmlockd.sock'), 'the running daemon\'s control socket is kept');
    assert.is(sh('node', [path.join(ROOT, 'dist', 'main.js'), 'locks', '--socket', '/run/vmlockd/vmlockd.sock']).code, 0, 'the daemon is still reachable');
  });

  test('apt-get purge: nothing of vmlockd is left (conffile, state, socket directory, unit state)', async () => {
    await stopDaemon();
    // What the kept-state message says to do once the daemon is stopped; then a purge of an
    // installed package removes everything itself.
    fs.rmSync('/var/lib/vmlockd', { recursive: true, force: true });
    fs.rmSync('/run/vmlockd', { recursive: true, force: true });
    const inst = sh('apt-get', ['install', ...APT, path.join(out, deb)]);
    assert.is(inst.code, 0, inst.out + inst.err);
    const r = sh('apt-get', ['purge', ...APT, 'vmlockd']);
    assert.is(r.code, 0, r.out + r.err);
    assert.is(installed(), '');
    for (const p of ['/etc/vmlockd', '/var/lib/vmlockd', '/run/vmlockd', '/usr/lib/vmlockd', '/usr/share/doc/vmlockd', ...listing.filter((f) => !f.endsWith('/'))]) {
      assert.not.ok(fs.existsSync(p), `${p} is gone`);
    }
    const left = sh('find', ['/etc/systemd', '/var/lib/systemd', '/etc/libvirt', '-name', '*vmlockd*']).out.trim();
    assert.is(left, '', 'no unit links, masks or deb-systemd-helper state left');
  });

  test.run();
}
if (why !== null) test.run();
