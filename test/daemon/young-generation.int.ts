// Decision 0007: `serve` keeps V8's young generation at its initial size. V8 clamps the flag that does
// it back to 2 for the whole process each time a worker thread's heap is set up (src/journal/young-generation.ts),
// and the daemon starts three: the journal's SQLite writer, the publisher, the domain-XML parser. A real
// daemon with all three started; a preload (NODE_OPTIONS --require) runs an allocation burst on its
// main thread on SIGUSR2 and writes the young generation's size: it must not have grown.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TestDaemon, tmpdir, until } from '../helpers/daemon.js';
import { status } from '../helpers/published.js';
import { runHook } from '../helpers/hook-run.js';

const test = suite('decision 0007: the young generation stays small after the daemon starts its worker threads');
const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill('SIGKILL');
});

const PROBE = `
const { isMainThread } = require('node:worker_threads');
if (isMainThread) process.on('SIGUSR2', () => {
  const v8 = require('node:v8');
  // Long-lived objects, as a start's re-take makes: most of them survive their first scavenges.
  let keep = [];
  for (let i = 0; i < 3e6; i++) { keep.push({ a: i }); if (keep.length > 2e5) keep = []; }
  const mb = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576;
  require('node:fs').writeFileSync(process.env.YOUNG_OUT + '.tmp', String(mb));
  require('node:fs').renameSync(process.env.YOUNG_OUT + '.tmp', process.env.YOUNG_OUT);
});
`;

test('after the journal writer, the publisher and the domain-XML parser started: a burst leaves the young generation at its initial size', async () => {
  const root = tmpdir('vmlockd-young-');
  const probe = path.join(root, 'probe.cjs');
  const out = path.join(root, 'new-space-mb');
  fs.writeFileSync(probe, PROBE);
  const ls = path.join(root, 'lockspace');
  fs.mkdirSync(ls);
  const d = new TestDaemon({ stateDir: path.join(root, 'state'), lockspace: ls, hostId: 'h1', env: { NODE_OPTIONS: `--require ${probe}`, YOUNG_OUT: out, VMLOCKD_PUBLISH_INTERVAL_MS: '20' } });
  running.push(await d.start());
  // The publisher's thread runs once it has published the start's facts.
  await until('publication to start', async () => ((await status(d.socket)).publication?.publishedSeq ?? 0) > 0);
  // A domain XML over 32 KiB is parsed on the domain-XML thread (src/events/domain-xml-offload.ts).
  const image = path.join(root, 'disk.img');
  fs.writeFileSync(image, '');
  const xml = `<domain type="kvm"><name>big</name><uuid>11111111-1111-4111-8111-111111111111</uuid><description>${'x'.repeat(64 * 1024)}</description><devices><disk type="file" device="disk"><source file="${image}"/><target dev="vda"/></disk></devices></domain>`;
  const hook = await runHook(d.socket, ['big', 'prepare', 'begin', '-'], xml);
  assert.is(hook.code, 0, hook.stderr);
  d.proc!.kill('SIGUSR2');
  const mb = Number(await until('the probe', () => fs.existsSync(out) && fs.readFileSync(out, 'utf8')));
  // Node 20: 1 MiB semi-spaces, reported as 2 MiB; 32 when the flag was reset (before the fix).
  assert.ok(mb <= 2, `new_space ${mb} MiB after a burst`);
});

test.run();
