// The staging line built from the row's chain head (stageLineFrom, the append's path) is the same text
// as the definition, stageLine (JSON array of the eleven fields), whatever the columns hold; and
// chainRows hands back each row's head as chainHead makes it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chainRows, type ChainedRow } from '../../src/journal/rows.js';
import { GENESIS_HASH, chainHash, chainHead } from '../../src/journal/schema.js';
import { stageLine, stageLineFrom } from '../../src/journal/stage.js';
import { mulberry32 } from '../helpers/prng.js';

test('stageLineFrom equals stageLine for odd texts, nulls and random rows', () => {
  const rnd = mulberry32(26);
  const alphabet = ['a', 'Z', '0', ' ', '"', '\\', 'é', '€', '😀', '\n', '\u0001', '\ud800', '\u2028', ']', ','];
  const str = (n: number) => Array.from({ length: Math.floor(rnd() * n) }, () => alphabet[Math.floor(rnd() * alphabet.length)]!).join('');
  const rows = [];
  for (let i = 0; i < 1500; i++) {
    rows.push({
      kind: str(10) || 'K',
      at: new Date(Date.UTC(2026, 0, 1) + i).toISOString(),
      resource: rnd() < 0.3 ? null : str(60),
      disk: rnd() < 0.3 ? undefined : str(60),
      owner: rnd() < 0.3 ? null : str(36),
      ownerName: rnd() < 0.3 ? null : str(20),
      payload: rnd() < 0.1 ? str(30) : { s: str(200), n: i, nested: [null, str(5)] },
    });
  }
  const heads: string[] = [];
  const host = 'hv-"é😀\\';
  const chained: ChainedRow[] = chainRows(rows, { seq: 41, hash: GENESIS_HASH }, host, heads);
  assert.is(heads.length, rows.length);
  let prev = GENESIS_HASH;
  chained.forEach((r, i) => {
    assert.is(r.seq, 42 + i);
    assert.is(heads[i], chainHead(r.seq, r.at, r.host, r.kind, r.resource, r.disk, r.owner, r.ownerName));
    // the chain is the definition's
    const want = chainHash(prev, { seq: r.seq, at: r.at, host: r.host, kind: r.kind, resource: r.resource, disk: r.disk, owner: r.owner, owner_name: r.ownerName, payload: r.json });
    assert.ok(r.hash.equals(want), `seq ${r.seq}`);
    prev = want;
    for (const more of [0, 1, 1999]) assert.is(stageLineFrom(heads[i]!, r, more), stageLine(r, more), `seq ${r.seq}`);
  });
});

test('chainRows still names the bad row and field', () => {
  const ok = { kind: 'K', at: '2026-01-01T00:00:00.000Z', payload: {} };
  assert.throws(() => chainRows([ok, { ...ok, disk: 5 as unknown as string }], { seq: 0, hash: GENESIS_HASH }, 'h'), /fact row 1: disk must be a string or null, got 5/);
  assert.throws(() => chainRows([{ ...ok, at: 'yesterday' }], { seq: 0, hash: GENESIS_HASH }, 'h'), /fact row 0 \(K\): at must be ISO-8601/);
  assert.throws(() => chainRows([{ ...ok, kind: '' }], { seq: 0, hash: GENESIS_HASH }, 'h'), /fact row 0: kind must be a non-empty string/);
});

test.run();
