// Review26d F2 (wait27), as a property: whatever the verifier's facts on a full state directory, and
// wherever the bound of waiting facts falls among them, the fold of what gets journaled (the kept
// prefix, the holding facts coalesced past the bound, the FactsDropped) is exactly the state the
// daemon folded them into: the holders (since, source, generation, what the take saw), the owners'
// holdings and their vouching libvirt. And a state rebuilt from the journal plus foldInto() (a failed
// group commit's reload) is that state too, at any moment. Seeded random sequences.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type Fact, type NewFact } from '../../src/engine/facts.js';
import { fromRow, type FactRowLike, type StoredRowLike } from '../../src/engine/journal-port.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import { JournalError } from '../../src/journal/errors.js';
import { WaitingFacts } from '../../src/daemon/waiting-facts.js';

const REFUSED = new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

/** The state as plain JSON, every map and set in a stable order; the seq left out. */
function plain(s: State): string {
  const sorted = <T>(m: Map<string, T>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify({
    resources: sorted(s.resources).map(([id, r]) => [id, r.ref, r.mode, sorted(r.holders)]),
    owners: sorted(s.owners),
    byInode: sorted(s.byInode).map(([k, v]) => [k, [...v].sort()]),
    unidentified: [...s.unidentified].sort(),
    byOwner: sorted(s.byOwner).map(([k, v]) => [k, [...v].sort()]),
    vouchedBy: sorted(s.vouchedBy),
  });
}

const owner = (i: number) => ({ uuid: `00000000-0000-4000-8000-00000000000${i}`, name: `vm${i}` });
const fields = (r: number) => ({ resource: `/ls/r${r}`, name: `r${r}`, lockspace: '/ls', kind: 'file' as const, disk: `/img/d${r}`, path: `/img/d${r}`, inode: `1:${100 + r}` });
const libvirt = (n: number) => ({ uri: 'qemu:///system', host: `host${n}` });

test('the fold of what is journaled past the bound is the state the daemon had (random sequences)', () => {
  for (let seed = 1; seed <= 400; seed++) {
    const rand = rng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    let clock = 0;
    const at = () => new Date(Date.UTC(2026, 0, 1) + clock++ * 1000).toISOString();
    // The journal before the disk filled: holdings (some shared by two owners) and vouches.
    const prefix: NewFact[] = [];
    const modes = new Map<number, 'exclusive' | 'shared'>();
    const keys: Array<[number, number]> = [];
    for (let r = 0; r < 4; r++) {
      const shared = rand() < 0.4;
      modes.set(r, shared ? 'shared' : 'exclusive');
      const holders = shared ? [0, 1, 2].filter(() => rand() < 0.6) : [Math.floor(rand() * 3)];
      for (const o of holders.length > 0 ? holders : [r % 3]) {
        prefix.push(fact('LockAcquired', at(), { ...fields(r), owner: owner(o), mode: modes.get(r)!, source: 'api', generation: 1, lockIno: `ino${r}` }) as NewFact);
        keys.push([r, o]);
      }
    }
    for (let o = 0; o < 3; o++) if (rand() < 0.7) prefix.push(fact('LibvirtVouched', at(), { owner: owner(o), libvirt: libvirt(0), source: 'virsh' }) as NewFact);
    const base = () => {
      const s = initialState();
      for (const f of prefix) evolve(s, f);
      return s;
    };
    const running = base();
    const j = journal();
    const sf = new WaitingFacts(j, { stageFile: 'x', log: () => {}, remind: () => {}, stored: () => {}, lost: () => {}, max: Math.floor(rand() * 6), vouchOf: (u) => running.vouchedBy.get(u) });
    const steps = 5 + Math.floor(rand() * 40);
    for (let step = 0; step < steps; step++) {
      const batch: NewFact[] = [];
      const n = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < n; i++) {
        const [r, o] = pick(keys);
        const held = running.resources.get(fields(r).resource)?.holders.has(owner(o).uuid) === true;
        if (batch.some((f) => (f.payload as { resource?: string }).resource === fields(r).resource)) continue;
        const t = at();
        const lostFact = fact('LeaseLost', t, { ...fields(r), owner: owner(o), mode: modes.get(r)!, holder: {}, reason: 'replaced' }) as NewFact;
        const retakenFact = fact('Reacquired', t, { ...fields(r), owner: owner(o), mode: modes.get(r)!, source: 'api', generation: 2 + step, lockIno: `ino${r}-${step}` }) as NewFact;
        if (held) {
          batch.push(lostFact);
          if (rand() < 0.5) batch.push(retakenFact); // the round's re-take
        } else if (rand() < 0.6) batch.push(retakenFact); // a pending re-take that succeeds
        else batch.push(lostFact); // a pending re-take that finds another owner
      }
      if (rand() < 0.3) batch.push(fact('ConfigChanged', at(), { changes: [], fingerprint: 'f', trigger: 'watch' }) as NewFact);
      if (batch.length === 0) continue;
      assert.ok(sf.later(batch, REFUSED));
      for (const f of batch) evolve(running, f);
      sf.settle();
      // A failed group commit's reload: the journal (the prefix) and the facts not journaled yet.
      if (rand() < 0.3) {
        const rebuilt = base();
        sf.foldInto((f) => evolve(rebuilt, f));
        assert.is(plain(rebuilt), plain(running), `seed ${seed} step ${step}: a reload differs from the running state`);
      }
    }
    sf.stop();
    j.full = false;
    sf.append([]);
    assert.is(sf.pending, 0);
    const replayed = base();
    for (const row of j.rows) evolve(replayed, fromRow(row) as Fact);
    assert.is(plain(replayed), plain(running), `seed ${seed}: the journal's fold differs from the running state (${j.rows.map((r) => r.kind).join(' ')})`);
    // Nothing journaled goes back in time.
    for (let i = 1; i < j.rows.length; i++) assert.ok(j.rows[i]!.at >= j.rows[i - 1]!.at, `seed ${seed}: times go back at row ${i}`);
  }
});

test.run();
