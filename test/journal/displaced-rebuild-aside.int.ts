// review27b F2 (fixed: SqliteFiles.ownCopy): once journal.db was removed under a running daemon, SqliteFiles.check() (sqlite-displaced.ts)
// writes it anew from the open connection and then, every REBUILD_MIN_MS (60 s) until a restart, again:
// the file at the path is the daemon's own copy now, whose inode is not the one SQLite opened, so each
// later check sees it "replaced by another file" and keeps it aside as journal.db.replaced-<ms> (a hard
// link) before renaming the next copy over it. One full copy of the journal kept per minute, forever;
// since e78c2ed the 1 s timer (stage.ts checkFiles) does this for an idle daemon too, with nothing new
// to copy. A 200 MB journal: 12 GB an hour on the journal's own disk, until the disk is full and
// every command is refused.
import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SqliteFiles, REBUILD_MIN_MS } from '../../src/journal/sqlite-displaced.js';
import { tmpdir } from '../helpers/daemon.js';

test('the daemon\'s own rebuilt journal.db is not kept aside as a "replaced" file at every later rebuild', () => {
  const dir = tmpdir('vmlockd-r27b-rebuild-');
  const file = path.join(dir, 'journal.db');
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE facts (seq INTEGER PRIMARY KEY, payload TEXT)');
    const ins = db.prepare('INSERT INTO facts (payload) VALUES (?)');
    for (let i = 0; i < 100; i++) ins.run('x'.repeat(1000));
    let now = 1_000_000;
    const logs: string[] = [];
    const files = new SqliteFiles({ file, db, nonBlocking: (fn) => fn() }, (m) => logs.push(m), () => now);
    assert.is(files.check(), 'ok');
    fs.unlinkSync(file); // an operator "cleaning up"
    assert.is(files.check(), 'rebuilt', 'journal.db written anew');
    const asides = () => fs.readdirSync(dir).filter((n) => n.startsWith('journal.db.replaced-'));
    assert.equal(asides(), [], 'nothing was at the path to keep aside');
    // An idle daemon: its timer checks every second; nothing new is journaled.
    for (let minute = 1; minute <= 5; minute++) {
      now += REBUILD_MIN_MS + 1000;
      files.check();
    }
    const kept = asides();
    const bytes = kept.reduce((s, n) => s + fs.statSync(path.join(dir, n)).size, 0);
    assert.equal(kept, [], `5 minutes later ${kept.length} full copies of the journal (${bytes} bytes) are kept aside as "replaced" files: ${kept.join(', ')}; log: ${logs.slice(-1)[0]?.slice(0, 300)}`);
  } finally {
    db.close();
  }
});

test.run();
