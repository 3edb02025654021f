/**
 * Journal files for in-process journal tests: `tempFile()` names a journal in a fresh temporary
 * directory, `track(j)` closes the journal after each test; the directories go after the file's tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'uvu';
import type { Journal } from '../../src/journal/journal.js';

export function journalFiles(test: Test, prefix: string): { tempFile: () => string; track: (j: Journal) => Journal } {
  const dirs: string[] = [];
  const open: Journal[] = [];
  test.after.each(() => {
    for (const j of open.splice(0)) j.close();
  });
  test.after(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return {
    tempFile: () => {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(dir);
      return join(dir, 'journal.db');
    },
    track: (j) => {
      open.push(j);
      return j;
    },
  };
}
