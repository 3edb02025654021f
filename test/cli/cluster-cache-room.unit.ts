// The room a chain's load may take on the cluster cache's filesystem (cluster-cache-room.ts, review28c
// F4): G = new segment bytes x max(2.0, chain file / segment bytes read) x 1.2; a bulk load into a
// cached chain its file + 2G (the WAL holds the rewritten file), a bounded one G, a new chain G (2G
// loaded in place without link(2)).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadRoom } from '../../src/cli/cluster-cache-room.js';

const MiB = 1024 * 1024;

test('a bulk load into a cached chain: its file and twice G (the tmpfs repro: 16.1 MiB file, 8 MiB read, 26.9 MiB new)', () => {
  const fileBytes = 16_908_288;
  const readBytes = 8 * MiB;
  const newBytes = Math.round(26.9 * MiB);
  const g = Math.ceil(newBytes * (fileBytes / readBytes) * 1.2);
  assert.is(loadRoom({ fileBytes, readBytes, newBytes, bulk: true, inPlace: false }), fileBytes + 2 * g);
  // Above the measured peak of that load (104.7 MiB), and above what the 100 MiB tmpfs had above its floor (74 MiB).
  assert.ok(loadRoom({ fileBytes, readBytes, newBytes, bulk: true, inPlace: false }) > 104.7 * MiB);
});

test('a bounded catch-up into a cached chain: G, at least 2.0 x 1.2 per new byte', () => {
  assert.is(loadRoom({ fileBytes: 10 * MiB, readBytes: 100 * MiB, newBytes: 10 * MiB, bulk: false, inPlace: false }), Math.ceil(10 * MiB * 2.4));
  assert.is(loadRoom({ fileBytes: 300 * MiB, readBytes: 100 * MiB, newBytes: 10 * MiB, bulk: false, inPlace: false }), Math.ceil(10 * MiB * 3 * 1.2));
});

test('a new chain: G (built without a WAL), 2G loaded in place', () => {
  assert.is(loadRoom({ fileBytes: 0, readBytes: 0, newBytes: 20 * MiB, bulk: true, inPlace: false }), Math.ceil(20 * MiB * 2.4));
  assert.is(loadRoom({ fileBytes: 0, readBytes: 0, newBytes: 20 * MiB, bulk: true, inPlace: true }), 2 * Math.ceil(20 * MiB * 2.4));
});

test('nothing new: no room', () => {
  assert.is(loadRoom({ fileBytes: 50 * MiB, readBytes: 20 * MiB, newBytes: 0, bulk: false, inPlace: false }), 0);
});

test.run();
