// Wires the virtlockd protocol server into `vmlockd serve` when --virtlockd-socket / virtlockd_socket
// is set. The server reaches the engine only through the SourceContext the daemon hands it.
import * as path from 'node:path';
import type { RunningSource, SourceContext } from '../engine/source.js';
import { DEFAULT_FRAME_TIMEOUT_MS, startVirtlockdServer } from '../events/virtlockd/server.js';
import type { Daemon } from './daemon.js';
import { envMs } from './env-ms.js';

import { REGISTRY_FILE } from '../events/virtlockd/registry.js';
export { REGISTRY_FILE };

/**
 * VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS: how long the rest of a protocol frame may take once its first
 * byte arrived (default 30000); then the connection is closed. Read at start.
 */
export function frameTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  return envMs(env, 'VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS') ?? DEFAULT_FRAME_TIMEOUT_MS;
}

function inherited(fd: number | undefined, managed: boolean): { listenFd?: number; keepPath?: boolean } {
  return fd === undefined ? {} : { listenFd: fd, ...(managed ? { keepPath: true } : {}) };
}

export function registerVirtlockd(daemon: Daemon): void {
  if (!daemon.config.virtlockdSocket) return;
  daemon.sourceStarters.push(async (ctx: SourceContext, d: Daemon): Promise<RunningSource> => {
    const socketPath = d.config.virtlockdSocket ?? daemon.config.virtlockdSocket!;
    const server = await startVirtlockdServer({
      socketPath,
      registryFile: path.join(d.config.stateDir, REGISTRY_FILE),
      maxClients: d.config.maxClients,
      frameTimeoutMs: frameTimeoutMs(),
      ctx,
      ...inherited(d.inherited?.take('virtlockd', socketPath), d.inherited?.isManaged('virtlockd', socketPath) === true),
      ...(d.managerHandedBack ? { degradeIfServed: true } : {}),
      // Clients of the daemon this one took over from: read from once it has let go (UP).
      adopt: { conns: d.takeConnections('virtlockd', socketPath), readFrom: d.takenOver?.up ?? Promise.resolve() },
    });
    ctx.log('info', `virtlockd protocol on ${socketPath} (peers with uid ${process.geteuid?.() === 0 ? 0 : process.geteuid?.()} only)`);
    return server;
  });
}
