// The client's HTTP/1.1 answer parser (src/cli/unix-http.ts): node's server answers with a
// content-length or chunked; a cut answer is an error, never a shorter body taken for the whole.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BadAnswer, parseAnswer } from '../../src/cli/unix-http.js';

const b = (s: string) => Buffer.from(s, 'utf8');

test('content-length: the body is exactly that many bytes (UTF-8)', () => {
  const body = JSON.stringify({ status: 'ok', vm: 'é' });
  const r = parseAnswer(b(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`));
  assert.equal(r, { status: 200, body });
});

test('chunked: the chunks joined, extensions and trailers ignored', () => {
  const r = parseAnswer(b('HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\n{"a":\r\n3\r\n1}\n\r\n0\r\nX-Trailer: 1\r\n\r\n'));
  assert.equal(r, { status: 409, body: '{"a":1}\n' });
});

test('no length, not chunked: the body runs to the close', () => {
  assert.equal(parseAnswer(b('HTTP/1.0 500 Internal\r\n\r\n{"x":1}')), { status: 500, body: '{"x":1}' });
});

test('a 204 has no body', () => {
  assert.equal(parseAnswer(b('HTTP/1.1 204 No Content\r\n\r\n')), { status: 204, body: '' });
});

test('cut answers are errors, not shorter bodies', () => {
  for (const raw of [
    '',
    'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{"a":1}',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{"a":1}\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"a":1}',
    'SSH-2.0-OpenSSH\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nbroken header\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
  ]) {
    assert.throws(() => parseAnswer(b(raw)), (e: unknown) => e instanceof BadAnswer, JSON.stringify(raw));
  }
});

test.run();
