// review27 F6 (MEDIUM, wedge): a FIFO named like a segment that does not start at seq 1 (or a
// regular chain followed by one whose first seq jumps) hangs `audit --cluster` forever. The
// first-seq-1 FIFO is handled (test/cli/cluster-odd-entries.int.ts), but missingHead() and the
// chain walk call compactedStart() (src/cli/cluster-cache.ts), which opens the segment with
// fs.openSync(file, 'r'): no O_NONBLOCK, no O_NOFOLLOW, so open(2) on a FIFO blocks until a writer
// comes. One odd entry in any host's directory of the shared lockspace stops every cluster question.
import { spawnSync, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, tmpdir } from '../helpers/daemon.js';

function ask(ls: string, home: string, args: string[]) {
  fs.mkdirSync(home, { recursive: true });
  return spawnSync(process.execPath, [MAIN, ...args, '--lockspace', ls], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, HOME: home, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') } });
}

test('a FIFO named like a segment starting at seq 5: audit --cluster returns', () => {
  const root = tmpdir('vmlockd-r27-fifo-');
  const ls = path.join(root, 'ls');
  fs.mkdirSync(path.join(ls, '.journal', 'hx'), { recursive: true });
  execFileSync('mkfifo', [path.join(ls, '.journal', 'hx', '0123456789abcdef-0000000000000005.seg')]);
  const a = ask(ls, path.join(root, 'home'), ['audit', '--cluster', '--overlaps']);
  assert.is(a.signal, null, `audit --cluster --overlaps was still blocked after 20 s (${a.stdout}${a.stderr})`);
});

test.run();
