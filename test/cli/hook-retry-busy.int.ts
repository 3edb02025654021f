// The control API answers 503 when the request bodies it holds at once pass their bound (api-server.ts
// REQUEST_BYTES_MAX; review27b: a hook refused so fails the VM's start). The qemu hook asks again with
// a growing pause while its time lasts: a hook whose body was the largest held gets its locks once the
// other caller's body is gone. The bound is set low here (VMLOCKD_TEST_MAX_REQUEST_BYTES).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, TestDaemon, UUID1, tmpdir } from '../helpers/daemon.js';
import { runHook } from '../helpers/hook-run.js';

const TEMPLATE = fs.readFileSync(path.join(ROOT, 'test', 'e2e', 'fixtures', 'domain-template.xml'), 'utf8');

let d: TestDaemon | undefined;
let holder: net.Socket | undefined;
test.after.each(async () => {
  holder?.destroy();
  await d?.kill('SIGKILL');
});

test('a hook answered 503 (request bytes over the bound) asks again and gets its locks', async () => {
  const dir = tmpdir();
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'image');
  d = await new TestDaemon({ stateDir: path.join(dir, 'state'), lockspace: path.join(dir, 'ls'), hostId: 'hv-a', env: { VMLOCKD_TEST_MAX_REQUEST_BYTES: String(1 << 20) } }).start();
  // Another caller holds 400 KiB of a body it never finishes.
  holder = net.createConnection(d.socket);
  holder.on('error', () => undefined);
  await new Promise<void>((r) => holder!.once('connect', () => r()));
  holder.write(`POST /v1/acquire HTTP/1.1\r\nhost: vmlockd\r\ncontent-type: application/json\r\ncontent-length: ${900 << 10}\r\n\r\n`);
  holder.write('{"x":"' + 'a'.repeat(400 << 10));
  await new Promise((r) => setTimeout(r, 500));
  // The hook's body (a domain XML padded to 800 KiB) is the largest held: refused 503 while the other stands.
  const xml = TEMPLATE.replace('NAME', 'vm1').replace('UUID', UUID1).replace('DISK', disk).replace('</domain>', `<!-- ${'p'.repeat(800 << 10)} -->\n</domain>`);
  const run = runHook(d.socket, ['vm1', 'prepare', 'begin', '-'], xml);
  setTimeout(() => holder?.destroy(), 1500);
  const r = await run;
  assert.is(r.code, 0, r.stderr);
  const locks = JSON.parse(d.cli(['locks', '--json']).stdout) as Array<{ vm: { name: string } }>;
  assert.equal(locks.map((l) => l.vm.name), ['vm1']);
});

test.run();
