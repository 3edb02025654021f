// Wires the virtlockd protocol server into `vmlockd serve` when --virtlockd-socket / virtlockd_socket
// is set. The server reaches the engine only through the SourceContext the daemon hands it.
import * as path from 'node:path';
import type { RunningSource, SourceContext } from '../engine/source.js';
import { startVirtlockdServer } from '../events/virtlockd/server.js';
import type { Daemon } from './daemon.js';

/** File in the state directory that keeps the protocol's lockspaces and owner pids across restarts. */
export const REGISTRY_FILE = 'virtlockd-server.json';

export function registerVirtlockd(daemon: Daemon): void {
  if (!daemon.config.virtlockdSocket) return;
  daemon.sourceStarters.push(async (ctx: SourceContext, d: Daemon): Promise<RunningSource> => {
    const socketPath = d.config.virtlockdSocket ?? daemon.config.virtlockdSocket!;
    const server = await startVirtlockdServer({
      socketPath,
      registryFile: path.join(d.config.stateDir, REGISTRY_FILE),
      maxClients: d.config.maxClients,
      ctx,
    });
    ctx.log('info', `virtlockd protocol on ${socketPath} (peers with uid ${process.geteuid?.() === 0 ? 0 : process.geteuid?.()} only)`);
    return server;
  });
}
