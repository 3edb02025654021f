// The CLI's side of the control API: HTTP+JSON over the daemon's Unix socket.
import type { Readable } from 'node:stream';
import { VmlockdError } from '../engine/errors.js';
import { BadAnswer, unixRequest, type RawAnswer } from './unix-http.js';

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
 * Options of the streaming request (ingest). No TLS on a Unix socket: an empty `servername` keeps node's
 * agent from calling net.isIP on the host name, whose first call compiles the IPv6 pattern: 5-15 ms of
 * a client command's run on this machine (bench/cli-start.ts, bench/README.md). Not in @types/node's
 * RequestOptions, hence the cast.
 */
const UNIX_REQUEST = { servername: '' } as import('node:http').RequestOptions;

/**
 * One request, one JSON answer. Over node:net (./unix-http.ts), not node:http: a client command
 * spends less than half its time above node's own start that way (bench/README.md).
 */
export async function call(socketPath: string, method: string, urlPath: string, body?: unknown): Promise<ApiResponse> {
  let answer: RawAnswer;
  try {
    answer = await unixRequest(socketPath, method, urlPath, body === undefined ? undefined : JSON.stringify(body));
  } catch (e) {
    if (e instanceof BadAnswer && !e.noAnswer) throw new VmlockdError('VMLOCKD_ERR_INTERNAL', `vmlockd at ${socketPath} gave no whole answer: ${e.message}`, { cause: e });
    throw unreachable(socketPath, e);
  }
  try {
    return { status: answer.status, body: answer.body ? JSON.parse(answer.body) : null };
  } catch {
    throw new VmlockdError('VMLOCKD_ERR_INTERNAL', `vmlockd answered ${answer.status} with a body that is not JSON: ${answer.body.slice(0, 200)}`);
  }
}

/** Stream JSON lines to /v1/events; `onLine` gets each result line as it arrives. */
export async function streamEvents(socketPath: string, input: Readable, onLine: (line: string) => void): Promise<void> {
  // Loaded here: the one-request commands never need node:http.
  const http = await import('node:http');
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
