import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeValue, formatProblem, parseConf, renderValue, type ConfValue } from '../../src/watchers/conf-syntax.js';

const F = '/etc/libvirt/qemu-lockd.conf';

function ok(text: string) {
  const parsed = parseConf(text, F);
  assert.is(parsed.error, null, `unexpected error: ${parsed.error && formatProblem(parsed.error)}`);
  return parsed.entries;
}

function problem(text: string): string {
  const parsed = parseConf(text, F);
  assert.ok(parsed.error, 'expected a syntax error');
  return formatProblem(parsed.error!);
}

const s = (value: string): ConfValue => ({ type: 'string', value });

// Shaped like libvirt's shipped qemu-lockd.conf: every setting commented out.
const SHIPPED_QEMU_LOCKD = `#
# The default lockd behaviour is to acquire locks directly
# against each configured disk file / block device. If the
# application wishes to instead manually manage leases in
# the guest XML, then this parameter can be disabled
#
#auto_disk_leases = 0

#
# Setting a directory here causes lockd to use "indirect"
# lockspace, where a hash of the <disk> file path is
# used to create a file in the lockspace directory.
#
#file_lockspace_dir = "/var/lib/libvirt/lockd/files"


#lvm_lockspace_dir = "/var/lib/libvirt/lockd/lvmvolumes"
#scsi_lockspace_dir = "/var/lib/libvirt/lockd/scsivolumes"
`;

test('given the shipped, fully commented qemu-lockd.conf, then there are no entries', () => {
  assert.equal(ok(SHIPPED_QEMU_LOCKD), []);
});

test('given an edited qemu-lockd.conf, then each setting is read with its line, trailing comments dropped', () => {
  const text = SHIPPED_QEMU_LOCKD.replace('#auto_disk_leases = 0', 'auto_disk_leases = 0   # manual leases')
    .replace('#file_lockspace_dir = "/var/lib/libvirt/lockd/files"', 'file_lockspace_dir = "/var/lib/libvirt/lockd/files"#no space');
  assert.equal(ok(text), [
    { key: 'auto_disk_leases', value: { type: 'integer', value: 0, raw: '0' }, line: 7 },
    { key: 'file_lockspace_dir', value: s('/var/lib/libvirt/lockd/files'), line: 14 },
  ]);
});

test('given virtlockd.conf settings without blanks around "=", then they parse', () => {
  const entries = ok('# Logging\nlog_level=1\nlog_filters="3:remote 4:event"\nlog_outputs="3:syslog:virtlockd"\nmax_clients = 1024\n');
  assert.equal(
    entries.map((e) => [e.key, e.value, e.line]),
    [
      ['log_level', { type: 'integer', value: 1, raw: '1' }, 2],
      ['log_filters', s('3:remote 4:event'), 3],
      ['log_outputs', s('3:syslog:virtlockd'), 4],
      ['max_clients', { type: 'integer', value: 1024, raw: '1024' }, 5],
    ],
  );
});

test('given a list spanning lines with a blank line and a trailing comma, then every item is kept', () => {
  const entries = ok('cgroup_controllers = [\n  "cpu",\n\n  "devices" ,\n  "memory",\n]\nnext = 1\n');
  assert.equal(entries[0], { key: 'cgroup_controllers', value: { type: 'list', items: [s('cpu'), s('devices'), s('memory')] }, line: 1 });
  assert.equal(entries[1]?.line, 7);
  assert.equal(ok('empty = [ ]')[0]?.value, { type: 'list', items: [] });
  assert.equal(ok('nested = [ [ 1 ], "x" ]')[0]?.value, {
    type: 'list',
    items: [{ type: 'list', items: [{ type: 'integer', value: 1, raw: '1' }] }, s('x')],
  });
});

