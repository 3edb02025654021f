// Is a directory on a network or cluster filesystem? There, holder records are read and written
// with O_DIRECT and flushed, because each client caches file data (a FUSE page cache, GlusterFS
// write-behind) and another host would otherwise read an old record and an old fencing generation.
import * as fs from 'node:fs';
import { networkFsName } from '../journal/network-fs.js';

export function onSharedFs(dir: string | null): boolean {
  if (dir === null) return false;
  try {
    return networkFsName(fs.statfsSync(dir, { bigint: true }).type) !== undefined;
  } catch {
    return false;
  }
}
