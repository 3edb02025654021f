// One HTTP/1.1 request over a Unix socket with node:net, for the short-lived client commands and the
// qemu hook: loading node:http and running its client costs a client process ~14 ms of CPU at load 8
// (about a third of what `vmlockd status` spends above a bare Node start; bench/README.md, "Client
// commands"). The daemon's control API answers every request with a JSON body, `Connection: close`
// is asked for, and the answer is read to the end of the connection; its body comes with a
// content-length or chunked (node's server uses one or the other), or runs to the close.
import * as net from 'node:net';

export interface RawAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * An answer that is not well-formed HTTP/1.x: the reason, for the caller's error message. `noAnswer`:
 * the connection closed before any byte came back (node's client calls that a "socket hang up").
 */
export class BadAnswer extends Error {
  constructor(
    message: string,
    readonly noAnswer = false,
  ) {
    super(message);
  }
}

/**
 * Sends one request and resolves with the status and body text. Rejects with the socket's own error
 * (its `code`: ENOENT, ECONNREFUSED, ETIMEDOUT after `timeoutMs` of silence) or a BadAnswer.
 */
export function unixRequest(socketPath: string, method: string, urlPath: string, payload?: string, timeoutMs?: number): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const body = payload === undefined ? undefined : Buffer.from(payload, 'utf8');
    let head = `${method} ${urlPath} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n`;
    if (body !== undefined) head += `content-type: application/json\r\ncontent-length: ${body.length}\r\n`;
    head += '\r\n';
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (e: Error | null, answer?: RawAnswer) => {
      if (done) return;
      done = true;
      sock.destroy();
      if (e) reject(e);
      else resolve(answer!);
    };
    const sock = net.createConnection({ path: socketPath });
    if (timeoutMs !== undefined) {
      sock.setTimeout(timeoutMs, () => finish(Object.assign(new Error(`no answer within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
    }
    sock.on('connect', () => {
      sock.write(body === undefined ? head : Buffer.concat([Buffer.from(head, 'latin1'), body]));
    });
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => {
      try {
        finish(null, parseAnswer(Buffer.concat(chunks)));
      } catch (e) {
        finish(e as Error);
      }
    });
    sock.on('error', (e) => finish(e));
    // Closed without an 'end' (reset): whatever came is not a whole answer.
    sock.on('close', () => finish(new BadAnswer('the connection closed before the answer was complete', chunks.length === 0)));
  });
}

/** Status and body of one whole HTTP/1.x answer (a connection read to its end). */
export function parseAnswer(raw: Buffer): RawAnswer {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw raw.length === 0 ? new BadAnswer('the connection closed without an answer', true) : new BadAnswer('the answer ended inside its headers');
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]!);
  if (!m) throw new BadAnswer(`not an HTTP answer: ${JSON.stringify(lines[0]!.slice(0, 60))}`);
  const status = Number(m[1]);
  let length: number | undefined;
  let chunked = false;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new BadAnswer(`a header line without a name: ${JSON.stringify(line.slice(0, 60))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') {
      if (!/^\d+$/.test(value)) throw new BadAnswer(`content-length ${JSON.stringify(value)}`);
      length = Number(value);
    } else if (name === 'transfer-encoding') {
      chunked = value.toLowerCase().split(',').map((s) => s.trim()).includes('chunked');
    }
  }
  const rest = raw.subarray(end + 4);
  // 1xx, 204 and 304 answers carry no body.
  if (status < 200 || status === 204 || status === 304) return { status, body: '' };
  if (chunked) return { status, body: dechunk(rest).toString('utf8') };
  if (length !== undefined) {
    if (rest.length < length) throw new BadAnswer(`the body ended after ${rest.length} of its ${length} bytes`);
    return { status, body: rest.subarray(0, length).toString('utf8') };
  }
  return { status, body: rest.toString('utf8') };
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) throw new BadAnswer('the chunked body ended inside a chunk size');
    const sizeText = data.subarray(at, eol).toString('latin1').split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new BadAnswer(`chunk size ${JSON.stringify(sizeText.slice(0, 20))}`);
    const size = parseInt(sizeText, 16);
    if (size === 0) return Buffer.concat(parts);
    const from = eol + 2;
    if (data.length < from + size + 2) throw new BadAnswer('the chunked body ended inside a chunk');
    parts.push(data.subarray(from, from + size));
    at = from + size + 2;
  }
}
