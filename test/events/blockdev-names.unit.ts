// LVM / SCSI naming of /dev disks, virtlockd-compatible.
// This machine's kernel has no device-mapper and no SCSI disks, so `lvs` and `scsi_id` cannot be
// run here: the outputs below are recorded shapes (the lvs one is the example in libvirt's
// lock_driver_lockd.c; lvs pads its column with two leading spaces and ends with a newline),
// fed through an injected command runner.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BadInputError, VmlockdError } from '../../src/engine/errors.js';
import { canonicalPath, resolveCommand } from '../../src/engine/resolve.js';
import { initialState } from '../../src/engine/state.js';
import {
  blockdevResourceName,
  lookupBlockdevNames,
  LVS_COMMAND,
  lvsArgs,
  parseLvsUuid,
  parseScsiId,
  SCSI_ID_COMMAND,
  scsiIdArgs,
  type RunCommand,
} from '../../src/events/blockdev-names.js';

const LVS_OUT = '  06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky\n';
const SCSI_OUT = '36001405a1b2c3d4e5f60718293a4b5c6\n';
const DIRS = { lvmDir: '/var/lib/libvirt/lockd/lvmvolumes', scsiDir: '/var/lib/libvirt/lockd/scsivolumes' };

function runner(table: Record<string, { stdout: string; code: number } | Error>): { run: RunCommand; calls: string[] } {
  const calls: string[] = [];
  const run: RunCommand = async (cmd, args) => {
    const line = [cmd, ...args].join(' ');
    calls.push(line);
    const r = table[cmd];
    if (r === undefined) throw new Error(`unexpected command ${line}`);
    if (r instanceof Error) throw r;
    return r;
  };
  return { run, calls };
}

test('parseLvsUuid strips leading whitespace, cuts at the newline and keeps the dashes', () => {
  assert.is(parseLvsUuid(LVS_OUT), '06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky');
  assert.is(parseLvsUuid('\t 06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky'), '06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky');
  assert.is(parseLvsUuid('  first\n  second\n'), 'first');
});

test('parseScsiId cuts at the newline only', () => {
  assert.is(parseScsiId(SCSI_OUT), '36001405a1b2c3d4e5f60718293a4b5c6');
  assert.is(parseScsiId('SATA_QEMU_HARDDISK_QM00001'), 'SATA_QEMU_HARDDISK_QM00001');
});

test('given empty output or a name that is not a file name, then the parsers throw BadInputError', () => {
  for (const [fn, out, re] of [
    [parseLvsUuid, '', /lvs printed no LV UUID/],
    [parseLvsUuid, '   \n', /lvs printed no LV UUID/],
    [parseScsiId, '', /scsi_id printed no SCSI id/],
    [parseScsiId, '\n', /scsi_id printed no SCSI id/],
    [parseLvsUuid, '  ../../etc\n', /cannot name a lock file/],
    [parseScsiId, 'a/b\n', /cannot name a lock file/],
  ] as const) {
    try {
      fn(out);
      assert.unreachable(`no throw for ${JSON.stringify(out)}`);
    } catch (e) {
      assert.instance(e, VmlockdError);
      assert.is((e as VmlockdError).code, 'VMLOCKD_ERR_BAD_INPUT');
      assert.match((e as Error).message, re);
    }
  }
});

test('the commands are the ones virtlockd runs', () => {
  assert.is(LVS_COMMAND, 'lvs');
  assert.equal(lvsArgs('/dev/vg0/lv'), ['--noheadings', '--unbuffered', '--nosuffix', '--options', 'uuid', '/dev/vg0/lv']);
  assert.is(SCSI_ID_COMMAND, '/lib/udev/scsi_id');
  assert.equal(scsiIdArgs('/dev/sdb'), ['--replace-whitespace', '--whitelisted', '--device', '/dev/sdb']);
});

test('given an LV and an lvm dir, then the LV UUID names it in the lvm lockspace', async () => {
  const { run, calls } = runner({ lvs: { stdout: LVS_OUT, code: 0 } });
  assert.equal(await blockdevResourceName('/dev/vg0/data', DIRS, run), {
    kind: 'lvm', lockspace: DIRS.lvmDir, name: '06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky',
  });
  assert.equal(calls, ['lvs --noheadings --unbuffered --nosuffix --options uuid /dev/vg0/data']);
});

test('given lvs fails (not an LV), then the SCSI id is tried next', async () => {
  const { run, calls } = runner({ lvs: { stdout: '', code: 5 }, [SCSI_ID_COMMAND]: { stdout: SCSI_OUT, code: 0 } });
  assert.equal(await blockdevResourceName('/dev/sdb', DIRS, run), {
    kind: 'scsi', lockspace: DIRS.scsiDir, name: '36001405a1b2c3d4e5f60718293a4b5c6',
  });
  assert.equal(calls, [
    'lvs --noheadings --unbuffered --nosuffix --options uuid /dev/sdb',
    '/lib/udev/scsi_id --replace-whitespace --whitelisted --device /dev/sdb',
  ]);
});

