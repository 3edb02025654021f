// Regression (review26d F3, wait27): the facts waiting for room on a full state directory were retried
// all or nothing, so a disk with room for some but not all of them journaled none until it had room
// for every one. Now a retry writes them in chunks, oldest first, each durable before the next, and
// the hash chain stays whole (journal verify). Real daemon, real 8 MiB tmpfs filled to ENOSPC, a few
// hundred real lock files replaced under the daemon (the verifier's LeaseLost and Reacquired wait),
// then a little room given back. The move into SQLite is held off (VMLOCKD_JOURNAL_FLUSH_MS) so that
// SQLite does not take that room first.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { call } from '../../src/cli/client.js';
import { sha256Hex } from '../../src/engine/resolve.js';
import { TestDaemon, cli, until } from '../helpers/daemon.js';
import { fill, smallStateDir, unmountAll } from '../helpers/state-dir.js';

const mounts: string[] = [];
const daemons: TestDaemon[] = [];
test.after(async () => {
  for (const d of daemons) await d.kill('SIGKILL');
  unmountAll(mounts);
});

const uuid = (i: number) => `cccccccc-0000-4000-8000-${String(i).padStart(12, '0')}`;

test('a disk with room for part of the waiting facts journals that part, in order', async () => {
  const { dir, state, lockspace, disk } = smallStateDir(mounts, '8m');
  const d = new TestDaemon({ stateDir: state, lockspace, socket: path.join(dir, 'vmlockd.sock'), extra: ['--verify-interval', '1'], env: { VMLOCKD_JOURNAL_FLUSH_MS: '600000' } });
  daemons.push(d);
  await d.start();
  const filler = fill(state);
  const held: number[] = [];
  let refused = false;
  for (let i = 1; i < 20_000 && !refused; i++) {
    const r = await call(d.socket, 'POST', '/v1/acquire', { vm: { uuid: uuid(i) }, disks: [{ path: disk(i) }] });
    if (r.status === 200) held.push(i);
    else refused = true;
  }
  assert.ok(refused, 'the journal never refused a write on the full disk');
  assert.ok(held.length >= 400, `only ${held.length} locks taken before the disk was full`);

  // 400 held lock files replaced: the verifier's next round records 400 LeaseLost and 400 Reacquired.
  for (const i of held.slice(0, 400)) {
    const file = path.join(lockspace, sha256Hex(disk(i)));
    fs.writeFileSync(`${file}.new`, '');
    fs.renameSync(`${file}.new`, file);
  }
  let st: any;
  await until('the verifier\'s facts wait for room', () => {
    st = JSON.parse(d.cli(['status', '--json']).stdout);
    return (st.factsWaiting?.kinds?.Reacquired ?? 0) >= 400;
  }, 60_000);
  const before = st.lastSeq as number;
  const waiting = st.factsWaiting.facts as number;

  // Room for a part of them (each a few hundred bytes in the staging file).
  fs.truncateSync(filler, Math.max(0, fs.statSync(filler).size - 128 * 1024));
  await until('a part of the waiting facts is journaled', () => {
    st = JSON.parse(d.cli(['status', '--json']).stdout);
    return st.lastSeq > before;
  }, 60_000);
  assert.ok(st.factsWaiting !== null && st.factsWaiting.facts < waiting, `expected some still waiting: ${JSON.stringify(st.factsWaiting)}`);

  // Room for all: the rest follows, in order behind them; the stop moves them all into SQLite.
  fs.unlinkSync(filler);
  await until('every waiting fact is journaled', () => JSON.parse(d.cli(['status', '--json']).stdout).factsWaiting === null, 60_000);
  assert.is((await d.kill('SIGTERM')).code, 0);
  const audit = (kind: string) => {
    const r = cli(['audit', '--state-dir', state, '--kind', kind, '--json', '--limit', '0']);
    assert.is(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Array<{ seq: number; kind: string; disk: string }>).filter((f) => f.seq > before);
  };
  const lost = audit('LeaseLost');
  const retaken = audit('Reacquired');
  assert.is(lost.length, 400);
  assert.is(retaken.length, 400);
  for (const r of retaken) {
    const l = lost.find((f) => f.disk === r.disk);
    assert.ok(l && l.seq < r.seq, `a Reacquired of ${r.disk} before its LeaseLost`);
  }
  const v = cli(['journal', 'verify', '--state-dir', state]);
  assert.is(v.code, 0, v.stdout + v.stderr);
});

test.run();
