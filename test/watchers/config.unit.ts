import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hostname } from 'node:os';
import {
  CONFIG_KEYS,
  ConfigError,
  LIVE_KEYS,
  LOCK_RELEVANT_KEYS,
  buildConfig,
  classifyChange,
  confName,
  diffConfig,
  fingerprint,
  formatConfig,
  nearestKey,
  type Config,
  type ConfigFlags,
  type ConfSource,
  type LoadedConfig,
} from '../../src/watchers/config.js';

const CWD = '/srv/vmlockd';
const QEMU = '/etc/libvirt/qemu-lockd.conf';
const VIRT = '/etc/libvirt/virtlockd.conf';
const OWN = '/etc/vmlockd/vmlockd.conf';

const load = (sources: ConfSource[], flags: ConfigFlags = {}): LoadedConfig => buildConfig(sources, flags, CWD);

/** The problems of a config that must not load, as operators read them. */
function problems(sources: ConfSource[], flags: ConfigFlags = {}): string[] {
  try {
    buildConfig(sources, flags, CWD);
  } catch (e) {
    assert.instance(e, ConfigError);
    const err = e as ConfigError;
    assert.is(err.code, 'VMLOCKD_ERR_CONFIG');
    assert.is(err.message, err.problems.map((p) => (p.line === undefined ? `${p.file}: ${p.message}` : `${p.file}:${p.line}: ${p.message}`)).join('\n'));
    return err.message.split('\n');
  }
  assert.unreachable('expected a ConfigError');
  return [];
}

test('given no files and no flags, then every key has its documented default', () => {
  const { config, sources, files, unused } = load([]);
  assert.equal(config, {
    hostId: hostname(),
    stateDir: '/srv/vmlockd/var',
    socket: '/srv/vmlockd/var/vmlockd.sock',
    journal: '/srv/vmlockd/var/journal.db',
    fileLockspaceDir: '/srv/vmlockd/var/lockspace',
    lvmLockspaceDir: null,
    scsiLockspaceDir: null,
    autoDiskLeases: true,
    requireLeaseForDisks: false,
    maxClients: 1024,
    logLevel: 'warning',
    logFormat: 'text',
    virtlockdSocket: null,
    libvirtUri: null,
    onConflict: 'report',
    afterReboot: 'release',
    lockspaceInit: 'auto',
    journalSync: 'fdatasync',
    verifyIntervalMs: 10_000,
    publish: true,
    publishSegmentBytes: 8 * 1024 * 1024,
    publishRetainDays: 90,
    metricsAddress: null,
  } satisfies Config);
  assert.ok(CONFIG_KEYS.every((k) => sources[k] === 'default'));
  assert.equal(files, []);
  assert.equal(unused, []);
});

test('given libvirt files, vmlockd file and flags, then later files override earlier and flags override files', () => {
  const { config, sources, files } = load(
    [
      { file: QEMU, text: '#auto_disk_leases = 0\nfile_lockspace_dir = "/var/lib/libvirt/lockd/files"\nlvm_lockspace_dir = "/var/lib/libvirt/lockd/lvmvolumes"\n' },
      { file: VIRT, text: 'log_level = 1\nmax_clients = 50\n' },
      { file: OWN, text: '# vmlockd\nfile_lockspace_dir = "/shared/lockd"\nmax_clients = 60\non_conflict = "suspend"\nverify_interval = 3\n' },
    ],
    { maxClients: 70, hostId: 'node-a' },
  );
  assert.is(config.fileLockspaceDir, '/shared/lockd');
  assert.is(sources.fileLockspaceDir, `${OWN}:2`);
  assert.is(config.lvmLockspaceDir, '/var/lib/libvirt/lockd/lvmvolumes');
  assert.is(sources.lvmLockspaceDir, `${QEMU}:3`);
  assert.is(config.logLevel, 'debug');
  assert.is(sources.logLevel, `${VIRT}:1`);
  assert.is(config.maxClients, 70);
  assert.is(sources.maxClients, '--max-clients');
  assert.is(config.hostId, 'node-a');
  assert.is(sources.hostId, '--host-id');
  assert.is(config.onConflict, 'suspend');
  assert.is(config.verifyIntervalMs, 3000);
  assert.is(sources.verifyIntervalMs, `${OWN}:5`);
  assert.is(sources.autoDiskLeases, 'default');
  assert.equal(files, [QEMU, VIRT, OWN]);
});

test('given file_lockspace_dir = "", then direct mode (null), also from a null or empty flag', () => {
  assert.is(load([{ file: QEMU, text: 'file_lockspace_dir = ""' }]).config.fileLockspaceDir, null);
  assert.is(load([], { fileLockspaceDir: null }).config.fileLockspaceDir, null);
  const viaFlag = load([{ file: QEMU, text: 'file_lockspace_dir = "/x"' }], { fileLockspaceDir: '' });
  assert.is(viaFlag.config.fileLockspaceDir, null);
  assert.is(viaFlag.sources.fileLockspaceDir, '--lockspace');
});