test('given libvirt string forms, then single quotes, triple quotes and literal backslashes behave as in libvirt', () => {
  assert.equal(ok(`a = 'say "hi"'`)[0]?.value, s('say "hi"'));
  assert.equal(ok('a = """two\nlines"""\nb = 2')[0]?.value, s('two\nlines'));
  assert.equal(ok('a = """two\nlines"""\nb = 2')[1]?.line, 3);
  // libvirt has no escapes: the backslash stays, and the first " ends the string.
  assert.equal(ok('a = "C:\\dir\\"')[0]?.value, s('C:\\dir\\'));
  assert.match(problem('a = "say \\"hi\\""'), /^\/etc\/libvirt\/qemu-lockd.conf:1: unexpected "hi\\""/);
  assert.equal(ok('a = ""')[0]?.value, s(''));
});

test('given integers with signs, ";" separators, CRLF line ends and a BOM, then they parse', () => {
  const entries = ok('\uFEFFa = -3; b = +4\r\nc = 0\r\n');
  assert.equal(
    entries.map((e) => [e.key, e.value, e.line]),
    [
      ['a', { type: 'integer', value: -3, raw: '-3' }, 1],
      ['b', { type: 'integer', value: 4, raw: '+4' }, 1],
      ['c', { type: 'integer', value: 0, raw: '0' }, 2],
    ],
  );
});

test('given an unterminated string, then the error names file, line and the missing quote', () => {
  assert.is(
    problem('# ok\nfile_lockspace_dir = "/var/lib/libvirt/lockd/files\nauto_disk_leases = 1\n'),
    `${F}:2: unterminated string: missing closing " before the end of the line`,
  );
  assert.match(problem('a = """never\nclosed'), /:1: unterminated string: """ opened here is never closed/);
});

test('given a line without "=", then the error names the key', () => {
  assert.is(problem('auto_disk_leases 1\n'), `${F}:1: expected "=" after key "auto_disk_leases", got "1"`);
  assert.is(problem('\n\nauto_disk_leases\n'), `${F}:3: missing "=" after key "auto_disk_leases"`);
});

test('given a garbage value, then the error says what a value may be', () => {
  assert.is(
    problem('auto_disk_leases = yes\n'),
    `${F}:1: invalid value yes for "auto_disk_leases": expected a "quoted string", an integer or a [ list ]`,
  );
  assert.match(problem('max_clients = 12abc'), /:1: invalid value 12abc for "max_clients"/);
  assert.match(problem('max_clients = 1.5'), /:1: invalid value 1\.5 for "max_clients"/);
  assert.match(problem('max_clients ='), /:1: missing value for "max_clients"/);
  assert.match(problem('max_clients = # none'), /:1: missing value for "max_clients"/);
  assert.match(problem('max_clients = 99999999999999999999'), /:1: integer 99999999999999999999 for "max_clients" is out of range/);
});

test('given trailing text after a value, then it is an error, not silently ignored', () => {
  assert.is(
    problem('file_lockspace_dir = "/a" "/b"'),
    `${F}:1: unexpected ""/b"" after the value of "file_lockspace_dir" (one "key = value" per line)`,
  );
});

test('given bad keys, then the error shows the key as written', () => {
  assert.match(problem('file-lockspace-dir = "/x"'), /:1: invalid key name "file-lockspace-dir" \(a key is a letter/);
  assert.match(problem('1st = 2'), /:1: invalid key name "1st"/);
  assert.match(problem('= 2'), /:1: expected a key name, got "="/);
});

test('given broken lists, then the error points at the list', () => {
  assert.is(problem('a = [\n "x",\n "y"\n'), `${F}:1: unterminated list: "[" opened here is never closed with "]"`);
  assert.is(problem('a = [ "x" "y" ]'), `${F}:1: expected "," or "]" in the list for "a", got ""y""`);
  assert.is(problem('a = [\n "x", # first\n]'), `${F}:2: comments are not allowed inside a [ list ] (libvirt rejects them too)`);
  assert.match(problem('a = [ "x", , ]'), /:1: invalid value "," for "a"/);
});

test('given an error after good lines, then the good entries before it are kept', () => {
  const parsed = parseConf('a = 1\nb = 2\nc = oops\nd = 4\n', F);
  assert.equal(parsed.entries.map((e) => e.key), ['a', 'b']);
  assert.is(parsed.error?.line, 3);
});

test('renderValue writes what parseConf reads back, and describeValue names the type', () => {
  const values: ConfValue[] = [
    s('plain'),
    s('has "double"'),
    s(`has "both" 'kinds'`),
    s('multi\nline'),
    { type: 'integer', value: -7, raw: '-7' },
    { type: 'list', items: [s('a'), { type: 'integer', value: 2, raw: '2' }] },
    { type: 'list', items: [] },
  ];
  for (const v of values) assert.equal(ok(`k = ${renderValue(v)}`)[0]?.value, v, renderValue(v));
  assert.is(describeValue(s('x')), 'string "x"');
  assert.is(describeValue({ type: 'integer', value: 5, raw: '5' }), 'integer 5');
  assert.is(describeValue({ type: 'list', items: [s('a')] }), 'list [ "a" ]');
});

test('lists nested past the limit are a syntax problem on their line, not a stack overflow (found by fuzzing)', () => {
  const deep = 20_000;
  assert.is(problem(`a = 1\nmax_clients = ${'['.repeat(deep)}${']'.repeat(deep)}\n`), `${F}:2: lists for "max_clients" are nested deeper than 32 levels`);
  assert.is(problem(`x = ${'['.repeat(deep)}`), `${F}:1: lists for "x" are nested deeper than 32 levels`);
  // Up to the limit they still parse.
  assert.is(ok(`x = ${'['.repeat(32)}${']'.repeat(32)}`).length, 1);
});

test.run();
