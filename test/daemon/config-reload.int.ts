// Live reload in a running daemon: chokidar on the real file, SIGHUP, refusals while locks are held.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UUID1, startDaemon, tmpdir, type TestDaemon, until } from '../helpers/daemon.js';
import { settled } from '../helpers/settled.js';

const BASE = `# vmlockd test config
log_level = 3
on_conflict = "report"
verify_interval = 10
max_clients = 1024
`;

function status(d: TestDaemon): Record<string, any> {
  const r = d.cli(['status', '--json']);
  assert.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}


function facts(d: TestDaemon, kind: string): any[] {
  settled(d.opts.stateDir);
  const db = new Database(path.join(d.opts.stateDir, 'journal.db'), { readonly: true });
  try {
    return (db.prepare('SELECT payload FROM facts WHERE kind = ? ORDER BY seq').all(kind) as Array<{ payload: string }>).map((r) => JSON.parse(r.payload));
  } finally {
    db.close();
  }
}

let daemon: TestDaemon | undefined;
let base = BASE;
test.after.each(async () => {
  await daemon?.kill('SIGKILL');
  daemon = undefined;
});

async function setup(logLevel = 3, edit: (text: string) => string = (t) => t): Promise<{ dir: string; conf: string; d: TestDaemon }> {
  const dir = tmpdir();
  const conf = path.join(dir, 'vmlockd.conf');
  // The lockspace comes from the file: a --lockspace flag would override the file and hide its changes.
  base = edit(BASE.replace('log_level = 3', `log_level = ${logLevel}`)) + `file_lockspace_dir = "${path.join(dir, 'ls')}"\n`;
  fs.writeFileSync(conf, base);
  daemon = await startDaemon({ stateDir: path.join(dir, 'state'), hostId: 'hv-a', extra: ['--config', conf] });
  return { dir, conf, d: daemon };
}

test('each live key changes in the running daemon and is journaled as ConfigChanged', async () => {
  const { conf, d } = await setup();
  assert.is(status(d).logLevel, 'warning');
  const edits: Array<[string, string, unknown]> = [
    ['log_level = 3', 'log_level = 1', 'debug'],
    ['on_conflict = "report"', 'on_conflict = "suspend"', 'suspend'],
    ['verify_interval = 10', 'verify_interval = 3', 3000],
  ];
  const field: Record<string, string> = { log_level: 'logLevel', on_conflict: 'onConflict', verify_interval: 'verifyIntervalMs', max_clients: 'maxClients' };
  let text = base;
  for (const [from, to, value] of edits) {
    text = text.replace(from, to);
    fs.writeFileSync(conf, text);
    const key = field[from.split(' ')[0]!]!;
    await until(`${key} = ${value}`, () => status(d)[key] === value);
  }
  text += 'libvirt_uri = "test+unix:///default"\n';
  fs.writeFileSync(conf, text);
  await until('libvirt_uri', () => status(d).libvirtUri === 'test+unix:///default');
  const changes = facts(d, 'ConfigChanged').flatMap((f) => f.changes.map((c: { key: string }) => c.key));
  assert.equal(changes, ['logLevel', 'onConflict', 'verifyIntervalMs', 'libvirtUri']);
});

test('max_clients changed live is refused (it needs a restart), not reported as applied', async () => {
  const { conf, d } = await setup();
  fs.writeFileSync(conf, base.replace('max_clients = 1024', 'max_clients = 64'));
  const refused = await until('ConfigRejected for max_clients', () => facts(d, 'ConfigRejected')[0]);
  assert.equal(refused.refused.map((r: { key: string }) => r.key), ['maxClients']);
  assert.match(refused.refused[0].reason, 'needs a restart');
  assert.is(status(d).maxClients, 1024);
  assert.is(facts(d, 'ConfigChanged').length, 0);
});

