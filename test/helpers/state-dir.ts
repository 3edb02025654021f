// A state directory that runs out of room, for the full-disk and fault suites: a real 2 MiB tmpfs
// (mounting needs root) and a filler that writes until the filesystem says ENOSPC.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as assert from 'uvu/assert';
import { tmpdir } from './daemon.js';

/** Mounts a 2 MiB tmpfs on `dir` (created if missing) and records it in `mounts` for `unmountAll`. */
export function smallTmpfs(dir: string, mounts: string[], size = '2m'): void {
  fs.mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount -t tmpfs failed (the suite needs root): ${r.stderr}`);
  mounts.push(dir);
}

/** Lazily unmounts every mount recorded in `mounts`, and empties it. */
export function unmountAll(mounts: string[]): void {
  for (const m of mounts.splice(0)) spawnSync('umount', ['-l', m]);
}

/** Write until the filesystem says ENOSPC; returns the filler file (delete it to give the room back). */
export function fill(dir: string): string {
  const file = path.join(dir, 'fill');
  const fd = fs.openSync(file, 'a');
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (e) {
    assert.is((e as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

/** Disk images under `<dir>/img/` (created now), each made on first use: `disk(i)` is the path of `d<i>`. */
export function diskImages(dir: string): (i: number) => string {
  fs.mkdirSync(path.join(dir, 'img'));
  return (i: number) => {
    const p = path.join(dir, 'img', `d${i}`);
    if (!fs.existsSync(p)) fs.writeFileSync(p, 'x');
    return p;
  };
}

/** A fresh test directory whose state directory (`<dir>/state`) is a 2 MiB tmpfs, with a lockspace path and disk images. */
export function smallStateDir(mounts: string[], size = '2m'): { dir: string; state: string; lockspace: string; disk: (i: number) => string } {
  const dir = tmpdir();
  const state = path.join(dir, 'state');
  smallTmpfs(state, mounts, size);
  const lockspace = path.join(dir, 'lockspace');
  return { dir, state, lockspace, disk: diskImages(dir) };
}
