// review25b F6 (MEDIUM, freeze): one ingest of 3,000 `started` events (3,000 VMs, one disk each, a
// legal JSON-lines file any control-API client may send) took its locks back to back on the event
// loop (a chunk holds thousands of lines and the next is often buffered already), so no group commit
// ran and no other client was answered meanwhile: a `status` call beside it waited 1.8 s at load 8.5
// (10.2 s at load 12 in the review). The ingest now gives the loop a turn every 256 lines or 5 ms:
// 116 ms at the same load. The bound below leaves ~8x room for a loaded machine.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAIN, startDaemon, tmpdir, type TestDaemon } from '../helpers/daemon.js';
import { statusMs } from '../helpers/status-probe.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});


test('an ingest of 3,000 VM starts does not stall the daemon', async () => {
  const root = tmpdir('vmlockd-r25b-burst-');
  const img = path.join(root, 'img');
  fs.mkdirSync(img);
  let text = '';
  for (let i = 0; i < 3000; i++) {
    const disk = path.join(img, `d${i}.img`);
    fs.writeFileSync(disk, '');
    text += JSON.stringify({ type: 'started', vm: { uuid: `${String(i).padStart(8, '0')}-1111-4111-8111-111111111111`, name: `v${i}` }, disks: [{ path: disk }] }) + '\n';
  }
  const file = path.join(root, 'ev.jsonl');
  fs.writeFileSync(file, text);
  const d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'ls'), hostId: 'h1' });
  running.push(d);
  let stop = false;
  let worst = 0;
  const pinger = (async () => {
    while (!stop) {
      worst = Math.max(worst, await statusMs(d.socket));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const code = await new Promise<number | null>((resolve) => spawn(process.execPath, [MAIN, 'ingest', file, '--socket', d.socket], { stdio: 'ignore' }).on('exit', resolve));
  stop = true;
  await pinger;
  assert.is(code, 0);
  const held = spawnSync(process.execPath, [MAIN, 'locks', '--json', '--socket', d.socket], { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.is(JSON.parse(held.stdout).length, 3000);
  assert.ok(worst < 1000, `a status call waited ${worst} ms while 3,000 started events were ingested`);
});

test.run();
