// review31a (aud31 M2 across the cluster): the one-journal audit marks a moment or window inside a
// FactsDropped's `coalesced` range, but the cluster answers built from the same chains drop the mark:
// - clusterTimeline (audit --cluster --timeline, every format) builds intervals/events/gaps from each
//   chain's timeline() and never copies its `incomplete` (src/cli/cluster-query.ts timelineOf);
// - clusterOverlaps (audit --cluster --overlaps) reads claims from the kept facts only. Here alpha
//   (host h1) lost the lease at 10:00 (journaled before the bound), re-took it at 10:05 and lost it
//   again at 10:10 (coalesced: only the 10:10 loss and the 10:15 re-take are kept), while beta on h2
//   held the disk 10:06-10:08. The daemons' own view: both held it 10:06-10:08, an overlap. The
//   journal says alpha had nothing from 10:00 to 10:15, so --overlaps answers "no overlaps: no two
//   hosts held one disk", with no word of the coalesced range: a split brain hidden.
// The chains here are the journals themselves (a cluster chain is a journal in the read cache, read by
// the same Journal class; ClusterSources built directly, no publication), so this is the query layer.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { JournalError } from '../../src/journal/errors.js';
import { Journal, type FactRow } from '../../src/journal/journal.js';
import { WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { holdersAnswer, timeline } from '../../src/cli/audit-query.js';
import { clusterOverlaps, clusterTimeline, type ClusterSources } from '../../src/cli/cluster-query.js';
import { formatClusterTimeline, formatOverlaps } from '../../src/cli/cluster-audit.js';
import type { CachedChain } from '../../src/cli/cluster-cache.js';

const DISK = '/img/db.qcow2';
const RES = '/ls/db';
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const BETA = { uuid: '22222222-2222-4222-8222-222222222222', name: 'beta' };
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const res = (owner: typeof ALPHA) => ({ resource: RES, name: 'db', lockspace: '/ls', kind: 'file', disk: DISK, path: DISK, owner, mode: 'exclusive' });
const lost = (at: string) => fact('LeaseLost', at, { ...res(ALPHA), holder: {}, reason: 'replaced' } as never) as NewFact;
const retaken = (at: string) => fact('Reacquired', at, { ...res(ALPHA), source: 'verifier' } as never) as NewFact;
const start = (at: string): FactRow => ({ kind: 'DaemonStarted', at, payload: { pid: 1, held: 0, version: 't', lockspace: '/ls' } });
const row = (kind: 'LockAcquired' | 'LockReleased', at: string, o: typeof ALPHA): FactRow => ({
  kind, at, disk: DISK, resource: RES, owner: o.uuid, ownerName: o.name, payload: { ...res(o), source: 'api', ...(kind === 'LockReleased' ? { reason: 'released' } : {}) },
});
const dir = () => mkdtempSync(join(tmpdir(), 'vmlockd-r31a-cluster-'));

/** Host h1: alpha holds the disk; then the disk is full, max 1: the first loss waits, the rest are past the bound. */
function h1(): Journal {
  const j = Journal.open(join(dir(), 'journal.db'), { host: 'h1' });
  j.append([start(t('09:00:00')), row('LockAcquired', t('09:00:01'), ALPHA)]);
  const port = { full: true, append: (r: readonly FactRow[]) => (port.full ? (() => { throw REFUSED; })() : j.append(r)) };
  const wf = new WaitingFacts(port as never, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 1 });
  for (const f of [lost(t('10:00:00')), retaken(t('10:05:00')), lost(t('10:10:00')), retaken(t('10:15:00'))]) assert.ok(wf.later([f], REFUSED));
  wf.stop();
  port.full = false;
  wf.append([]);
  assert.is(wf.pending, 0);
  return j;
}

function h2(): Journal {
  const j = Journal.open(join(dir(), 'journal.db'), { host: 'h2' });
  j.append([start(t('09:00:00')), row('LockAcquired', t('10:06:00'), BETA), row('LockReleased', t('10:08:00'), BETA)]);
  return j;
}

function cluster(): ClusterSources {
  const chain = (host: string, j: Journal) => {
    const last = [...j.readAfter(0)].at(-1)!;
    return { chain: { host, journal: `${host}-j`, file: '', firstAt: t('09:00:00'), last: { seq: last.seq, at: last.at, kind: last.kind }, facts: last.seq } as CachedChain, journal: j };
  };
  return { hosts: [{ host: 'h1', alive: true, chains: [chain('h1', h1())] }, { host: 'h2', alive: true, chains: [chain('h2', h2())] }], now: t('11:00:00') };
}

test('precondition: the one-journal audit marks 10:06 and the window on h1 (aud31 M2)', () => {
  const j = h1();
  const kinds = [...j.readAfter(0)].map((f) => f.kind);
  assert.equal(kinds, ['DaemonStarted', 'LockAcquired', 'LeaseLost', 'LeaseLost', 'Reacquired', 'FactsDropped']);
  assert.ok(holdersAnswer({ live: j }, DISK, t('10:06:00')).incomplete !== undefined);
  assert.ok(timeline({ live: j }, DISK, t('09:30:00'), t('10:30:00')).incomplete !== undefined);
});

test('audit --cluster --timeline keeps the coalesced mark', () => {
  const tl = clusterTimeline(cluster(), DISK, t('09:30:00'), t('10:30:00'));
  const json = JSON.stringify(tl);
  const table = formatClusterTimeline(tl, 120);
  assert.ok(/coalesced|incomplete/.test(json) && /coalesced/.test(table), `the cluster timeline lost the mark:\n${table}`);
});

test('audit --cluster --overlaps over a coalesced range does not say "no overlaps" unmarked', () => {
  const cs = cluster();
  const found = clusterOverlaps(cs, DISK, t('09:30:00'), t('10:30:00'));
  const text = formatOverlaps(found, 'table', cs);
  assert.ok(found.length > 0 || /coalesced|incomplete/.test(text), `alpha held the disk 10:05-10:10 in its daemon (re-take coalesced away), beta 10:06-10:08 on h2; --overlaps said:\n${text}`);
});

test.run();
