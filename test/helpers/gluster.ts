// The shared GlusterFS volume the cluster suites run on (.ci/gluster-up.sh STATE_DIR writes
// STATE_DIR/gluster/env: GLUSTER_MNT_A and GLUSTER_MNT_B, the volume mounted twice, and
// GLUSTER_VOLUME). The suites find it through VMLOCKD_E2E_GLUSTER_STATE, which .ci/run sets.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The volume's env file as a record, once it holds every key in `required` and mount A is a FUSE
 * (GlusterFS) mount; otherwise the reason the suite cannot run (it skips with it, or fails in CI).
 */
export function glusterEnv(required: readonly string[] = ['GLUSTER_MNT_A', 'GLUSTER_MNT_B']): Record<string, string> | string {
  const state = process.env.VMLOCKD_E2E_GLUSTER_STATE;
  if (!state) return 'VMLOCKD_E2E_GLUSTER_STATE is not set (.ci/run sets it after .ci/gluster-up.sh)';
  const file = path.join(state, 'gluster', 'env');
  if (!fs.existsSync(file)) return `${file} does not exist: run .ci/gluster-up.sh ${state}`;
  const env = Object.fromEntries(
    fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  for (const k of required) if (!env[k]) return `${file} lacks ${k}`;
  const probe = spawnSync('stat', ['-f', '-c', '%T', env.GLUSTER_MNT_A!], { encoding: 'utf8' });
  if (!probe.stdout.includes('fuse')) return `${env.GLUSTER_MNT_A} is not a FUSE (GlusterFS) mount: ${probe.stdout.trim() || probe.stderr.trim()}`;
  return env;
}
