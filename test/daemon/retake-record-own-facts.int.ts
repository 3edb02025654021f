// engine29 item 2 (review28b LOW): Locker.recordRetakes() wrote EVERY kept re-take record once no
// fact waited (daemon.ts), not only those whose LeaseLost and Reacquired were journaled. Invariant: a
// holder record on the lockspace never claims more than the journal can vouch for after a crash
// (wait27). Two ways it did:
// - the verifier's round journals through Engine.recordOrWait, which first flushes the group commit
//   of a command in flight: that append carries the older waiting facts (re-take X's), they are all
//   journaled, nothing waits for a moment, and every record was written, re-take Y's too (taken in
//   this round, its facts not handed to the journal yet); Y's own write is then refused (the disk is
//   full again) and a SIGKILL leaves Y's record naming this host with no loss journaled;
// - a round whose write fails with an error that is no full disk (logged, not kept): its record was
//   written with the next journaled round.
// Now each record is tied to its own facts (src/daemon/retake-records.ts: the waiting facts' mark).
// Real lock files (native OFD locks), the engine, the waiting facts and the daemon's wiring; the
// journal a port that refuses writes. Fails before (Y's record is written); passes after.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fact, type Fact, type NewFact } from '../../src/engine/facts.js';
import { decodeExclusive } from '../../src/engine/holder-record.js';
import type { FactRowLike, StoredRowLike } from '../../src/engine/journal-port.js';
import { Locker, resourceFields } from '../../src/engine/locker.js';
import { native } from '../../src/engine/native.js';
import { Engine } from '../../src/engine/pipeline.js';
import { resolveDisk } from '../../src/engine/resolve.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import type { Intent, Owner } from '../../src/engine/types.js';
import { JournalError } from '../../src/journal/errors.js';
import { WaitingFacts } from '../../src/daemon/waiting-facts.js';
import { recordRound, writeJournaledRetakes } from '../../src/daemon/retake-records.js';
import { tmpdir } from '../helpers/daemon.js';

const vm1: Owner = { uuid: '00000001-0000-4000-8000-000000000000', name: 'vm1' };
const vmB: Owner = { uuid: '00000002-0000-4000-8000-000000000000', name: 'vmB' };
const tick = () => new Promise((r) => setImmediate(r));

function head(file: string) {
  const buf = Buffer.alloc(512);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, buf, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
  return decodeExclusive(buf);
}

/** A journal port: `room` appends succeed (Infinity: all), then it refuses them as a full disk does; `fail` throws another error once. */
function journal() {
  const rows: StoredRowLike[] = [];
  const j = {
    room: 0,
    fail: false,
    rows,
    append(r: readonly FactRowLike[]): StoredRowLike[] {
      if (j.fail) {
        j.fail = false;
        throw new Error('SQLITE_IOERR: disk I/O error');
      }
      if (j.room <= 0) throw new JournalError('VMLOCKD_ERR_JOURNAL_WRITE', "cannot write to the journal's staging file x: ENOSPC");
      j.room--;
      const out = r.map((x, i) => ({ ...x, seq: rows.length + i + 1, host: 'hv-a' }));
      rows.push(...out);
      return out;
    },
  };
  return j;
}

