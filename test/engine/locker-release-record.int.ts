// A release's free record, byte for byte, through the locker on real lock files (proto28: the release
// builds its record with plain stores into the locker's reused buffer, no spreads): the same bytes
// as encodeExclusive of the record the release wrote before, for a VM with a name, without one, and
// with an empty name (recorded by its uuid alone, as before); a take after a release of another disk
// is not disturbed by the shared buffer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RECORD_SIZE, decodeExclusive, encodeExclusive } from '../../src/engine/holder-record.js';
import { Locker } from '../../src/engine/locker.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { initialState } from '../../src/engine/state.js';
import type { Intent, Owner } from '../../src/engine/types.js';
import { tmpdir } from '../helpers/daemon.js';

const U = 'c1111111-1111-4111-8111-111111111111';
const AT = '2026-12-01T08:00:00.000Z';

for (const [what, owner] of [
  ['a VM with a name', { uuid: U, name: 'web1' }],
  ['a VM without a name', { uuid: U }],
  ['a VM with an empty name', { uuid: U, name: '' }],
] as Array<[string, Owner]>) {
  test(`the release of ${what} writes the free record it wrote before, byte for byte`, () => {
    const dir = tmpdir('vmlockd-release-record-');
    const lockspace = path.join(dir, 'lockspace');
    fs.mkdirSync(path.join(dir, 'img'));
    const locker = new Locker('host-a', { fileLockspaceDir: lockspace });
    try {
      const disk = (name: string) => {
        const p = path.join(dir, 'img', name);
        fs.writeFileSync(p, 'x');
        return resolveDisk({ path: p, mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
      };
      const a = disk('a.img');
      const b = disk('b.img');
      const take = (d: typeof a) => locker.prepare([{ kind: 'lock', how: 'take', disk: d, owner } satisfies Intent], { at: AT, source: 'test' }).commit();
      take(a);
      take(b);
      const head = (d: typeof a) => fs.readFileSync(d.resource.id).subarray(0, RECORD_SIZE);
      const takenB = Buffer.from(head(b));
      locker.prepare([{ kind: 'unlock', resource: a.resource, path: a.path, owner, how: 'drop' }], { at: AT, source: 'test' }).commit();
      const gen = decodeExclusive(head(a))!.gen;
      const vm = owner.name ? { uuid: owner.uuid, name: owner.name } : { uuid: owner.uuid };
      const expected = encodeExclusive({ v: 1, mode: 'free', gen, host: 'host-a', pid: process.pid, since: AT, disk: a.resource.canonical, vm });
      assert.ok(head(a).equals(expected), `${head(a).toString().trimEnd()} != ${expected.toString().trimEnd()}`);
      assert.ok(head(b).equals(takenB), 'the other disk\'s record is untouched');
      assert.is(decodeExclusive(head(b))?.mode, 'exclusive');
    } finally {
      locker.closeAll();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
