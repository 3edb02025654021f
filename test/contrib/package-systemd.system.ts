// The Debian package's maintainer scripts against a real systemd *system* manager (decision 0013):
// a Debian 12 container booted with systemd-nspawn (test/helpers/nspawn-container: systemd as its
// PID 1 with journald and D-Bus, confined to a cgroup subtree of its own, root file system volatile).
// Inside it: `apt-get install` of the .deb enables and starts vmlockd.socket + vmlockd.service
// (postinst), a VM's lock is taken, another host on the same lockspace asks for the disk all through
// an upgrade to a rebuilt .deb with a higher version (prerm upgrade must not stop the daemon; postinst
// restarts it through systemd, the descriptor store keeps the lock), then remove (prerm stops, postrm
// masks, the state stays) and purge (nothing left). Also the daemon's journal entries as the real
// systemd-journald stores them: fields, a VM name holding a newline and a NUL, an entry too big for
// one datagram (memfd).
// Tier "system" (`node test/run.mjs system`; `npm test` adds it when VMLOCKD_CI_SYSTEMD_CONTAINER=1):
// it needs the container's root file system that .ci/install-system.sh makes under that flag, and
// takes about 4 minutes (docs/ci.md).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MESSAGE_IDS } from '../../src/daemon/log.js';
import { ROOT, UUID1, UUID2, UUID3, tmpdir, until } from '../helpers/daemon.js';

const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const UPGRADE = `${VERSION}+citest1`;
const ROOTFS = process.env.VMLOCKD_CONTAINER_ROOTFS || '/var/cache/vmlockd-ci/rootfs-bookworm-systemd';
const HELPER = path.join(ROOT, 'test', 'helpers', 'nspawn-container');
const APT = 'apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300';
const DISK = '/srv/images/a.img';

interface Ran {
  code: number;
  out: string;
  err: string;
}

