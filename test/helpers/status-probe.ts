// How long one `GET /v1/status` takes, connect to close (-1 if the socket refused): the probe the
// freeze tests run beside a heavy request to see whether the daemon's event loop kept answering.
import * as net from 'node:net';

export function statusMs(socket: string): Promise<number> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = net.connect(socket);
    c.on('connect', () => c.write('GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    c.on('data', () => {});
    c.on('close', () => resolve(Date.now() - t0));
    c.on('error', () => resolve(-1));
  });
}
