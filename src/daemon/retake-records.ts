// When a re-take's own holder record may go over what its take found in the lock file (wait27,
// review26a F3): once the facts of that re-take (its LeaseLost and Reacquired) are journaled, so the
// record never claims more than the journal can vouch for after a crash. Each record by its own facts
// (engine29, review28b LOW): the verifier's re-takes are tied to the mark of their round's facts in the
// waiting facts (or to "journaled" when the round's write succeeded), and a record is written when
// every fact up to that mark is journaled. Before, every kept record was written as soon as no fact
// waited, which also wrote a re-take whose facts were not handed to the journal yet (a command's
// group commit flushed ahead of the round journaled the older waiting facts; the round's own write
// was then refused) or never were (a journal error that is no full disk: logged, not kept).
import type { Fact, NewFact } from '../engine/facts.js';
import type { Locker } from '../engine/locker.js';
import type { WaitingFacts } from './waiting-facts.js';

/** Writes each kept re-take record whose facts are journaled: the start's once all the start's facts are, the verifier's by their own mark. */
export function writeJournaledRetakes(locker: Pick<Locker, 'recordRetakes'>, waiting: Pick<WaitingFacts, 'journaledUpTo' | 'startPending'>): number {
  return locker.recordRetakes((r) => (r.running ? r.ticket !== undefined && waiting.journaledUpTo(r.ticket) : waiting.startPending === 0));
}

/**
 * The verifier's round facts through `record` (the daemon's later(): journaled, or kept waiting for
 * room, which calls `kept` with their mark), then its re-takes are tied to them and the records
 * whose facts are journaled are written. A round whose facts are neither (the error is logged) ties
 * nothing: those records stay unwritten in this process, the proof stays in the lock file, and the
 * next start reports the loss.
 */
export function recordRound(
  locker: Pick<Locker, 'recordRetakes' | 'tieRetakes'>,
  waiting: Pick<WaitingFacts, 'journaledUpTo' | 'startPending'>,
  facts: readonly NewFact[],
  record: (facts: readonly NewFact[], kept: (mark: number) => void) => readonly Fact[],
): readonly Fact[] {
  let mark: number | undefined;
  const stored = record(facts, (m) => (mark = m));
  const retaken = facts.filter((f) => f.kind === 'Reacquired').map((f) => (f.payload as { resource: string }).resource);
  // Journaled with this write: every fact taken to wait before it went ahead of it (mark 0: none).
  if (stored.length > 0) locker.tieRetakes(retaken, 0);
  else if (mark !== undefined) locker.tieRetakes(retaken, mark);
  writeJournaledRetakes(locker, waiting);
  return stored;
}
