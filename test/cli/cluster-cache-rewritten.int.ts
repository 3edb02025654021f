// A fact rewritten in place in a published segment after the read cache read it (issue 15, audit
// truth): same length, and (in place) the same inode, so a check of size and inode and of the last
// 512 bytes saw nothing, and a warm cache answered the altered history's old facts where a fresh
// cache (which checks every line's hash) stops at the altered fact. The warm and a fresh cache must
// agree, the warm one must name host, segment and seq on every question, and `journal verify
// --cluster` with the cache must fail naming them. Also: the same bytes under another inode (same
// size), a segment truncated and regrown to its size, a complete line appended after a seal, a cache
// written before the whole-segment hashes were kept (upgraded: checked once, never misread), and the
// controls (a touch, identical bytes written again: nothing vanishes).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import Database from 'better-sqlite3';
import { cli } from '../helpers/daemon.js';
import { publishedRotating } from '../helpers/published.js';

const env = { VMLOCKD_CONFIG: '/nonexistent' };

async function setup(prefix: string, oneSegment = false) {
  const s = await publishedRotating(prefix, oneSegment ? 1024 * 1024 : 4096);
  const segs = s.segs();
  assert.ok(oneSegment ? segs.length === 1 : segs.length >= 3, `${oneSegment ? 'one segment' : 'rotated twice'}: ${segs}`);
  const e = { ...env, VMLOCKD_SOCKET: path.join(s.root, 'none.sock') };
  const warm = path.join(s.root, 'cache');
  let fresh = 0;
  const audit = (cache: string) => {
    const r = cli(['audit', '--cluster', '--lockspace', s.lockspace, '--cache', cache, '--json', '--limit', '0'], { env: e });
    assert.is(r.code, 0, r.stderr);
    return { seqs: (JSON.parse(r.stdout) as Array<{ seq: number }>).map((f) => f.seq), stderr: r.stderr };
  };
  const verify = () => cli(['journal', 'verify', '--cluster', '--lockspace', s.lockspace, '--cache', warm, '--journal', '/nonexistent/journal.db'], { env: e });
  const all = audit(warm).seqs;
  assert.ok(all.length >= 13, `${all}`);
  /** The byte range of fact `seq`'s line in segment `name`. */
  const lineOf = (name: string, seq: number): { start: number; end: number } => {
    const text = fs.readFileSync(path.join(s.dir, name), 'utf8');
    const start = text.indexOf(`{"t":"fact","seq":${seq},`);
    assert.ok(start > 0, `seq ${seq} in ${name}`);
    return { start, end: text.indexOf('\n', start) + 1 };
  };
  /** The bytes of `name` with fact `seq`'s time moved by one millisecond: same length, another hash. */
  const altered = (name: string, seq: number): Buffer => {
    const b = fs.readFileSync(path.join(s.dir, name));
    const { start } = lineOf(name, seq);
    const at = b.indexOf('Z"', b.indexOf('"at":"', start)) - 1; // the last digit of the milliseconds
    b[at] = b[at] === 0x39 ? 0x38 : b[at]! + 1;
    return b;
  };
  return { ...s, segs, all, warm, audit, fresh: () => audit(path.join(s.root, `fresh-${fresh++}`)), verify, lineOf, altered };
}

/** Writes `bytes` over the file in place: same inode, same size. */
function overwrite(file: string, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, 0);
  } finally {
    fs.closeSync(fd);
  }
}

const cases: Array<{ name: string; where: 'middle' | 'newest'; how: (file: string, bytes: Buffer) => void }> = [
  { name: 'rewritten in place (same size, same inode)', where: 'middle', how: overwrite },
  { name: 'rewritten in place (same size, same inode)', where: 'newest', how: overwrite },
  {
    name: 'replaced by a same-size file with another inode',
    where: 'middle',
    how: (file, bytes) => {
      fs.writeFileSync(`${file}.tmp`, bytes);
      fs.renameSync(`${file}.tmp`, file);
    },
  },
  { name: 'truncated and regrown to its size', where: 'middle', how: (file, bytes) => fs.writeFileSync(file, bytes) },
];

for (const c of cases) {
  test(`a fact of the ${c.where} segment ${c.name} after a warm cache read it: the warm and a fresh cache agree, and it is named`, async () => {
    // The newest: one unsealed segment holding every fact, the one the cache stands in.
    const s = await setup('vmlockd-c24-rewrite-', c.where === 'newest');
    const name = c.where === 'middle' ? s.segs[1]! : s.segs[s.segs.length - 1]!;
    const file = path.join(s.dir, name);
    const first = Number(name.slice(17, 33));
    const seq = first + 1;
    assert.ok(s.lineOf(name, seq).end + 512 <= fs.statSync(file).size, 'the altered line lies before the last 512 bytes');
    const ino = fs.statSync(file).ino;
    c.how(file, s.altered(name, seq));
    if (c.how === overwrite) assert.is(fs.statSync(file).ino, ino);
    const warm = s.audit(s.warm);
    const fresh = s.fresh();
    assert.equal(fresh.seqs, s.all.filter((q) => q < seq), `a fresh cache stops at the altered seq ${seq}: ${fresh.stderr}`);
    assert.equal(warm.seqs, fresh.seqs, `the warm cache answers what a fresh one does: ${warm.stderr}`);
    assert.match(warm.stderr, new RegExp(`host hv-a: .*segment ${name.replace('.', '\\.')}.*seq ${seq}`), warm.stderr);
    // The next question (the hint's fast path) still leaves them out and says so.
    const again = s.audit(s.warm);
    assert.equal(again.seqs, fresh.seqs);
    assert.match(again.stderr, new RegExp(`seq ${seq} to \\d+ .*no longer published`), again.stderr);
    const v = s.verify();
    assert.is(v.code, 1, v.stdout);
    assert.match(v.stdout, new RegExp(`hv-a.*${name.replace('.', '\\.')}.*seq ${seq}`), v.stdout);
  });
}