/** hv-a holds X and Y for vm1; both locks go (a cluster filesystem dropped them) while hv-b takes and frees each: its record stays. */
function setup() {
  const dir = tmpdir('vmlockd-engine29-retake-');
  const lockspace = path.join(dir, 'lockspace');
  const at = () => new Date().toISOString();
  const j = journal();
  const a = new Locker('hv-a', { fileLockspaceDir: lockspace });
  const b = new Locker('hv-b', { fileLockspaceDir: lockspace });
  const waiting = new WaitingFacts(j, {
    stageFile: 'x-stage',
    log: () => {},
    remind: () => {},
    // The daemon's wiring (daemon.ts): some waiting facts are journaled.
    stored: () => writeJournaledRetakes(a, waiting),
    lost: () => {},
  });
  const engine = new Engine({ host: 'hv-a', journal: waiting, locker: a, rules: { fileLockspaceDir: lockspace } as never, state: initialState(), reload: () => initialState(), keep: (f, e) => waiting.later(f, e) });
  const stateA: State = initialState();
  const stateB: State = initialState();
  const run = (l: Locker, state: State, intents: Intent[]) => {
    const p = l.prepare(intents, { at: at(), source: 'test' });
    assert.is(p.outcome.status, 'ok', JSON.stringify(p.outcome));
    p.commit();
    for (const f of p.facts) evolve(state, f);
  };
  const disks = ['X', 'Y'].map((n) => {
    const img = path.join(dir, `${n}.img`);
    fs.writeFileSync(img, '');
    return resolveDisk({ path: img, mode: 'exclusive' }, { fileLockspaceDir: lockspace }, initialState());
  });
  for (const disk of disks) run(a, stateA, [{ kind: 'lock', disk, owner: vm1, how: 'take' }]);
  for (const d of a.descriptors()) assert.ok(native.ofdSetLk(d.fd, 'unlock', 0, 0));
  const intruder: Record<string, unknown> = {};
  for (const disk of disks) {
    run(b, stateB, [{ kind: 'lock', disk, owner: vmB, how: 'take' }]);
    run(b, stateB, [{ kind: 'unlock', resource: disk.resource, path: disk.resource.canonical, owner: vmB, how: 'drop' }]);
    intruder[disk.resource.id] = head(disk.resource.id);
  }
  assert.equal(a.verify().map((v) => v.status), ['lost', 'lost']);
  /** One verifier round re-taking `disk` (Locker.retake, the facts the verifier makes). */
  const retake = (disk: (typeof disks)[number]): NewFact[] => {
    const now = at();
    const r = a.retake(disk.resource, 'exclusive', [{ ...vm1, since: now }], now);
    assert.ok(r.ok && !r.kept, JSON.stringify(r));
    const fields = resourceFields(disk.resource, disk.resource.canonical);
    return [
      fact('LeaseLost', now, { ...fields, owner: vm1, mode: 'exclusive', holder: { host: 'hv-b' }, reason: 'replaced' } as never) as NewFact,
      fact('Reacquired', now, { ...fields, owner: vm1, mode: 'exclusive', source: 'api', ...(r.gen !== undefined ? { generation: r.gen } : {}) } as never) as NewFact,
    ];
  };
  /** The daemon's verifier `record` (daemon.ts later(): errors logged, not thrown). */
  const record = (facts: readonly NewFact[]) =>
    recordRound(a, waiting, facts, (f, kept) => {
      try {
        return engine.recordOrWait(f, (timed, e) => {
          if (!waiting.later(timed, e)) return false;
          kept(waiting.mark);
          return true;
        });
      } catch {
        return [] as Fact[];
      }
    });
  const close = () => {
    waiting.stop();
    engine.stop();
    a.closeAll();
    b.closeAll();
  };
  return { j, a, waiting, engine, disks, intruder, retake, record, close };
}

test("two re-takes, the first's facts journaled (a command's group commit carried them) while the second's wait: only the first's record is written", async () => {
  const s = setup();
  const [x, y] = s.disks as [(typeof s.disks)[number], (typeof s.disks)[number]];
  try {
    // Round 1: X re-taken; the disk is full: its facts wait, its record waits for them.
    s.record(s.retake(x));
    assert.is(s.waiting.pending, 2);
    assert.equal(head(x.resource.id), s.intruder[x.resource.id], 'X\'s record written while its facts wait');
    // A command in flight (its group commit not flushed yet); room for one write.
    let reply: { code?: string } | undefined;
    s.engine.rejectThen('json', new Error('bad line'), 'x', (r) => (reply = r as never));
    s.j.room = 1;
    // Round 2: Y re-taken. Its journaling flushes the command first, which carries X's facts (the one
    // write there is room for); Y's own write is refused: they wait.
    s.record(s.retake(y));
    assert.equal(s.j.rows.map((r) => `${r.kind}`), ['LeaseLost', 'Reacquired', 'InputRejected'], 'X\'s facts and the command are journaled');
    assert.is(s.waiting.pending, 2, 'Y\'s facts wait');
    assert.is(head(x.resource.id)?.host, 'hv-a', 'X\'s facts are journaled: its record is written');
    assert.equal(head(y.resource.id), s.intruder[y.resource.id], `Y's record was written while its facts wait: ${JSON.stringify(head(y.resource.id))}`);
    // Room again: Y's facts are journaled, then its record is written.
    s.j.room = Infinity;
    s.waiting.append([]);
    assert.is(s.waiting.pending, 0);
    assert.is(head(y.resource.id)?.host, 'hv-a');
    await tick();
    assert.ok(reply !== undefined);
  } finally {
    s.close();
  }
});

test('a re-take whose facts the journal failed to take (an error that is no full disk) never gets its record from a later round', () => {
  const s = setup();
  const [x, y] = s.disks as [(typeof s.disks)[number], (typeof s.disks)[number]];
  try {
    s.j.room = Infinity;
    // Round 1: Y re-taken; the write fails (logged, not kept): its facts are neither journaled nor waiting.
    s.j.fail = true;
    s.record(s.retake(y));
    assert.is(s.waiting.pending, 0);
    assert.is(s.j.rows.length, 0);
    // Round 2: X re-taken, journaled.
    s.record(s.retake(x));
    assert.is(s.j.rows.length, 2);
    assert.is(head(x.resource.id)?.host, 'hv-a', 'X\'s facts are journaled: its record is written');
    assert.equal(head(y.resource.id), s.intruder[y.resource.id], `Y's record was written though its facts are in no journal: ${JSON.stringify(head(y.resource.id))}`);
  } finally {
    s.close();
  }
});

test.run();
