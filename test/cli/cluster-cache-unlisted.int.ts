// A host's published directory renamed (or moved aside, or removed) after the read cache read it
// (issue 15, audit truth): a reader without the cache finds no history for that host (a renamed
// directory's segments name their own host, so they are that directory's problem), but the warm
// cache answered the host's facts from its chain file as if still published. The warm and a fresh
// cache must answer the same, the warm one naming the facts it read and no longer finds; put back,
// they are answered again and the warning ends.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli } from '../helpers/daemon.js';
import { publishedRotating } from '../helpers/published.js';

async function setup(prefix: string) {
  const s = await publishedRotating(prefix);
  const e = { VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(s.root, 'none.sock') };
  const warm = path.join(s.root, 'cache');
  let n = 0;
  const audit = (cache: string) => {
    const r = cli(['audit', '--cluster', '--lockspace', s.lockspace, '--cache', cache, '--json', '--limit', '0'], { env: e });
    assert.is(r.code, 0, r.stderr);
    return { seqs: (JSON.parse(r.stdout) as Array<{ seq: number }>).map((f) => f.seq), stderr: r.stderr };
  };
  const all = audit(warm).seqs;
  assert.ok(all.length >= 13, `${all}`);
  return { ...s, all, warm: () => audit(warm), fresh: () => audit(path.join(s.root, `fresh-${n++}`)) };
}

for (const how of ['renamed', 'moved aside (a dot name)', 'removed'] as const) {
  test(`a host directory ${how} after the cache read it: the warm and a fresh cache agree, the warm one names what it read`, async () => {
    const s = await setup('vmlockd-c24-hostdir-');
    const aside = path.join(s.lockspace, '.journal', how === 'renamed' ? 'hv-z' : '.hv-a.old');
    fs.renameSync(s.dir, aside);
    if (how === 'removed') fs.rmSync(aside, { recursive: true });
    const warm = s.warm();
    const fresh = s.fresh();
    assert.equal(fresh.seqs, []);
    assert.equal(warm.seqs, fresh.seqs, `warm: ${warm.stderr}`);
    // Named per segment each was read from: from seq 1 to the last.
    assert.match(warm.stderr, /host hv-a: journal [0-9a-f]{16}: segment [0-9a-f]{16}-0+1\.seg: seq 1 to \d+ .*no longer published/, warm.stderr);
    assert.match(warm.stderr, new RegExp(`host hv-a: journal [0-9a-f]{16}: segment \\S+: seq (\\d+ to )?${s.all[s.all.length - 1]} .*no longer published`), warm.stderr);
    if (how === 'renamed') assert.match(warm.stderr, /hv-z.*header host "hv-a" in the directory of host "hv-z"/, warm.stderr);
    // Said again on the next question.
    assert.match(s.warm().stderr, /host hv-a: .*no longer published/);
    if (how === 'removed') return;
    fs.renameSync(aside, s.dir);
    const back = s.warm();
    assert.equal(back.seqs, s.all, back.stderr);
    assert.is(back.stderr, '');
  });
}

test.run();
