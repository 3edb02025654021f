// The lockspace id file: daemons starting together on a fresh lockspace all read one whole id.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

// The built module (npm test builds first): a worker thread does not inherit tsx's loader.
const MODULE = new URL('../../dist/engine/locker-hosts.js', import.meta.url).href;

// Each worker walks the same list of fresh lockspaces and asks for their ids at once: real
// concurrent open/link/read system calls on one directory, as several daemons starting together.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.module).then(({ lockspaceId }) => {
  const out = [];
  for (const dir of workerData.dirs) {
    try { out.push(lockspaceId(dir)); } catch (e) { out.push('ERROR ' + e.message); }
  }
  parentPort.postMessage(out);
});
`;

test('daemons starting together on a fresh lockspace read one whole id, none refuses', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlockd-lsid-'));
  const dirs = Array.from({ length: 300 }, (_, i) => path.join(root, `ls${i}`));
  const runs = await Promise.all(
    Array.from({ length: 6 }, () =>
      new Promise<string[]>((resolve, reject) => {
        const w = new Worker(WORKER, { eval: true, workerData: { module: MODULE, dirs } });
        w.once('message', resolve);
        w.once('error', reject);
      }),
    ),
  );
  for (let i = 0; i < dirs.length; i++) {
    const seen = new Set(runs.map((r) => r[i]));
    assert.is(seen.size, 1, `${dirs[i]}: ${[...seen].join(' | ')}`);
    assert.match([...seen][0]!, /^[0-9a-f-]{36}$/);
    // Nothing of the creation is left behind but the id itself.
    assert.equal(fs.readdirSync(dirs[i]!), ['.vmlockd-lockspace-id']);
  }
  fs.rmSync(root, { recursive: true, force: true });
});

test.run();
