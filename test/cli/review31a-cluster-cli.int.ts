// review31a: the aud31 marks through the CLI, on a journal made by the real WaitingFacts (a full disk,
// bound 0/1) and, for --cluster, published into a lockspace as the daemon's publisher writes segments
// (test/helpers/segments.ts publishJournal) and read through the real read cache.
// - local `audit --vm alpha` and `audit --conflicts` list the kept loss / re-take only: the two
//   coalesced facts are missing with no note (the note is printed for --disk only: audit.ts);
// - `audit --cluster --disk` lists the same facts with no note either (cluster-audit.ts);
// - `audit --cluster --timeline` (table) has no note (clusterTimeline drops `incomplete`);
// - local `audit --timeline --csv` has no mark (audit.ts timelineCsv: the intervals only);
// - `audit --cluster --disk D --at T` inside a merged step's window must say what the local audit says
//   (ambiguous): checked, it does (held).
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { JournalError } from '../../src/journal/errors.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { STEPS_KEPT, WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { publishJournal } from '../helpers/segments.js';

const MAIN = path.resolve('dist/main.js');
const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = { resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner: ALPHA, mode: 'exclusive' };
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' });
const lost = (at: string, wallAt?: string) => fact('LeaseLost', at, { ...res, holder: {}, reason: 'replaced', ...(wallAt ? { wallAt } : {}) } as never) as NewFact;
const retaken = (at: string, wallAt?: string) => fact('Reacquired', at, { ...res, source: 'verifier', ...(wallAt ? { wallAt } : {}) } as never) as NewFact;
const root = mkdtempSync(path.join(tmpdir(), 'vmlockd-r31a-cli-'));

function journal(name: string, host: string, during: NewFact[][], steps = 0): string {
  const file = path.join(root, `${name}.db`);
  const j = Journal.open(file, { host });
  j.append([
    { kind: 'DaemonStarted', at: t('09:00:00'), payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } },
    { kind: 'LockAcquired', at: t('09:00:01'), disk: DISK, resource: RES, owner: ALPHA.uuid, ownerName: ALPHA.name, payload: { ...res, source: 'api' } },
  ] as FactRow[]);
  const port = { full: true, append: (r: readonly FactRow[]) => (port.full ? (() => { throw REFUSED; })() : j.append(r)) };
  const wf = new WaitingFacts(port as never, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  for (let i = 0; i < steps; i++) {
    const from = new Date(Date.parse(t('09:20:00')) + i * 1000).toISOString();
    assert.ok(wf.later([step(from, new Date(Date.parse(from) - 2000).toISOString())], REFUSED));
  }
  for (const f of during) assert.ok(wf.later(f, REFUSED));
  wf.stop();
  port.full = false;
  wf.append([]);
  assert.is(wf.pending, 0);
  j.close();
  return file;
}

const env = { ...process.env, HOME: root, VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(root, 'none.sock') };
const audit = (args: string[]) => {
  const r = spawnSync(process.execPath, [MAIN, 'audit', ...args], { encoding: 'utf8', env });
  assert.is(r.status, 0, `audit ${args.join(' ')}: ${r.stderr}`);
  return { out: r.stdout, err: r.stderr, all: r.stdout + r.stderr };
};

const coalesced = journal('coalesced', 'h1', [[lost(t('10:00:00'))], [retaken(t('10:05:00'))], [lost(t('10:10:00'))], [retaken(t('10:15:00'))]]);
const lsC = path.join(root, 'ls-c');
publishJournal(coalesced, lsC, 'h1', '0123456789abcdef');
const cluster = (ls: string, args: string[]) => audit(['--cluster', '--lockspace', ls, '--cache', path.join(root, `cache-${path.basename(ls)}`), ...args]);

test('precondition: local audit --disk notes the coalesced facts', () => {
  assert.match(audit(['--journal', coalesced, '--disk', DISK]).err, /were coalesced/);
});

test('local audit --vm alpha: the list lacks the coalesced loss/re-take, and says so', () => {
  const r = audit(['--journal', coalesced, '--vm', 'alpha']);
  assert.match(r.all, /coalesced/, `--vm alpha shows one loss and one re-take, no note:\n${r.all}`);
});

test('local audit --conflicts: the coalesced LeaseLost is missing, and it says so', () => {
  const r = audit(['--journal', coalesced, '--conflicts']);
  assert.match(r.all, /coalesced|FactsDropped/, `--conflicts lists one LeaseLost (10:10), not the 10:00 one, no note:\n${r.all}`);
});

test('audit --cluster --disk: the same note as the local --disk list', () => {
  const r = cluster(lsC, ['--disk', DISK]);
  assert.match(r.all, /coalesced/, `audit --cluster --disk has no note:\n${r.all}`);
});

test('audit --cluster --disk --at inside the coalesced range: marked, as the local answer is', () => {
  const r = cluster(lsC, ['--disk', DISK, '--at', t('10:02:00')]);
  assert.match(r.all, /coalesced/, r.all);
});

test('audit --cluster --disk --at --csv inside the coalesced range: the mark reaches the CSV (as HIGH 2 locally)', () => {
  const r = cluster(lsC, ['--disk', DISK, '--at', t('10:02:00'), '--csv']);
  assert.match(r.all, /coalesced|incomplete/, `--cluster --at --csv printed an unmarked row:\n${r.all}`);
});

test('audit --cluster --timeline: the coalesced range noted, as the local timeline notes it', () => {
  assert.match(audit(['--journal', coalesced, '--disk', DISK, '--timeline', '--since', t('09:30:00'), '--until', t('10:30:00')]).all, /coalesced/);
  const r = cluster(lsC, ['--disk', DISK, '--timeline', '--since', t('09:30:00'), '--until', t('10:30:00')]);
  assert.match(r.all, /coalesced/, `audit --cluster --timeline has no note:\n${r.all}`);
});

test('local audit --timeline --csv: the coalesced range reaches the CSV (the table has a note, the CSV nothing)', () => {
  const r = audit(['--journal', coalesced, '--disk', DISK, '--timeline', '--since', t('09:30:00'), '--until', t('10:30:00'), '--csv']);
  assert.match(r.all, /coalesced|incomplete/, `--timeline --csv shows alpha held 09:00-10:10, unmarked:\n${r.all}`);
});

test('audit --cluster --at inside a merged step window says what the local audit says (ambiguous)', () => {
  const merged = journal('merged', 'h3', [[step(t('10:10:00'), t('10:00:00'))], [lost(t('10:10:00'), t('10:06:00'))], [step(t('10:10:00'), t('10:02:00'))], [retaken(t('10:10:00'), t('10:05:00'))]], STEPS_KEPT - 1);
  const lsM = path.join(root, 'ls-m');
  publishJournal(merged, lsM, 'h3', 'fedcba9876543210');
  const local = audit(['--journal', merged, '--disk', DISK, '--at', t('10:03:00')]);
  assert.match(local.out, /ambiguous/);
  const r = cluster(lsM, ['--disk', DISK, '--at', t('10:03:00')]);
  assert.match(r.out, /ambiguous/, r.all);
  assert.match(r.out, /stands for 2 steps/, r.all);
});

test.run();
