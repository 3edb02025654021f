// The cross-host suite on a plain local directory: two daemons, one lockspace.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import { tmpdir } from '../helpers/daemon.js';
import { clusterSuite } from '../helpers/cluster-suite.js';

const local = suite('cluster (local directory)');
clusterSuite(local, () => {
  const dir = tmpdir('vmlockd-local-cluster-');
  const lockspace = path.join(dir, 'lockspace');
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  return { lockspaceA: lockspace, lockspaceB: lockspace, images, coherentNames: true };
});
local.run();