test('a complete line appended after a sealed segment\'s seal: the warm and a fresh cache agree', async () => {
  const s = await setup('vmlockd-c24-afterseal-');
  const name = s.segs[1]!;
  const file = path.join(s.dir, name);
  const text = fs.readFileSync(file, 'utf8');
  fs.appendFileSync(file, text.split('\n')[1] + '\n');
  const warm = s.audit(s.warm);
  const fresh = s.fresh();
  assert.ok(fresh.seqs.length < s.all.length, `a fresh cache stops there: ${fresh.stderr}`);
  assert.equal(warm.seqs, fresh.seqs, `warm: ${warm.stderr}\nfresh: ${fresh.stderr}`);
});

test('a segment put in between the segments read (a copy under another first seq): the warm and a fresh cache agree', async () => {
  const s = await setup('vmlockd-c24-planted-');
  const name = s.segs[1]!;
  const first = Number(name.slice(17, 33));
  const planted = `${name.slice(0, 17)}${String(first + 1).padStart(16, '0')}.seg`;
  assert.not.ok(s.segs.includes(planted));
  fs.copyFileSync(path.join(s.dir, name), path.join(s.dir, planted));
  const warm = s.audit(s.warm);
  const fresh = s.fresh();
  assert.ok(fresh.seqs.length < s.all.length, `a fresh cache stops there: ${fresh.stderr}`);
  assert.equal(warm.seqs, fresh.seqs, `warm: ${warm.stderr}\nfresh: ${fresh.stderr}`);
  assert.match(warm.stderr, /no longer published/);
});

for (const how of ['touched', 'written again with the same bytes'] as const) {
  test(`a read segment ${how}: the same history, nothing vanishes and nothing is said`, async () => {
    const s = await setup('vmlockd-c24-same-');
    for (const name of [s.segs[1]!, s.segs[s.segs.length - 1]!]) {
      const file = path.join(s.dir, name);
      if (how === 'touched') {
        const later = new Date(Date.now() + 5000);
        fs.utimesSync(file, later, later);
      } else overwrite(file, fs.readFileSync(file));
    }
    const warm = s.audit(s.warm);
    assert.equal(warm.seqs, s.all);
    assert.is(warm.stderr, '');
    assert.is(s.audit(s.warm).stderr, '');
    assert.is(s.verify().code, 0);
  });
}

test('a cache written before the whole-segment hashes were kept: upgraded on its next question, and a fact rewritten before the upgrade is noticed', async () => {
  const s = await setup('vmlockd-c24-upgrade-');
  // The cache as the version before wrote it: read_segments without stamp and whole, the chain's state
  // without its whole-prefix record, the hint without the newest segment's stamp.
  const host = path.join(fs.readdirSync(s.warm).map((d) => path.join(s.warm, d))[0]!, 'hv-a');
  const db = fs.readdirSync(host).find((f) => f.endsWith('.db'))!;
  const d = new Database(path.join(host, db));
  d.exec('ALTER TABLE read_segments DROP COLUMN stamp; ALTER TABLE read_segments DROP COLUMN whole');
  const st = JSON.parse(d.prepare(`SELECT value FROM meta WHERE key = 'cluster_state'`).pluck().get() as string) as Record<string, unknown>;
  delete st.whole;
  d.prepare(`UPDATE meta SET value = ? WHERE key = 'cluster_state'`).run(JSON.stringify(st));
  d.close();
  const hint = JSON.parse(fs.readFileSync(path.join(host, `${db}.pos`), 'utf8')) as Record<string, unknown>;
  delete hint.stamp;
  fs.writeFileSync(path.join(host, `${db}.pos`), JSON.stringify(hint));
  const name = s.segs[0]!;
  const seq = Number(name.slice(17, 33)) + 2;
  overwrite(path.join(s.dir, name), s.altered(name, seq));
  const warm = s.audit(s.warm);
  const fresh = s.fresh();
  assert.equal(warm.seqs, fresh.seqs, `warm: ${warm.stderr}\nfresh: ${fresh.stderr}`);
  assert.equal(fresh.seqs, s.all.filter((q) => q < seq));
});

test('a cache written before the whole-segment hashes were kept, nothing changed: upgraded silently, all facts answered', async () => {
  const s = await setup('vmlockd-c24-upgrade-same-');
  const host = path.join(fs.readdirSync(s.warm).map((d) => path.join(s.warm, d))[0]!, 'hv-a');
  const db = fs.readdirSync(host).find((f) => f.endsWith('.db'))!;
  const d = new Database(path.join(host, db));
  d.exec('ALTER TABLE read_segments DROP COLUMN stamp; ALTER TABLE read_segments DROP COLUMN whole');
  const st = JSON.parse(d.prepare(`SELECT value FROM meta WHERE key = 'cluster_state'`).pluck().get() as string) as Record<string, unknown>;
  delete st.whole;
  d.prepare(`UPDATE meta SET value = ? WHERE key = 'cluster_state'`).run(JSON.stringify(st));
  d.close();
  const warm = s.audit(s.warm);
  assert.equal(warm.seqs, s.all);
  assert.is(warm.stderr, '');
  // Now recorded: a rewrite after the upgrade is noticed as for any cache.
  const name = s.segs[1]!;
  const seq = Number(name.slice(17, 33)) + 1;
  overwrite(path.join(s.dir, name), s.altered(name, seq));
  assert.equal(s.audit(s.warm).seqs, s.all.filter((q) => q < seq));
});

test.run();
