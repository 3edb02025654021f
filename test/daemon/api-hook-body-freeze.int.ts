// Regression for review25b F1 (MEDIUM, freeze): one POST /v1/hook whose body is a JSON object with millions of keys
// (under MAX_HOOK_BODY, 80 MiB) is parsed with JSON.parse on the daemon's event loop (api-server.ts
// readJson, then checkDepth's Object.values and the InputRejected's JSON.stringify of the body): the
// daemon answers nothing else meanwhile. Measured at load ~15: a 79 MiB body froze `status` for 145 s.
// This test sends ~24 MiB (about 2 million keys) and asks that a status call beside it never waits
// more than 5 s.
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});

function request(socketPath: string, method: string, route: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request({ socketPath, path: route, method, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

test('a hook body of many JSON keys does not stall the control API', async () => {
  const root = tmpdir('vmlockd-r25b-hookbody-');
  const d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'ls'), hostId: 'h1' });
  running.push(d);
  const parts: string[] = [];
  let len = 2;
  for (let n = 0; len < 24 * 1048576; n++) {
    const s = `"k${n}":0`;
    parts.push(s);
    len += s.length + 1;
  }
  const body = '{' + parts.join(',') + '}';
  let stop = false;
  let worst = 0;
  const pinger = (async () => {
    while (!stop) {
      const t = Date.now();
      await request(d.socket, 'GET', '/v1/status');
      worst = Math.max(worst, Date.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const reply = await request(d.socket, 'POST', '/v1/hook', body);
  stop = true;
  await pinger;
  assert.ok(worst < 5000, `a status call waited ${worst} ms while the daemon parsed one ${body.length}-byte hook body`);
  assert.is(reply.status, 400, reply.text.slice(0, 300));
  assert.match(reply.text, 'more than 10000 JSON values');
});

test.run();
