/**
 * Journal files for in-process journal tests: `tempDir()` is a fresh temporary directory,
 * `tempFile(name)` names a file (default journal.db) in a fresh one, `track(j)` closes the journal
 * after each test; the directories go after the file's tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'uvu';
import type { Journal } from '../../src/journal/journal.js';

export function journalFiles(test: Test, prefix: string): { tempDir: () => string; tempFile: (name?: string) => string; track: (j: Journal) => Journal } {
  const dirs: string[] = [];
  const open: Journal[] = [];
  test.after.each(() => {
    for (const j of open.splice(0)) j.close();
  });
  test.after(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
  return {
    tempDir,
    tempFile: (name = 'journal.db') => join(tempDir(), name),
    track: (j) => {
      open.push(j);
      return j;
    },
  };
}