test('given auto_disk_leases = 0, then require_lease_for_disks defaults to 1 unless set', () => {
  const manual = load([{ file: QEMU, text: 'auto_disk_leases = 0' }]).config;
  assert.is(manual.autoDiskLeases, false);
  assert.is(manual.requireLeaseForDisks, true);
  const explicit = load([{ file: QEMU, text: 'auto_disk_leases = 0\nrequire_lease_for_disks = 0' }]).config;
  assert.is(explicit.requireLeaseForDisks, false);
  assert.is(load([], { autoDiskLeases: 'false' }).config.requireLeaseForDisks, true);
});

test('given relative paths, then they resolve against cwd, and socket and journal follow state_dir', () => {
  const { config } = load([{ file: OWN, text: 'state_dir = "run/state"\nfile_lockspace_dir = "../lockspace"\nvirtlockd_socket = "virtlockd-sock"' }]);
  assert.is(config.stateDir, '/srv/vmlockd/run/state');
  assert.is(config.socket, '/srv/vmlockd/run/state/vmlockd.sock');
  assert.is(config.journal, '/srv/vmlockd/run/state/journal.db');
  assert.is(config.fileLockspaceDir, '/srv/lockspace');
  assert.is(config.virtlockdSocket, '/srv/vmlockd/virtlockd-sock');
  assert.is(load([{ file: OWN, text: 'state_dir = "/var/lib/vmlockd"\nsocket = "/run/vmlockd.sock"' }]).config.socket, '/run/vmlockd.sock');
});

test('given an unknown key, then the error names it and the nearest known key', () => {
  assert.equal(problems([{ file: QEMU, text: '\nfile_lockspace_di = "/x"' }]), [
    `${QEMU}:2: unknown key "file_lockspace_di" (did you mean "file_lockspace_dir"?)`,
  ]);
  assert.equal(problems([{ file: OWN, text: 'fileLockspaceDir = "/x"' }]), [
    `${OWN}:1: unknown key "fileLockspaceDir" (did you mean "file_lockspace_dir"?)`,
  ]);
  assert.equal(problems([{ file: OWN, text: 'colour = "blue"' }]), [`${OWN}:1: unknown key "colour"`]);
  assert.is(nearestKey('verify_intervall'), 'verify_interval');
  assert.is(nearestKey('log_outputz'), 'log_outputs');
});

test('given values of the wrong type, then the error names the key, the expected type and what was received', () => {
  const text = [
    'auto_disk_leases = "yes"',
    'max_clients = "1024"',
    'verify_interval = 0',
    'log_level = 5',
    'on_conflict = "kill"',
    'file_lockspace_dir = [ "/a", "/b" ]',
    'metrics_address = "localhost"',
    'host_id = "node a"',
    'require_lease_for_disks = 2',
    'libvirt_uri = 7',
  ].join('\n');
  assert.equal(problems([{ file: OWN, text }]), [
    `${OWN}:1: auto_disk_leases must be 0 or 1, got string "yes"`,
    `${OWN}:2: max_clients must be an integer from 1 to 1000000, got string "1024"`,
    `${OWN}:3: verify_interval must be an integer from 1 to 86400 (seconds), got integer 0`,
    `${OWN}:4: log_level must be 1 (debug), 2 (info), 3 (warning) or 4 (error), got integer 5`,
    `${OWN}:5: on_conflict must be "report" or "suspend", got string "kill"`,
    `${OWN}:6: file_lockspace_dir must be a "string" holding a path, or "" for none, got list [ "/a", "/b" ]`,
    `${OWN}:7: metrics_address must be a "string" host:port such as "127.0.0.1:9477", or "" for none, got string "localhost"`,
    `${OWN}:8: host_id must be a "string" of 1 to 255 characters without blanks or "/", got string "node a"`,
    `${OWN}:9: require_lease_for_disks must be 0 or 1, got integer 2`,
    `${OWN}:10: libvirt_uri must be a "string" URI such as "qemu:///system", or "" for none, got integer 7`,
  ]);
});

test('given problems in several files and a syntax error, then all are listed in file order', () => {
  assert.equal(
    problems([
      { file: QEMU, text: 'auto_disk_leases = 3\nfile_lockspace_dir = "/a\n' },
      { file: VIRT, text: 'max_clients = 10\nmax_clients = 20\n' },
      { file: OWN, readError: 'ENOENT' },
    ]),
    [
      `${QEMU}:1: auto_disk_leases must be 0 or 1, got integer 3`,
      `${QEMU}:2: unterminated string: missing closing " before the end of the line`,
      `${VIRT}:2: duplicate key "max_clients" (already set at line 1); keep one`,
      `${OWN}: cannot read the file (ENOENT)`,
    ],
  );
});

