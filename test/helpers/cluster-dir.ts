// A cluster's shared directory for tests with several daemons (one per host id): a lockspace and
// an images directory whose disks are made on first use.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tmpdir } from './daemon.js';

export interface Cluster {
  dir: string;
  lockspace: string;
  /** The image file `name`, created (holding "image") if it does not exist yet. */
  disk: (name: string) => string;
}

export function cluster(prefix?: string): Cluster {
  const dir = tmpdir(prefix);
  const lockspace = path.join(dir, 'lockspace');
  fs.mkdirSync(path.join(dir, 'images'));
  return {
    dir,
    lockspace,
    disk: (name) => {
      const p = path.join(dir, 'images', name);
      if (!fs.existsSync(p)) fs.writeFileSync(p, 'image');
      return p;
    },
  };
}
