// A disk asked about under several names (a virtlockd-protocol lease's lock file and the path, review25a
// F12): each name is read through the disk index and the branches merged in the answer's order, so
// run, iterate (both ways), `limit` + `newest` and the control API's pages give exactly what one
// query over the union would.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Journal, type FactQuery } from '../../src/journal/journal.js';
import { mulberry32 } from '../helpers/prng.js';

test('several disk names answer as the union of their facts, in order, with limit, newest and pages', () => {
  const j = Journal.open(join(mkdtempSync(join(tmpdir(), 'vmlockd-several-')), 'journal.db'), { host: 'h' });
  try {
    const rnd = mulberry32(7);
    const names = ['/d/a', '/ls/aa', '/d/b', '/ls/bb'];
    const base = Date.parse('2026-01-01T00:00:00.000Z');
    let ms = base;
    const rows = [];
    for (let i = 0; i < 400; i++) {
      ms += Math.floor(rnd() * 3); // same milliseconds too: seq breaks the tie
      const disk = names[Math.floor(rnd() * names.length)]!;
      rows.push({ kind: rnd() < 0.5 ? 'LockAcquired' : 'LockRefused', at: new Date(ms).toISOString(), disk, resource: disk, owner: `o${i % 5}`, payload: { i } });
    }
    j.append(rows);
    const asked = ['/d/a', '/ls/aa', '/ls/aa'];
    const all = j.query({}).filter((f) => asked.includes(f.disk!));
    const byAt = [...all].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.seq - b.seq));
    const seqs = (fs: { seq: number }[]) => fs.map((f) => f.seq);
    const q = (extra: Partial<FactQuery>) => ({ disk: asked, ...extra });
    assert.equal(seqs(j.query(q({}))), seqs(byAt));
    assert.equal(seqs(j.query(q({ limit: 7 }))), seqs(byAt.slice(0, 7)));
    assert.equal(seqs(j.query(q({ limit: 7, newest: true }))), seqs(byAt.slice(-7)));
    assert.equal(seqs(j.query(q({ kinds: ['LockRefused'] }))), seqs(byAt.filter((f) => f.kind === 'LockRefused')));
    const mid = byAt[40]!.at;
    assert.equal(seqs(j.query(q({ until: mid, limit: 5, newest: true }))), seqs(byAt.filter((f) => f.at <= mid).slice(-5)));
    assert.equal(seqs([...j.iterate(q({}))]), seqs(byAt));
    assert.equal(seqs([...j.iterate(q({}), { descending: true })]), seqs([...byAt].reverse()));
    // Pages of the control API: seq order, after_seq, no fact twice or left out.
    const paged: number[] = [];
    for (let after = 0; ; ) {
      const page = j.query(q({ page: true, limit: 9, afterSeq: after }));
      paged.push(...seqs(page));
      if (page.length < 9) break;
      after = page[page.length - 1]!.seq;
    }
    assert.equal(paged, seqs(all).sort((a, b) => a - b));
    // One name in a list is the plain query; none is bad input.
    assert.equal(seqs(j.query({ disk: ['/d/b'] })), seqs(j.query({ disk: '/d/b' })));
    assert.throws(() => j.query({ disk: [] }), /at least one disk/);
    assert.match(j.queryPlan(q({})), /facts_disk_at.*\|\|.*facts_disk_at/);
  } finally {
    j.close();
  }
});

test.run();