test('given flags as command-line text, then each is read as its key needs, and bad ones name the flag', () => {
  const { config } = load([], { maxClients: '12', hostId: '42', autoDiskLeases: 'false', verifyIntervalMs: '5', logLevel: 'error' });
  assert.is(config.maxClients, 12);
  assert.is(config.hostId, '42');
  assert.is(config.autoDiskLeases, false);
  assert.is(config.verifyIntervalMs, 5000);
  assert.is(config.logLevel, 'error');
  assert.equal(problems([], { maxClients: 'many', onConflict: null }), [
    'command line: --max-clients must be an integer from 1 to 1000000, got string "many"',
    'command line: --on-conflict must be "report" or "suspend", got null',
  ]);
});

test('given virtlockd keys vmlockd does not use, then they are checked and listed, not rejected', () => {
  const loaded = load([{ file: VIRT, text: 'log_filters="3:remote 4:event"\nadmin_max_clients = 5000\n' }]);
  assert.equal(loaded.unused, [
    { key: 'log_filters', value: '"3:remote 4:event"', source: `${VIRT}:1` },
    { key: 'admin_max_clients', value: '5000', source: `${VIRT}:2` },
  ]);
  assert.equal(problems([{ file: VIRT, text: 'log_outputs = 3' }]), [`${VIRT}:1: log_outputs must be a "string", got integer 3`]);
});

test('fingerprint covers the naming rules and nothing host-specific', () => {
  const base = load([]).config;
  const fp = fingerprint(base);
  assert.match(fp, /^[0-9a-f]{64}$/);
  const hostSpecific: Partial<Config> = { hostId: 'other', socket: '/x.sock', logLevel: 'debug', journal: '/j.db', maxClients: 3 };
  assert.is(fingerprint({ ...base, ...hostSpecific }), fp);
  for (const change of [
    { fileLockspaceDir: '/other' },
    { fileLockspaceDir: null },
    { lvmLockspaceDir: '/lvm' },
    { scsiLockspaceDir: '/scsi' },
    { autoDiskLeases: false },
    { requireLeaseForDisks: true },
  ] satisfies Partial<Config>[]) {
    assert.is.not(fingerprint({ ...base, ...change }), fp, JSON.stringify(change));
  }
});

test('diffConfig lists exactly the keys that differ, in table order', () => {
  const a = load([]).config;
  assert.equal(diffConfig(a, { ...a }), []);
  assert.equal(diffConfig(a, { ...a, maxClients: 5, fileLockspaceDir: null }), [
    { key: 'fileLockspaceDir', from: '/srv/vmlockd/var/lockspace', to: null },
    { key: 'maxClients', from: 1024, to: 5 },
  ]);
});

test('formatConfig prints conf names with sources, and its output loads back to the same config', () => {
  const loaded = load(
    [{ file: QEMU, text: 'file_lockspace_dir = ""\nauto_disk_leases = 0' }, { file: VIRT, text: 'log_filters = "1:qemu"' }],
    { verifyIntervalMs: 7, metricsAddress: '127.0.0.1:9477' },
  );
  const shown = formatConfig(loaded);
  const lines = shown.trimEnd().split('\n');
  assert.is(lines.length, CONFIG_KEYS.length + 1);
  assert.ok(lines.includes(`file_lockspace_dir = ""  # ${QEMU}:1`));
  assert.ok(lines.includes('verify_interval = 7  # --verify-interval'));
  assert.ok(lines.includes('log_level = 3  # default'));
  assert.ok(lines.includes(`log_filters = "1:qemu"  # ${VIRT}:1 (accepted for virtlockd, no effect)`));
  assert.ok(CONFIG_KEYS.every((k) => lines.some((l) => l.startsWith(`${confName(k)} = `))));
  assert.equal(load([{ file: '/tmp/shown.conf', text: shown }]).config, loaded.config);
});

test('the key table maps every Config field to one distinct conf name', () => {
  const names = CONFIG_KEYS.map(confName);
  assert.is(new Set(names).size, CONFIG_KEYS.length);
  assert.equal([...CONFIG_KEYS].sort(), Object.keys(load([]).config).sort());
  assert.is(confName('verifyIntervalMs'), 'verify_interval');
  assert.is(confName('fileLockspaceDir'), 'file_lockspace_dir');
});