function sh(cmd: string, args: string[], opts: { cwd?: string; timeout?: number } = {}): Ran {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? ROOT, encoding: 'utf8', timeout: opts.timeout ?? 900_000, maxBuffer: 256 << 20, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return { code: r.status ?? -1, out: r.stdout ?? '', err: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

const cgroupOfPid1 = (): string => fs.readFileSync('/proc/1/cgroup', 'utf8');
/** Our cgroups in every hierarchy (the helper names them vmlockd-nspawn-*). */
const ourCgroups = (): string[] =>
  fs
    .readdirSync('/sys/fs/cgroup')
    .flatMap((h) => (fs.existsSync(`/sys/fs/cgroup/${h}/cgroup.procs`) ? fs.readdirSync(`/sys/fs/cgroup/${h}`).filter((d) => d.startsWith('vmlockd-nspawn-')).map((d) => `${h}/${d}`) : []));

function missing(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (!fs.existsSync(path.join(ROOTFS, 'lib/systemd/systemd'))) return `no container root file system at ${ROOTFS} (VMLOCKD_CI_SYSTEMD_CONTAINER=1 bash .ci/install-system.sh makes it)`;
  for (const b of ['systemd-nspawn', 'nsenter', 'dpkg-deb', 'dpkg-repack']) if (sh('sh', ['-c', `command -v ${b}`]).code !== 0) return `${b} is missing`;
  return null;
}

const why = missing();
if (why !== null) {
  test('the package under a systemd system manager', () => {
    if (process.env.CI === 'true') assert.unreachable(`cannot run in CI: ${why}`);
    console.log(`  skipped: systemd container suite: ${why}`);
  });
} else {
  const work = tmpdir('vmlockd-system-');
  const debs = path.join(work, 'debs');
  const box = path.join(work, 'container');
  const deb = `vmlockd_${VERSION}_${sh('dpkg', ['--print-architecture']).out.trim()}.deb`;
  const upDeb = deb.replace(`_${VERSION}_`, `_${UPGRADE}_`);
  const pid1Before = cgroupOfPid1();
  const cgroupsBefore = ourCgroups();
  let started = false;

  /** A shell script run inside the container (as root, in all its namespaces). */
  const inside = (script: string, timeout?: number): Ran => sh(HELPER, ['exec', box, 'sh', '-c', script], { timeout });
  const ok = (script: string): string => {
    const r = inside(script);
    assert.is(r.code, 0, `inside the container: ${script}\n${r.out}\n${r.err}`);
    return r.out;
  };
  const status = (socket = '/run/vmlockd/vmlockd.sock'): Record<string, any> | undefined => {
    const r = inside(`vmlockd status --json --socket ${socket}`);
    return r.code === 0 ? (JSON.parse(r.out) as Record<string, any>) : undefined;
  };
  const mainPid = (): number => Number(/MainPID=(\d+)/.exec(ok('systemctl show -p MainPID vmlockd.service'))![1]);
  /** journalctl -o json: a field is a string, or an array of bytes when it is not printable text. */
  const journal = (match: string): Array<Record<string, string | number[]>> =>
    ok(`journalctl --no-pager --all -o json _SYSTEMD_UNIT=vmlockd.service ${match}`)
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, string | number[]>);
  const text = (v: string | number[] | undefined): string | undefined => (Array.isArray(v) ? Buffer.from(v).toString('utf8') : v);

  test.after(() => {
    if (started) sh(HELPER, ['stop', box]);
    fs.rmSync(work, { recursive: true, force: true }); // about 250 MB of packages
  });

  test('the .deb, an upgrade of it with a higher version, and the machine\'s nodejs as a .deb', () => {
    fs.mkdirSync(debs, { recursive: true });
    const given = process.env.VMLOCKD_PACKAGE_DEB;
    if (given) fs.copyFileSync(given, path.join(debs, deb));
    else {
      const r = sh('npm', ['run', 'package', '--', debs]);
      assert.is(r.code, 0, r.out + r.err);
    }
    // The upgrade: the same package, rebuilt with a higher version whose daemon says so (status.version).
    const up = path.join(work, 'up');
    assert.is(sh('dpkg-deb', ['-R', path.join(debs, deb), up]).code, 0);
    const control = path.join(up, 'DEBIAN', 'control');
    fs.writeFileSync(control, fs.readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${UPGRADE}`));
    // The daemon reports package.json's version (src/version.ts reads the one installed beside dist/).
    const manifest = path.join(up, 'usr/lib/vmlockd/package.json');
    const pkg = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version: string };
    assert.is(pkg.version, VERSION);
    fs.writeFileSync(manifest, JSON.stringify({ ...pkg, version: UPGRADE }, null, 2) + '\n');
    let r = sh('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z1', '-b', up, path.join(debs, upDeb)]);
    assert.is(r.code, 0, r.err);
    fs.rmSync(up, { recursive: true });
    // Depends: nodejs (>= 20.19): the container gets the machine's own nodejs package (NodeSource's),
    // repacked from dpkg's database (Debian 12's nodejs is 18).
    r = sh('dpkg-repack', ['--generate', 'nodejs'], { cwd: work });
    assert.is(r.code, 0, r.out + r.err);
    const gen = fs.readdirSync(work).find((d) => d.startsWith('dpkg-repack.nodejs'))!;
    r = sh('dpkg-deb', ['--root-owner-group', '-Znone', '-b', path.join(work, gen), path.join(debs, 'nodejs.deb')]);
    assert.is(r.code, 0, r.err);
    fs.rmSync(path.join(work, gen), { recursive: true });
  });

  test('the container boots a systemd system manager in its own cgroup subtree; PID 1 of the machine stays where it was', () => {
    const r = sh(HELPER, ['start', ROOTFS, box, `--bind-ro=${debs}:/debs`]);
    assert.is(r.code, 0, r.out + r.err);
    started = true;
    assert.is(ok('systemctl is-system-running').trim(), 'running');
    assert.match(ok('cat /proc/1/comm'), /^systemd/);
    assert.is(cgroupOfPid1(), pid1Before);
    const leader = fs.readFileSync(path.join(box, 'leader.pid'), 'utf8').trim();
    assert.match(fs.readFileSync(`/proc/${leader}/cgroup`, 'utf8'), /^0::\/vmlockd-nspawn-[^\n]*\/payload\/init\.scope$/m);
  });

  test('apt-get install ./vmlockd_*.deb under systemd: postinst enables and starts vmlockd.socket and vmlockd.service; vmlockd-virtlockd.socket stays off', () => {
    const r = inside(`${APT} /debs/nodejs.deb /debs/${deb}`);
    assert.is(r.code, 0, r.out + r.err);
    assert.is(ok('systemctl is-enabled vmlockd.socket vmlockd.service || true'), 'enabled\nenabled\n');
    assert.is(ok('systemctl is-active vmlockd.socket vmlockd.service || true'), 'active\nactive\n');
    assert.is(ok('systemctl is-enabled vmlockd-virtlockd.socket || true').trim(), 'disabled');
    assert.is(ok('systemctl is-active vmlockd-virtlockd.socket || true').trim(), 'inactive');
    const st = status()!;
    assert.is(st.version, VERSION);
    assert.is(st.pid, mainPid());
    assert.ok(JSON.stringify(st.started?.sockets ?? '').includes('control'), `the control socket came from vmlockd.socket: ${JSON.stringify(st.started)}`);
  });

  /** POST /v1/acquire with node inside the container; the body through a file in /debs (a NUL cannot be in argv, and a 300 KB name is more than one argv string takes). */
  let posts = 0;
  const post = (socket: string, uuid: string, name: string, disk: string): string => {
    const file = `req-${++posts}.json`;
    fs.writeFileSync(path.join(debs, file), JSON.stringify({ vm: { uuid, name }, disks: [{ path: disk }] }));
    return ok(
      `node -e 'const h=require("http");const r=h.request({socketPath:process.argv[1],method:"POST",path:"/v1/acquire",headers:{"content-type":"application/json"}},(s)=>{let b="";s.on("data",(d)=>b+=d);s.on("end",()=>{console.log(s.statusCode,b)})});r.end(require("fs").readFileSync(process.argv[2]))' ${socket} /debs/${file}`,
    );
  };

  test('journald stores the daemon\'s entries with their fields; a VM name with a newline and a NUL intact; an entry too big for a datagram arrives whole (memfd)', async () => {
    ok(`mkdir -p /srv/images && for f in a b c; do echo image > /srv/images/$f.img; done`);
    const ctl = '/run/vmlockd/vmlockd.sock';
    const odd = 'web\nsecond line\u0000after nul';
    // log_level is "warning" by default: a refusal is logged (LockRefused), naming the refused VM.
    ok(`vmlockd acquire --vm ${UUID3} --name holder /srv/images/b.img`);
    const p1 = post(ctl, UUID2, odd, '/srv/images/b.img');
    assert.match(p1, /"status":"refused"/);
    const es = await until('the LockRefused entry in the journal', () => {
      const got = journal('VMLOCKD_EVENT=LockRefused');
      return got.length >= 1 && got;
    }, 60_000);
    const one = es.find((e) => text(e.VMLOCKD_DISK) === '/srv/images/b.img');
    assert.ok(one, JSON.stringify(es.map((e) => e.VMLOCKD_DISK)));
    assert.is(text(one!.VMLOCKD_VM), odd);
    assert.is(one!.SYSLOG_IDENTIFIER, 'vmlockd');
    assert.is(one!.PRIORITY, '4');
    assert.is(one!.MESSAGE_ID, MESSAGE_IDS.LockRefused);
    assert.ok(text(one!.MESSAGE)!.includes(odd), `the message keeps the name as it is: ${JSON.stringify(text(one!.MESSAGE))}`);
    ok(`vmlockd release --vm ${UUID3} /srv/images/b.img`);
    // No client input makes an entry bigger than a datagram today (vm.name <= 256 characters, paths
    // <= PATH_MAX), so the installed logger itself writes one of 1 MB, run as a unit (its stderr a
    // journal stream, as the daemon's): it must arrive whole, through a sealed memfd.
    fs.writeFileSync(
      path.join(debs, 'big-entry.mjs'),
      `import { Logger } from '/usr/lib/vmlockd/dist/daemon/log.js';
const log = new Logger('info');
if (log.output !== 'journal') throw new Error('not writing to the journal: ' + log.output);
log.info('big entry ' + 'y'.repeat(1 << 20), { event: 'CiBigEntry', disk: '/srv/images/odd\\nline\\u0000nul.img' });
console.log(JSON.stringify(log.gauges()));
`,
    );
    const ran = inside('systemd-run --quiet --wait --unit=big-entry -p StandardOutput=file:/run/big-entry.out -p StandardError=journal /usr/bin/node /debs/big-entry.mjs; rc=$?; cat /run/big-entry.out; exit $rc');
    assert.is(ran.code, 0, `${ran.out}${ran.err}${inside('journalctl --no-pager -u big-entry | tail -8 | cut -c1-300').out}`);
    const g = JSON.parse(ran.out.trim().split('\n').pop()!) as Record<string, { value: number }>;
    assert.is(g.log_journal_memfd_total!.value, 1, ran.out.slice(-2000));
    assert.is(g.log_journal_fallback_total!.value, 0, ran.out.slice(-2000));
    const bigOnes = await until('the big entry in the journal', () => {
      const got = ok('journalctl --no-pager --all -o json VMLOCKD_EVENT=CiBigEntry').split('\n').filter(Boolean);
      return got.length > 0 && got.map((l) => JSON.parse(l) as Record<string, string | number[]>);
    }, 60_000);
    assert.is(text(bigOnes[0]!.MESSAGE)!.length, 'big entry '.length + (1 << 20));
    assert.is(text(bigOnes[0]!.VMLOCKD_DISK), '/srv/images/odd\nline\u0000nul.img');
    assert.is(status()!.version, VERSION);
  });

  test('an upgrade to a higher version while a VM holds a disk and another host asks for it all along: systemd restarts the daemon, the lock never leaves', async () => {
    ok(`vmlockd acquire --vm ${UUID1} --name web1 ${DISK}`);
    await until('the lock in the descriptor store', () => status()?.started?.fdStore?.stored >= 1, 60_000);
    // Another host on the same lockspace, and a loop asking it for the disk (exit 3: refused, 0: granted).
    ok('systemd-run --unit=other-host /usr/bin/vmlockd serve --state-dir /var/lib/other-host --host-id ci-other --socket /run/other.sock --lockspace /var/lib/vmlockd/lockspace');
    await until('the other host to answer', () => status('/run/other.sock'), 60_000);
    ok(`systemd-run --unit=asker sh -c 'while :; do vmlockd acquire --socket /run/other.sock --vm ${UUID2} ${DISK} >/dev/null 2>&1; echo $? >> /run/asks; done'`);
    const asks = (): string[] => inside('cat /run/asks 2>/dev/null').out.split('\n').filter(Boolean);
    await until('the other host was refused once', () => asks().length > 0, 60_000);
    const pid = mainPid();
    const socketSince = ok('systemctl show -p ActiveEnterTimestampMonotonic vmlockd.socket');
    const r = inside(`${APT} /debs/${upDeb}`);
    assert.is(r.code, 0, r.out + r.err);
    const after = await until('the upgraded daemon', () => {
      const s = status();
      return s !== undefined && s.pid !== pid && s.version === UPGRADE ? s : undefined;
    }, 60_000);
    assert.is(after.pid, mainPid());
    assert.is(after.started?.how, 'store', `the restarted daemon adopted the lock from systemd's store: ${JSON.stringify(after.started)}`);
    assert.is(ok('systemctl show -p ActiveEnterTimestampMonotonic vmlockd.socket'), socketSince, 'the socket unit was never stopped');
    assert.is(ok('systemctl show -p NRestarts -p ActiveState vmlockd.service'), 'NRestarts=0\nActiveState=active\n');
    const during = asks().length;
    await until('the other host asked again after the restart', () => asks().length > during + 2, 60_000);
    ok('systemctl stop asker');
    const all = asks();
    assert.equal([...new Set(all)], ['3'], `every ask refused (${all.length} asks); a 0 is the disk granted to the other host`);
    const held = JSON.parse(ok('vmlockd locks --json')) as Array<{ path: string; vm: { uuid: string } }>;
    assert.equal(held.map((l) => [l.path, l.vm.uuid]), [[DISK, UUID1]]);
    // The journal shows one stop and start of the service (systemctl restart), after its one first start.
    const lines = ok('journalctl --no-pager -o cat _PID=1 UNIT=vmlockd.service');
    assert.is(lines.match(/^Stopping vmlockd\.service/gm)?.length, 1, lines);
    assert.is(lines.match(/^Started vmlockd\.service/gm)?.length, 2, lines);
    assert.is(ok('dpkg-query -W -f=\'${Version}\' vmlockd'), UPGRADE);
  });

  test('an upgrade (reinstall) while the operator has stopped the daemon leaves it stopped; started again, it re-takes the lock from its journal', async () => {
    ok('systemctl stop vmlockd.socket vmlockd.service');
    const r = inside(`${APT} --reinstall /debs/${upDeb}`);
    assert.is(r.code, 0, r.out + r.err);
    assert.is(ok('systemctl is-active vmlockd.socket vmlockd.service || true'), 'inactive\ninactive\n');
    assert.is(ok('systemctl is-enabled vmlockd.socket vmlockd.service || true'), 'enabled\nenabled\n');
    ok('systemctl start vmlockd.socket vmlockd.service');
    const st = await until('the daemon started again', () => status(), 60_000);
    assert.is(st.locks, 1, JSON.stringify(st));
  });

  test('apt-get remove under systemd while a lock is held: refused, nothing stopped (review14)', () => {
    const r = inside('apt-get remove -y -q -o DPkg::Lock::Timeout=300 vmlockd');
    assert.is.not(r.code, 0, r.out + r.err);
    assert.match(r.out + r.err, /REFUSING to remove the package: the running vmlockd holds 1 disk lock\(s\)/);
    assert.is(ok('systemctl is-active vmlockd.service || true'), 'active\n');
    assert.is(ok("dpkg-query -W -f='${db:Status-Status}' vmlockd"), 'installed');
  });

  test('apt-get remove under systemd with VMLOCKD_REMOVE_WITH_LOCKS=1: prerm says how many locks go and stops the units, postrm masks them; state and conffile stay', () => {
    const r = inside('VMLOCKD_REMOVE_WITH_LOCKS=1 apt-get remove -y -q -o DPkg::Lock::Timeout=300 vmlockd');
    assert.is(r.code, 0, r.out + r.err);
    assert.match(r.out + r.err, /removing the package stops the daemon: the running vmlockd holds 1 disk lock\(s\) of running VMs, and they are released/);
    assert.is(ok('systemctl is-active vmlockd.socket vmlockd.service || true'), 'inactive\ninactive\n');
    assert.is(ok('systemctl is-enabled vmlockd.socket vmlockd.service || true'), 'masked\nmasked\n');
    ok('test -f /var/lib/vmlockd/journal.db && test -f /etc/vmlockd/vmlockd.conf && ! test -e /usr/lib/vmlockd');
    assert.is(ok("dpkg-query -W -f='${db:Status-Status}' vmlockd"), 'config-files');
    // The stop released the disk: the other host (its process still runs) gets it now.
    assert.match(post('/run/other.sock', UUID2, 'web2', DISK), /^200 /);
  });

  test('apt-get purge under systemd: no unit state, no state directory, no conffile; then the container stops and every cgroup it had is gone', () => {
    const r = inside('apt-get purge -y -q -o DPkg::Lock::Timeout=300 vmlockd');
    assert.is(r.code, 0, r.out + r.err);
    ok('for p in /etc/vmlockd /var/lib/vmlockd /run/vmlockd /usr/lib/vmlockd; do ! test -e $p || { echo $p left; exit 1; }; done');
    assert.is(ok("find /etc/systemd /var/lib/systemd -name '*vmlockd*'"), '');
    assert.is(inside('dpkg-query -W vmlockd').code, 1);
    ok('systemctl stop other-host');
    const s = sh(HELPER, ['stop', box]);
    started = false;
    assert.is(s.code, 0, s.out + s.err);
    assert.is(cgroupOfPid1(), pid1Before);
    assert.equal(ourCgroups(), cgroupsBefore);
  });
}

test.run();
