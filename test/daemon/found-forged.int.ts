// The found scan (decisions/0002) and forged records: an LVM lock file is named by the LV's UUID, so
// a record naming this host whose disk lvs names otherwise was copied or forged into that file
// (anyone who can write the lockspace can write one) and is not taken (found by review 2); the
// record of the right file still is. A scripted lvs stands in for device-mapper, as in identity.int.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LEASE_SPAN, encodeExclusive } from '../../src/engine/holder-record.js';
import { TestDaemon, UUID1, tmpdir, until } from '../helpers/daemon.js';

const test = suite('found scan: forged records in an LVM lockspace');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

const UUID_LV = '06UgP5-2rhb-w3Bo-3mdR-WeoL-pytO-SAa2ky';
const OTHER_LV = 'Zz9Pq1-aaaa-bbbb-cccc-dddd-eeee-ffffff';

test('a record naming this host in an LVM lock file not named after its disk is logged, not taken; the right file is taken', async () => {
  const dev = ['/dev/loop5', '/dev/loop6', '/dev/loop7', '/dev/loop4'].find((p) => {
    try {
      return fs.statSync(p).isBlockDevice();
    } catch {
      return false;
    }
  });
  if (dev === undefined) {
    console.log('  skipped: needs a block device among /dev/loop4-7');
    return;
  }
  const root = tmpdir('vmlockd-found-forged-');
  const bin = path.join(root, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'lvs'), `#!/bin/sh\nfor last; do :; done\ncase "$last" in\n  ${dev}) printf '  ${UUID_LV}\\n' ;;\n  *) echo "  Volume group not found" >&2; exit 5 ;;\nesac\n`, { mode: 0o755 });
  const lvmDir = path.join(root, 'lvmvolumes');
  fs.mkdirSync(lvmDir);
  const conf = path.join(root, 'vmlockd.conf');
  fs.writeFileSync(conf, `lvm_lockspace_dir = "${lvmDir}"\n`);
  // Records naming this host, VM UUID1, the LV: one in a file named after another LV (forged), one
  // in the LV's own file; no journal knows either (a new state directory in this boot).
  const since = new Date().toISOString();
  const write = (name: string) => {
    const buf = Buffer.alloc(LEASE_SPAN, 0x20);
    encodeExclusive({ v: 1, mode: 'exclusive', gen: 7, host: 'hv-f', pid: 1, since, disk: dev, vm: { uuid: UUID1, name: 'vm1' } }).copy(buf, 0);
    fs.writeFileSync(path.join(lvmDir, name), buf);
  };
  write(OTHER_LV);
  const opts = { stateDir: path.join(root, 'state'), lockspace: path.join(root, 'lockspace'), hostId: 'hv-f', socket: path.join(root, 'f.sock'), extra: ['--config', conf], env: { PATH: `${bin}:${process.env.PATH}` } };
  let d = new TestDaemon(opts);
  running.push(await d.start());
  const held = () => (JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ resource: string }>).map((l) => l.resource);
  assert.equal(held(), [], `a forged record was taken: ${d.stderr}`);
  await until('the start log line', () => new RegExp(`${OTHER_LV}: its record names this host and disk ${dev}, but that disk is named ${UUID_LV} in ${lvmDir}, not ${OTHER_LV}: not taken`).test(d.stderr), 15_000);
  await d.kill('SIGKILL');
  // Control: the same record in the LV's own file is a grant the (new) journal forgot.
  fs.rmSync(path.join(lvmDir, OTHER_LV));
  write(UUID_LV);
  fs.rmSync(opts.stateDir, { recursive: true });
  d = new TestDaemon(opts);
  running.push(await d.start());
  assert.equal(held(), [path.join(lvmDir, UUID_LV)], d.stderr);
  await until('the start log line', () => /FOUND 1 lock/.test(d.stderr), 15_000);
});

test.run();