test('given locks are held, when naming keys change, then classifyChange refuses them with what to do', () => {
  const a = load([]).config;
  const diff = diffConfig(a, { ...a, logLevel: 'debug', fileLockspaceDir: '/new', hostId: 'renamed', socket: '/s.sock' });
  const held = classifyChange(diff, true);
  assert.equal(held.apply.map((d) => d.key), ['logLevel']);
  assert.equal(held.refuse.map((r) => r.key), ['hostId', 'socket', 'fileLockspaceDir']);
  const lockspace = held.refuse.find((r) => r.key === 'fileLockspaceDir')!.reason;
  assert.match(lockspace, /^file_lockspace_dir changed while locks are held: /);
  assert.match(lockspace, /takes effect at the next start when no locks are held; release all locks \(vmlockd locks\) and restart$/);
  assert.is(held.refuse.find((r) => r.key === 'socket')!.reason, 'socket changed: needs a restart to take effect');

  const free = classifyChange(diff, false);
  assert.equal(free.apply.map((d) => d.key), ['hostId', 'fileLockspaceDir', 'logLevel']);
  assert.equal(free.refuse.map((r) => r.key), ['socket']);
});

test('given a naming key that fell back to its default, then classifyChange refuses it, locks held or not (review25a F11)', () => {
  const explicit = load([]);
  const a = { ...explicit.config, fileLockspaceDir: '/shared/ls', lvmLockspaceDir: '/shared/lvm' };
  const b = explicit; // no file names either: both are defaults now
  const diff = diffConfig(a, { ...b.config, logLevel: 'debug' });
  for (const locksHeld of [false, true]) {
    const r = classifyChange(diff, locksHeld, b.sources);
    assert.equal(r.apply.map((d) => d.key), ['logLevel']);
    assert.equal(r.refuse.map((x) => x.key), ['fileLockspaceDir', 'lvmLockspaceDir']);
    assert.match(r.refuse[0]!.reason, /^file_lockspace_dir is no longer set in the config files .* never moves a lockspace or naming rule to a default/);
  }
  // The same move named explicitly (a file or a flag) applies when no lock is held.
  const named = { ...b.sources, fileLockspaceDir: '/etc/vmlockd.conf:3', lvmLockspaceDir: '/etc/vmlockd.conf:4' };
  assert.equal(classifyChange(diff, false, named).refuse, []);
});

test('given a naming key now set by an earlier file than before, then classifyChange refuses it, locks held or not (review25c F1)', () => {
  const files = ['/etc/base.conf', '/etc/site.conf'];
  const a = load([]).config;
  const diff = diffConfig({ ...a, fileLockspaceDir: '/shared/ls' }, { ...a, fileLockspaceDir: '/local/ls', logLevel: 'debug' });
  const was = { ...load([]).sources, fileLockspaceDir: '/etc/site.conf:3' };
  for (const locksHeld of [false, true]) {
    const r = classifyChange(diff, locksHeld, { ...was, fileLockspaceDir: '/etc/base.conf:1' }, { sources: was, files });
    assert.equal(r.apply.map((d) => d.key), ['logLevel']);
    assert.equal(r.refuse.map((x) => x.key), ['fileLockspaceDir']);
    assert.match(r.refuse[0]!.reason, /^file_lockspace_dir is no longer set by \/etc\/site\.conf .* from \/etc\/base\.conf:1/);
  }
  // Edited in the same file, or set by a later file or a flag: today's rules (applies with no lock held).
  for (const now of ['/etc/site.conf:7', '--lockspace']) {
    assert.equal(classifyChange(diff, false, { ...was, fileLockspaceDir: now }, { sources: was, files }).refuse, []);
  }
  assert.equal(classifyChange(diff, true, { ...was, fileLockspaceDir: '/etc/site.conf:7' }, { sources: was, files }).refuse.map((x) => x.key), ['fileLockspaceDir']);
  // A flag's value never falls back to a file's live.
  const flagged = { ...was, fileLockspaceDir: '--lockspace' };
  assert.equal(classifyChange(diff, false, { ...was, fileLockspaceDir: '/etc/site.conf:3' }, { sources: flagged, files }).refuse.map((x) => x.key), ['fileLockspaceDir']);
});

test('every key is live, lock-relevant or restart-only, and LIVE_KEYS applies even with locks held', () => {
  const a = load([]).config;
  for (const key of LIVE_KEYS) assert.not.ok(LOCK_RELEVANT_KEYS.has(key), key);
  const everything = CONFIG_KEYS.map((key) => ({ key, from: a[key], to: 'x' }));
  const held = classifyChange(everything, true);
  assert.equal(new Set(held.apply.map((d) => d.key)), new Set(LIVE_KEYS));
  assert.is(held.apply.length + held.refuse.length, CONFIG_KEYS.length);
});

test.run();
