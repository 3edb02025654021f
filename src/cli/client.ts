// The CLI's side of the control API: HTTP+JSON over the daemon's Unix socket.
import * as http from 'node:http';
import type { Readable } from 'node:stream';
import { VmlockdError } from '../engine/errors.js';

export interface ApiResponse {
  readonly status: number;
  readonly body: unknown;
}

function unreachable(socketPath: string, e: unknown): VmlockdError {
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no socket there' : code === 'ECONNREFUSED' ? 'nothing listens on it' : (e as Error).message;
  return new VmlockdError('VMLOCKD_ERR_UNREACHABLE', `cannot reach vmlockd at ${socketPath} (${why}); is \`vmlockd serve\` running? (--socket or $VMLOCKD_SOCKET choose the socket)`, { cause: e });
}

/**
 * Options of every request to the daemon. No TLS on a Unix socket: an empty `servername` keeps node's
 * agent from calling net.isIP on the host name, whose first call compiles the IPv6 pattern: 5-15 ms of
 * a client command's run on this machine (bench/cli-start.ts, bench/README.md). Not in @types/node's
 * RequestOptions, hence the spread.
 */
export const UNIX_REQUEST = { servername: '' } as http.RequestOptions;

export function call(socketPath: string, method: string, urlPath: string, body?: unknown): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      {
        socketPath,
        method,
        path: urlPath,
        ...UNIX_REQUEST,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null });
          } catch {
            reject(new VmlockdError('VMLOCKD_ERR_INTERNAL', `vmlockd answered ${res.statusCode} with a body that is not JSON: ${text.slice(0, 200)}`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', (e) => reject(unreachable(socketPath, e)));
    req.end(payload);
  });
}

/** Stream JSON lines to /v1/events; `onLine` gets each result line as it arrives. */
export function streamEvents(socketPath: string, input: Readable, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      reject(e);
    };
    const req = http.request({ socketPath, method: 'POST', path: '/v1/events', ...UNIX_REQUEST, headers: { 'content-type': 'application/x-ndjson' } }, (res) => {
      let rest = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        rest += chunk;
        let i: number;
        while ((i = rest.indexOf('\n')) >= 0) {
          onLine(rest.slice(0, i));
          rest = rest.slice(i + 1);
        }
      });
      res.on('end', () => {
        if (rest) onLine(rest);
        settled = true;
        resolve();
      });
      res.on('error', fail);
    });
    req.on('error', (e) => fail(unreachable(socketPath, e)));
    // A file that cannot be read ends the request (and the command) with one error, not a hang.
    input.on('error', (e) => {
      input.unpipe(req);
      req.destroy();
      fail(new VmlockdError('VMLOCKD_ERR_BAD_INPUT', `cannot read the events: ${e.message}`, { cause: e }));
    });
    input.pipe(req);
  });
}
