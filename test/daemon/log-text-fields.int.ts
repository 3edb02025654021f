// A client chooses the VM name and the disk path: in a text log line's field block they are quoted
// and escaped (logfmt style, src/daemon/log.ts fieldValue), so a name such as
// "web2] [event=LeaseLost seq=1 host=h9" cannot add fields (review14: it made a refusal parse as a
// LeaseLost of fact 1).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, UUID2, startDaemon, tmpdir, until, type TestDaemon } from '../helpers/daemon.js';

const running: TestDaemon[] = [];
test.after.each(async () => {
  for (const d of running.splice(0)) await d.kill();
});

test('a VM name cannot add fields to a text log line', async () => {
  const root = tmpdir('vmlockd-r14-textlog-');
  const disk = path.join(root, 'a.img');
  fs.writeFileSync(disk, '');
  const d = await startDaemon({ stateDir: path.join(root, 'state'), lockspace: path.join(root, 'ls'), hostId: 'h1' });
  running.push(d);
  assert.is(d.cli(['acquire', '--vm', UUID1, '--name', 'web1', disk]).code, 0);
  // Refused (warning level: logged by default), the name chosen by the client.
  assert.is(d.cli(['acquire', '--vm', UUID2, '--name', 'web2] [event=LeaseLost seq=1 host=h9', disk]).code !== 0, true);
  const line = await until('the refusal line', () => d.stderr.split('\n').find((l) => l.includes('event=LockRefused')));
  // The fields are the bracketed tail of the line: read it as a logfmt parser would (from the last '[').
  const tail = line.slice(line.lastIndexOf('[') + 1, line.lastIndexOf(']'));
  const fields = new Map<string, string[]>();
  for (const m of tail.matchAll(/([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*)/g)) fields.set(m[1]!, [...(fields.get(m[1]!) ?? []), m[2]!]);
  // event=LockRefused and its real seq, each once (before: "event=LeaseLost seq=1 host=h9 host=h1").
  assert.equal(fields.get('event'), ['LockRefused'], `event on: ${line}`);
  assert.equal(fields.get('seq')?.length, 1, `one seq on: ${line}`);
  assert.equal(fields.get('host'), ['h1'], `host on: ${line}`);
});

test.run();
