// aud31 LOW 5 (review30): after a clock relabel, the running daemon's `since` of a re-taken lock
// differed from the journal's fold (status / locks vs audit and the next start). Past the waiting
// facts' bound, a merged ClockStepped relabels a kept Reacquired to the merged step's floor, keeping
// the clock's reading as wallAt (waiting-facts keepStep): the daemon had folded the re-take at 10:15,
// the journal holds it at 10:20 (wallAt 10:15), and evolve took `since` from the label, so the running
// state said 10:15 and the fold 10:20. Now a Reacquired's `since` is its wallAt when it has one: the
// clock's reading when it was taken, the same on both paths.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type NewFact } from '../../src/engine/facts.js';
import { fromRow, type FactRowLike, type StoredRowLike } from '../../src/engine/journal-port.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import { JournalError } from '../../src/journal/errors.js';
import { STEPS_KEPT, WaitingFacts } from '../../src/daemon/waiting-facts.js';

const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
const t = (hms: string) => `2026-11-25T${hms}.000Z`;
const ALPHA = { uuid: '11111111-1111-4111-8111-111111111111', name: 'alpha' };
const res = { resource: '/ls/db', name: 'db', lockspace: '/ls', kind: 'file' as const, disk: '/img/db', path: '/img/db', owner: ALPHA, mode: 'exclusive' as const };
const step = (from: string, to: string) => fact('ClockStepped', from, { from, to, backMs: Date.parse(from) - Date.parse(to), seenBy: 'monotonic' });

function journal() {
  const rows: StoredRowLike[] = [];
  const j = {
    full: true,
    rows,
    append(r: readonly FactRowLike[]): StoredRowLike[] {
      if (j.full) throw REFUSED;
      const out = r.map((x, i) => ({ ...x, seq: rows.length + i + 1, host: 'h' }));
      rows.push(...out);
      return out;
    },
  };
  return j;
}

const sinceOf = (s: State) => s.resources.get('/ls/db')?.holders.get(ALPHA.uuid)?.since;

test('a Reacquired relabelled by a merged step: the running state and the fold of the journal say the same since', () => {
  const j = journal();
  const wf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: 0 });
  const base = [fact('LockAcquired', t('09:00:00'), { ...res, source: 'api', generation: 1, lockIno: 'i' }) as NewFact];
  const running = initialState();
  for (const f of base) evolve(running, f);
  j.full = false;
  j.append(base.map((f) => ({ kind: f.kind, at: f.at, payload: f.payload, resource: res.resource, disk: res.disk, owner: ALPHA.uuid }) as FactRowLike));
  j.full = true;
  // The daemon folds each fact the journal refused (Engine.recordOrWait), then the waiting facts keep it.
  const later = (facts: NewFact[]) => {
    assert.ok(wf.later(facts, REFUSED));
    for (const f of facts) evolve(running, f);
    wf.settle();
  };
  for (let i = 0; i < STEPS_KEPT - 1; i++) {
    const from = new Date(Date.parse(t('09:20:00')) + i * 1000).toISOString();
    later([step(from, new Date(Date.parse(from) - 2000).toISOString())]);
  }
  later([step(t('10:10:00'), t('10:00:00'))]);
  later([fact('LeaseLost', t('10:10:00'), { ...res, holder: {}, reason: 'replaced', wallAt: t('10:01:00') } as never) as NewFact]);
  later([fact('Reacquired', t('10:15:00'), { ...res, source: 'verifier', generation: 2 } as never) as NewFact]);
  later([step(t('10:20:00'), t('10:12:00'))]);
  wf.stop();
  j.full = false;
  wf.append([]);
  assert.is(wf.pending, 0);
  const folded = initialState();
  for (const r of j.rows) evolve(folded, fromRow(r));
  const re = j.rows.map(fromRow).find((f) => f.kind === 'Reacquired')!;
  assert.is(re.at, t('10:20:00'), 'the journal holds the re-take relabelled to the merged floor');
  assert.is(sinceOf(folded), sinceOf(running), `since: running ${sinceOf(running)}, journal's fold ${sinceOf(folded)}`);
  assert.is(sinceOf(running), t('10:15:00'));
});

test('a Reacquired the engine labelled at the floor (wallAt its clock reading): since is the reading on both paths', () => {
  const s = initialState();
  evolve(s, fact('LockAcquired', t('09:00:00'), { ...res, source: 'api', generation: 1, lockIno: 'i' }) as NewFact);
  evolve(s, fact('LeaseLost', t('10:10:00'), { ...res, holder: {}, reason: 'replaced', wallAt: t('10:01:00') } as never) as NewFact);
  evolve(s, fact('Reacquired', t('10:10:00'), { ...res, source: 'verifier', generation: 2, wallAt: t('10:05:00') } as never) as NewFact);
  assert.is(sinceOf(s), t('10:05:00'));
});

test.run();
