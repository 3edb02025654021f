// (found by review 15b) journal verify --cluster when the newest segment was removed after a sealed one:
// the seal with no successor is named (a note: the lockspace alone cannot tell it from a rotation
// whose next segment the host's next fact opens), never silently passed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, cli, startDaemon, tmpdir, until } from '../helpers/daemon.js';
import { journalHashes, readPublished } from '../helpers/published.js';

async function published(): Promise<{ lockspace: string; dir: string; segs: () => string[] }> {
  const root = tmpdir('vmlockd-verify-sealed-verify-');
  const lockspace = path.join(root, 'lockspace');
  fs.mkdirSync(path.join(root, 'images'));
  const a = await startDaemon({ stateDir: path.join(root, 'state-a'), lockspace, hostId: 'hv-a', extra: ['--publish-segment-bytes', '4096'] });
  try {
    for (let i = 0; i < 12; i++) {
      const disk = path.join(root, 'images', `d${i}.img`);
      fs.writeFileSync(disk, 'x');
      assert.is(a.cli(['acquire', '--vm', UUID1, disk]).code, 0);
    }
    const journal = path.join(a.opts.stateDir, 'journal.db');
    await until('published', () => {
      const want = [...journalHashes(journal).keys()].pop();
      const facts = readPublished(path.join(lockspace, '.journal', 'hv-a'), 'hv-a').facts;
      return want !== undefined && facts.length >= 12 && facts[facts.length - 1]!.seq === want;
    }, 30_000);
  } finally {
    await a.kill('SIGKILL');
  }
  const dir = path.join(lockspace, '.journal', 'hv-a');
  return { lockspace, dir, segs: () => fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort() };
}
const verify = (ls: string) => cli(['journal', 'verify', '--cluster', '--lockspace', ls, '--journal', '/nonexistent/journal.db']);

test('the newest segment removed after a sealed one: verify --cluster fails (or at least notes it)', async () => {
  const s = await published();
  const segs = s.segs();
  const last = path.join(s.dir, segs[segs.length - 1]!);
  // Make sure the one before is sealed (it is: the writer rotated away from it), then drop the newest.
  assert.match(fs.readFileSync(path.join(s.dir, segs[segs.length - 2]!), 'utf8'), /"t":"seal"/);
  fs.rmSync(last);
  const r = verify(s.lockspace);
  assert.ok(r.code !== 0 || /note|missing|successor|no segment/i.test(r.stdout), `verify says nothing about facts after the seal being in no segment:\n${r.stdout}`);
});

test.run();