test('given lvs succeeds with empty output, then it falls through as libvirt does', async () => {
  const { run } = runner({ lvs: { stdout: '  \n', code: 0 }, [SCSI_ID_COMMAND]: { stdout: SCSI_OUT, code: 0 } });
  assert.is((await blockdevResourceName('/dev/sdb', DIRS, run))?.kind, 'scsi');
});

test('given both fail, then null (the caller uses file or direct naming)', async () => {
  const { run } = runner({ lvs: { stdout: '', code: 5 }, [SCSI_ID_COMMAND]: { stdout: '', code: 1 } });
  assert.is(await blockdevResourceName('/dev/loop0', DIRS, run), null);
  const empty = runner({ lvs: { stdout: '', code: 5 }, [SCSI_ID_COMMAND]: { stdout: '\n', code: 0 } });
  assert.is(await blockdevResourceName('/dev/loop0', DIRS, empty.run), null);
});

test('given a path outside /dev or no dirs, then no command runs and the answer is null', async () => {
  const { run, calls } = runner({});
  assert.is(await blockdevResourceName('/var/lib/libvirt/images/a.qcow2', DIRS, run), null);
  assert.is(await blockdevResourceName('/dev/vg0/data', {}, run), null);
  assert.is(await blockdevResourceName('/dev/vg0/data', { lvmDir: null, scsiDir: null }, run), null);
  assert.equal(calls, []);
});

test('given only a scsi dir, then lvs is not run', async () => {
  const { run, calls } = runner({ [SCSI_ID_COMMAND]: { stdout: SCSI_OUT, code: 0 } });
  assert.is((await blockdevResourceName('/dev/sdc', { scsiDir: DIRS.scsiDir }, run))?.kind, 'scsi');
  assert.equal(calls.length, 1);
});

test('libvirt matches the prefix "/dev", not "/dev/": "/devices/x" is tried too, and falls through', async () => {
  const { run, calls } = runner({ lvs: { stdout: '', code: 5 } });
  assert.is(await blockdevResourceName('/devices/x.img', { lvmDir: DIRS.lvmDir }, run), null);
  assert.is(calls.length, 1);
});

test('given the runner itself fails (lvs missing), then the error propagates instead of a silent rename', async () => {
  const { run } = runner({ lvs: new Error('spawn lvs ENOENT') });
  try {
    await blockdevResourceName('/dev/vg0/data', DIRS, run);
    assert.unreachable('expected a rejection');
  } catch (e) {
    assert.match((e as Error).message, /ENOENT/);
  }
});

test('lookupBlockdevNames fails closed: no identity is bad input, a command that cannot run is an I/O error', async () => {
  const table: Record<string, { stdout: string; code: number }> = { '/dev/vg/lv': { stdout: LVS_OUT, code: 0 }, '/dev/vdb': { stdout: '', code: 5 } };
  const run: RunCommand = async (cmd, args) => {
    if (cmd === SCSI_ID_COMMAND) throw new Error('spawn /lib/udev/scsi_id ENOENT');
    return table[args[args.length - 1]!]!;
  };
  const lvmOnly = await lookupBlockdevNames(['/dev/vg/lv', '/dev/vdb', '/img/a.qcow2'], { lvmDir: DIRS.lvmDir }, run);
  assert.equal(lvmOnly.get('/dev/vg/lv'), { kind: 'lvm', lockspace: DIRS.lvmDir, name: '06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky' });
  assert.instance(lvmOnly.get('/dev/vdb'), BadInputError);
  assert.match((lvmOnly.get('/dev/vdb') as Error).message, 'block device /dev/vdb has no identity vmlockd can read (no LV UUID from lvs); with lvm_lockspace_dir set');
  assert.not.ok(lvmOnly.has('/img/a.qcow2'));
  const both = await lookupBlockdevNames(['/dev/vdb'], DIRS, run);
  assert.is((both.get('/dev/vdb') as VmlockdError).code, 'VMLOCKD_ERR_IO');
});

test('resolution names a /dev disk by the looked-up identity, refuses it without one, and never by realpath (/dev/dm-N)', () => {
  const rules = { fileLockspaceDir: '/ls', lvmLockspaceDir: DIRS.lvmDir };
  const names = new Map<string, { kind: 'lvm'; lockspace: string; name: string } | Error>([
    ['/dev/vg/lv', { kind: 'lvm', lockspace: DIRS.lvmDir, name: 'UUID-1' }],
    ['/dev/vdb', new BadInputError('no identity')],
  ]);
  const cmd = (path: string) => ({ kind: 'acquire' as const, owner: { uuid: 'u' }, disks: [{ path, mode: 'exclusive' as const }], at: 'now', source: 'test' });
  const r = resolveCommand(cmd('/dev/vg/lv'), rules, initialState(), names);
  assert.equal(r.kind === 'acquire' && r.resolved[0]!.resource.id, `${DIRS.lvmDir}/UUID-1`);
  assert.throws(() => resolveCommand(cmd('/dev/vdb'), rules, initialState(), names), /no identity/);
  // /dev/fd is a symlink to /proc/self/fd: a device path keeps its own name.
  assert.is(canonicalPath('/dev/fd'), '/dev/fd');
  assert.is(canonicalPath('/dev//disk/../fd'), '/dev/fd');
});

test.run();