test('an invalid file is kept out: ConfigRejected with file:line, and the running config stays', async () => {
  const { conf, d } = await setup();
  fs.writeFileSync(conf, base.replace('on_conflict = "report"', 'on_conflict = "explode"'));
  const rejected = await until('ConfigRejected', () => facts(d, 'ConfigRejected')[0]);
  assert.match(rejected.error, 'on_conflict');
  assert.match(rejected.error, `${conf}:3`);
  fs.writeFileSync(conf, base + 'file_lockspace_di = "/x"\n');
  await until('a second rejection', () => facts(d, 'ConfigRejected').length === 2);
  assert.match(facts(d, 'ConfigRejected')[1].error, 'did you mean "file_lockspace_dir"');
  assert.is(status(d).onConflict, 'report');
  assert.match(d.stderr, 'config rejected, the running config stays in force');
});

test('a lockspace change while locks are held is refused with the reason and applies once none are', async () => {
  const { dir, conf, d } = await setup();
  const disk = path.join(dir, 'a.img');
  fs.writeFileSync(disk, 'x');
  assert.is(d.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  const other = path.join(dir, 'ls2');
  fs.writeFileSync(conf, base.replace(/file_lockspace_dir = .*/, `file_lockspace_dir = "${other}"`));
  const refused = await until('refusal', () => facts(d, 'ConfigRejected')[0]);
  assert.match(refused.refused[0].reason, 'file_lockspace_dir changed while locks are held');
  assert.match(refused.refused[0].reason, 'release all locks');
  assert.is(status(d).lockspace, path.join(dir, 'ls'));
  // The held lock keeps its name: still refused to another VM via the old lockspace.
  assert.is(d.cli(['acquire', '--vm', '99999999-9999-4999-8999-999999999999', disk]).code, 3);
  assert.is(d.cli(['release', '--vm', UUID1]).code, 0);
  fs.writeFileSync(conf, base.replace(/file_lockspace_dir = .*/, `file_lockspace_dir = "${other}"`) + '# touched\n');
  await until('new lockspace', () => status(d).lockspace === other);
  assert.is(d.cli(['acquire', '--vm', UUID1, disk]).code, 0);
  assert.is(fs.readdirSync(other).filter((f) => !f.startsWith('.')).length, 1);
  assert.ok(fs.existsSync(path.join(other, '.hosts', 'hv-a')), 'the host file moved to the new lockspace');
});

test('rename-replace and delete-recreate of the file are both picked up', async () => {
  const { dir, conf, d } = await setup();
  const tmp = path.join(dir, 'vmlockd.conf.tmp');
  fs.writeFileSync(tmp, base.replace('on_conflict = "report"', 'on_conflict = "suspend"'));
  fs.renameSync(tmp, conf);
  await until('rename-replace', () => status(d).onConflict === 'suspend');
  fs.unlinkSync(conf);
  await new Promise((r) => setTimeout(r, 200));
  fs.writeFileSync(conf, base);
  await until('delete-recreate', () => status(d).onConflict === 'report');
});

test('verify_interval shortened live applies at once, not after the old interval (600 s -> 1 s)', async () => {
  // Started with 600 s: the first round's timer is armed for 600 s.
  const { conf, d } = await setup(3, (t) => t.replace('verify_interval = 10', 'verify_interval = 600'));
  assert.is(status(d).verifyIntervalMs, 600_000);
  const before = status(d).verifiedAt as string;
  fs.writeFileSync(conf, base.replace('verify_interval = 600', 'verify_interval = 1'));
  await until('1 s in force', () => status(d).verifyIntervalMs === 1000);
  // Every round with nothing lost moves verifiedAt; with the old 600 s timer still armed none runs.
  await until('a verification round under the new interval', () => (status(d).verifiedAt as string) > before, 20_000);
});

test('SIGHUP re-reads the config', async () => {
  const { conf, d } = await setup(2);
  fs.writeFileSync(conf, base.replace('verify_interval = 10', 'verify_interval = 7'));
  d.proc!.kill('SIGHUP');
  await until('SIGHUP reload', () => status(d).verifyIntervalMs === 7000);
  await until('the SIGHUP log line', () => d.stderr.includes('SIGHUP received: re-reading the config'));
  assert.ok(d.proc!.exitCode === null, 'still running');
});

test.run();
