// Is a Unix socket served right now? A connect that succeeds says another process listens there;
// a stale socket file (its daemon died) refuses the connect.
import * as net from 'node:net';

export function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
