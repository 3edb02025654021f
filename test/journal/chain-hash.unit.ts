// chainHash in one call over a scratch buffer hashes exactly the bytes the definition names:
// sha256(prev || JSON array of the columns || '\n' || payload), whatever the text holds and however long.
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { mulberry32 } from '../helpers/prng.js';

function reference(prev: Buffer, row: ChainRow): Buffer {
  const head = JSON.stringify([row.seq, row.at, row.host, row.kind, row.resource, row.disk, row.owner, row.owner_name]);
  return createHash('sha256').update(prev).update(head).update('\n').update(row.payload).digest();
}

const base: ChainRow = { seq: 1, at: '2026-01-01T00:00:00.000Z', host: 'hv-a', kind: 'LockAcquired', resource: '/ls/x', disk: '/d/x.qcow2', owner: '11111111-1111-4111-8111-111111111111', owner_name: 'web1', payload: '{"mode":"exclusive"}' };

test('the same hash as the definition for odd texts, nulls and long payloads', () => {
  const texts = ['', 'é', '😀', '\u2028', 'a\ud800b', '\udc00', '"\\\n\t', '\u0000', 'x'.repeat(70_000), '😀'.repeat(30_000), 'é'.repeat(21_840), 'é'.repeat(21_850)];
  let prev = GENESIS_HASH;
  let seq = 0;
  for (const t of texts) {
    for (const row of [
      { ...base, seq: ++seq, payload: JSON.stringify({ t }) },
      { ...base, seq: ++seq, owner_name: t, resource: null, disk: null },
      { ...base, seq: ++seq, host: t, owner: null, owner_name: null, payload: t },
    ]) {
      const want = reference(prev, row);
      assert.ok(chainHash(prev, row).equals(want), `seq ${row.seq} (${t.length} units)`);
      prev = want;
    }
  }
});

test('the same hash as the definition for random rows (a chain of 2,000)', () => {
  const rnd = mulberry32(15);
  const alphabet = ['a', 'Z', '0', ' ', '"', '\\', 'é', '€', '😀', '\n', '\u0001', '\ud800'];
  const str = (n: number) => Array.from({ length: Math.floor(rnd() * n) }, () => alphabet[Math.floor(rnd() * alphabet.length)]!).join('');
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= 2000; seq++) {
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, 1) + seq).toISOString(), host: str(12) || 'h', kind: 'OwnerSeen', resource: rnd() < 0.5 ? null : str(80), disk: rnd() < 0.5 ? null : str(80), owner: rnd() < 0.3 ? null : str(36), owner_name: rnd() < 0.3 ? null : str(20), payload: JSON.stringify({ s: str(300) }) };
    const want = reference(prev, row);
    assert.ok(chainHash(prev, row).equals(want), `seq ${seq}`);
    prev = want;
  }
});

test.run();
