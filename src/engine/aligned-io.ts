// Record I/O through a page-aligned buffer, for lock files opened with O_DIRECT.
//
// O_DIRECT needs the user buffer aligned to the device's logical block size (512 or 4096); filesystems
// that enforce it (ext4, XFS, OCFS2, GFS2, Lustre) fail an unaligned one with EINVAL. A Buffer from
// Buffer.alloc is only malloc-aligned (16 bytes), so records read and written with it failed at
// random (issue 16.8). JS cannot see a buffer's address to slice it to an aligned offset, so the
// scratch area is a WebAssembly.Memory: V8 maps its backing store with the page allocator, so its
// start is page-aligned (4096 on Linux, at least). Every read and write copies through that area;
// the I/O is synchronous on the event loop, so one area serves every caller in turn.
// Offsets and lengths stay the callers' (multiples of 512 for holder records).
import * as fs from 'node:fs';

export const IO_ALIGN = 4096;
/** One WebAssembly page: larger than any record I/O (the whole record span is 16,896 bytes). */
const SCRATCH_SIZE = 65536;

let scratch: Buffer | undefined;

/** The page-aligned scratch area (created on first use). Exported for the tests. */
export function alignedScratch(): Buffer {
  if (scratch === undefined) {
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    scratch = Buffer.from(mem.buffer, 0, SCRATCH_SIZE);
  }
  return scratch;
}

function area(size: number): Buffer {
  if (!Number.isSafeInteger(size) || size < 0 || size > SCRATCH_SIZE) throw new RangeError(`aligned I/O of ${size} bytes (at most ${SCRATCH_SIZE})`);
  return alignedScratch().subarray(0, size);
}

/** Read up to `size` bytes at `position` into a fresh Buffer (shorter at end of file). */
export function readAligned(fd: number, size: number, position: number): Buffer {
  const buf = area(size);
  const n = fs.readSync(fd, buf, 0, size, position);
  return Buffer.from(buf.subarray(0, n));
}

/**
 * Read up to `size` bytes at `position` into the scratch area itself, without a copy: the view is
 * valid only until the next aligned read or write (a check that looks at every byte once, such as
 * readLease's, needs no Buffer of its own: at start-up that was 16.5 KiB per lock file to collect).
 */
export function readAlignedView(fd: number, size: number, position: number): Buffer {
  const buf = area(size);
  const n = fs.readSync(fd, buf, 0, size, position);
  return buf.subarray(0, n);
}

/** Write all of `data` at `position`; returns the bytes written. */
export function writeAligned(fd: number, data: Buffer, position: number): number {
  const buf = area(data.length);
  data.copy(buf);
  return fs.writeSync(fd, buf, 0, data.length, position);
}
