// `audit --cluster --follow` (table) started while each host has one journal; then hv-a gets a second
// journal (its state directory lost: a new journal id, seq from 1 again). The rows of both journals
// must say which journal they are from, as the one-shot audit's JOURNAL column does (review 15b):
// the table's columns were fixed at start, and seq 1, 2, 3 printed twice unmarked.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';
import { MAIN, tmpdir, until } from '../helpers/daemon.js';

const H = 'hv-a';

function publish(lockspace: string, journal: string, n: number, day: number, tag: string): void {
  const dir = hostSegmentDir(lockspace, H);
  fs.mkdirSync(dir, { recursive: true });
  let prev = GENESIS_HASH;
  let text = encodeHeader({ host: H, journal, first: 1, prev, created: new Date(Date.UTC(2026, 0, day)).toISOString() });
  for (let seq = 1; seq <= n; seq++) {
    const row: ChainRow = { seq, at: new Date(Date.UTC(2026, 0, day, 0, 0, seq)).toISOString(), host: H, kind: 'OwnerSeen', resource: null, disk: null, owner: '11111111-1111-4111-8111-111111111111', owner_name: tag, payload: JSON.stringify({ n: seq }) };
    prev = chainHash(prev, row);
    text += encodeFact(row, prev);
  }
  const name = segmentFileName(journal, 1);
  fs.writeFileSync(path.join(dir, `.${name}.tmp`), text);
  fs.renameSync(path.join(dir, `.${name}.tmp`), path.join(dir, name));
}

test("--follow (table): a host's second journal appearing while following: its rows say which journal they are from", async () => {
  const root = tmpdir('vmlockd-cluster-follow-journal-');
  const ls = path.join(root, 'lockspace');
  const J1 = 'aaaaaaaaaaaaaaaa';
  const J2 = 'bbbbbbbbbbbbbbbb';
  publish(ls, J1, 3, 1, 'oldjournal');
  const child = spawn(process.execPath, [MAIN, 'audit', '--cluster', '--lockspace', ls, '--cache', path.join(root, 'cache'), '--follow'], { env: { ...process.env, COLUMNS: '400' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  try {
    await until('the backlog', () => (out.match(/oldjournal/g) ?? []).length >= 3, 30_000);
    assert.not.match(out, /JOURNAL/, 'one journal per host: no JOURNAL column yet');
    publish(ls, J2, 3, 2, 'newjournal');
    await until(`the new journal followed (${out}${err})`, () => (out.match(/newjournal/g) ?? []).length >= 3, 30_000);
    const rows = out.split('\n').filter((l) => l.includes('newjournal'));
    assert.ok(rows.every((l) => l.includes(J2)), `rows of hv-a's second journal carry its id:\n${out}`);
    // From the change on, the table says JOURNAL in a new header line.
    const tail = out.slice(out.indexOf('JOURNAL'));
    assert.ok(out.includes('JOURNAL') && out.indexOf('JOURNAL') < out.indexOf('newjournal'), `a header with the JOURNAL column before the new rows:\n${out}`);
    assert.ok(tail.split('\n').filter((l) => l.includes('newjournal')).length === 3);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
});

test.run();
