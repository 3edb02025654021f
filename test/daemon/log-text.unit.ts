// The text log keeps one event on one line, whatever a client put into a disk path or a VM name.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Logger } from '../../src/daemon/log.js';

function capture(): { lines: string[]; log: Logger } {
  const lines: string[] = [];
  const log = new Logger('info', { format: 'text', env: {}, write: (l) => lines.push(l) });
  return { lines, log };
}

test('a newline in a client-chosen disk path or VM name cannot forge a second log line', () => {
  const { lines, log } = capture();
  const forged = '/images/a.img\n2026-11-30T00:00:00.000Z error LEASE LOST: VM x lost /images/b.img';
  log.log('warning', `refused ${forged} for VM evil\r\nname`, { disk: forged, vm: 'evil\nname' });
  assert.is(lines.length, 1);
  assert.is(lines[0]!.split('\n').length, 2, lines[0]); // the line's own end only
  assert.ok(lines[0]!.endsWith('\n'));
  assert.not.match(lines[0]!.slice(0, -1), /[\r\n]/);
  assert.match(lines[0]!, '/images/a.img\\x0a2026-11-30');
  assert.match(lines[0]!, 'VM evil\\x0d\\x0aname');
  assert.match(lines[0]!, 'vm=evil\\x0aname');
});

test('a backslash is doubled, so an escaped newline and a literal "\\x0a" in a name stay apart; plain lines are unchanged', () => {
  const { lines, log } = capture();
  log.log('info', 'disk /images/odd\\x0a.img', {});
  log.log('info', 'acquired /images/plain.img for VM web1', {});
  assert.match(lines[0]!, 'disk /images/odd\\\\x0a.img');
  assert.match(lines[1]!, / info acquired \/images\/plain\.img for VM web1\n$/);
});

/** The field block of a text line read as a logfmt parser would: from the line's last '[' to its ']'. */
function textFields(line: string): Map<string, string[]> {
  const tail = line.slice(line.lastIndexOf('[') + 1, line.lastIndexOf(']'));
  const fields = new Map<string, string[]>();
  for (const m of tail.matchAll(/([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*)/g)) fields.set(m[1]!, [...(fields.get(m[1]!) ?? []), m[2]!]);
  return fields;
}

test('a VM name or disk path with spaces, "=", "[", "]" or quotes cannot add a field (review14)', () => {
  const { lines, log } = capture();
  log.log('warning', 'refused', { event: 'LockRefused', seq: 7, disk: '/images/my disk [1].img', vm: 'web2] [event=LeaseLost seq=1 host=h9 "x"', host: 'h1' });
  const line = lines[0]!;
  const f = textFields(line);
  assert.equal(f.get('event'), ['LockRefused'], line);
  assert.equal(f.get('seq'), ['7'], line);
  assert.equal(f.get('host'), ['h1'], line);
  assert.equal(f.get('vm'), ['"web2\\x5d \\x5bevent=LeaseLost seq=1 host=h9 \\"x\\""'], line);
  assert.equal(f.get('disk'), ['"/images/my disk \\x5b1\\x5d.img"'], line);
  // Plain values stay bare.
  log.log('info', 'ok', { event: 'LockAcquired', vm: 'web1', disk: '/images/a.img' });
  assert.match(lines[1]!, / \[event=LockAcquired disk=\/images\/a\.img vm=web1\]\n$/);
});

test('a CONFLICT line\'s holder and holderHost are fields too, quoted like the rest (a holder\'s VM name comes from its lock file)', () => {
  const { lines, log } = capture();
  log.log('error', 'CONFLICT: ...', { event: 'Conflict', seq: 9, disk: '/images/a.img', vm: 'web1', holder: 'web2 [x] seq=1', holderHost: 'h2' });
  const f = textFields(lines[0]!);
  assert.equal(f.get('holder'), ['"web2 \\x5bx\\x5d seq=1"'], lines[0]);
  assert.equal(f.get('holderHost'), ['h2'], lines[0]);
  assert.equal(f.get('seq'), ['9'], lines[0]);
});

test.run();
