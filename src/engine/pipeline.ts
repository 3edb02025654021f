// The pipeline: commands from every source -> resolve -> decide -> locker -> journal -> evolve -> reply.
//
// Lanes: commands run serially per VM (owner uuid) and in parallel across VMs. A lane cannot be keyed
// by resource before the paths are resolved (resolution is I/O), and one command may name several
// disks that must be taken all or nothing; so the lane is the owner, and the critical section
// (decide, locker, state) runs synchronously, which makes it atomic with respect to every other lane.
// See docs/architecture.md, "Lanes".
//
// Group commit: the facts of every command handled in one turn of the event loop are journaled in
// one SQLite transaction before any of those commands is answered (invariant 1).
import { from, mergeMap, Observable, of, Subject, Subscription, catchError, type OperatorFunction } from './rx.js';
import { BadInputError, VmlockdError } from './errors.js';
import { fact, type Fact, type NewFact } from './facts.js';
import { appendFacts, type JournalPort } from './journal-port.js';
import type { Locker, Outcome, Prepared } from './locker.js';
import { withRefusalSeqs } from './conflict-line.js';
import { decide } from './decide.js';
import { plan } from './plan.js';
import { blockdevPaths, resolveCommand, wellFormedOwner, type BlockdevNames, type NamingRules } from './resolve.js';
import { evolve, type State } from './state.js';
import { learnIdentities } from './identity-learn.js';
import { FactClock, type ClockStep, type Stamp } from './fact-clock.js';
import type { Command, Intent, ResolvedCommand, VmEvent } from './types.js';

export type Reply =
  | Outcome
  | {
      readonly status: 'error';
      readonly code: string;
      readonly message: string;
      /** For a failed system call: its errno name (ENOENT, EBADFD) and which call ("open", "fcntl(F_OFD_SETLK)"). */
      readonly errno?: string;
      readonly syscall?: string;
    };

interface Job {
  readonly command: Command;
  readonly done: (reply: Reply) => void;
}

interface Pending {
  readonly prepared: Prepared;
  readonly done: (reply: Reply) => void;
  /** How many of the batch's facts are this command's. */
  readonly count: number;
}

export interface EngineOptions {
  readonly host: string;
  readonly journal: JournalPort;
  readonly locker: Locker;
  rules: NamingRules;
  readonly state: State;
  /** Rebuild the state from the journal (used when a group commit fails and the optimistic state must be dropped). */
  readonly reload: () => State;
  /** Called with every batch of durable facts, after the commands are answered. */
  readonly onFacts?: (facts: readonly Fact[]) => void;
  /** Called with every resolved command before it is decided (the verifier cancels a pending re-take on a release). */
  readonly onCommand?: (command: ResolvedCommand) => void;
  readonly log?: (level: 'info' | 'warning' | 'error', msg: string) => void;
  /** Looks up the LVM / SCSI names of `/dev` disks (runs lvs, scsi_id); without it such disks are refused. */
  readonly blockdevNames?: (paths: readonly string[], rules: NamingRules) => Promise<BlockdevNames>;
  /** Largest number of facts in one group commit. */
  readonly maxBatch?: number;
  /** Every answered command with its reply and how long it took from submit to reply (the daemon's metrics). */
  readonly onReply?: (command: Command, reply: Reply, seconds: number) => void;
  /**
   * The facts' clock (src/engine/fact-clock.ts): made by the daemon from the journal's last fact, so
   * times never go back along the journal across a restart either. Default: a clock with no past.
   */
  readonly clock?: FactClock;
  /**
   * A group commit the journal refused carried facts no client waits for that must not be lost with
   * it (ClockStepped: the clock watch's, or one seen ahead of a command's facts): `keep` takes them,
   * given their journal times, to journal later ahead of every later fact (the daemon's
   * WaitingFacts.later: a full disk; true when kept), as recordOrWait's `wait` does. Without it, or
   * when it returns false, they are lost with the batch (logged).
   */
  readonly keep?: (facts: readonly NewFact[], e: unknown) => boolean;
}

/**
 * Serial within a key, parallel across keys, no cap (a capped mergeMap after groupBy drops items).
 *
 * Not `mergeMap` over one promise per item: with tens of thousands of commands in flight, mergeMap's
 * array of inner subscriptions made every completion O(n). Here an idle lane runs its item at once
 * (synchronously, if the work is synchronous) and a busy lane queues it; a lane is forgotten when its
 * queue drains, so a daemon that has seen a million VMs keeps no state for them.
 *
 * `work` may return `SYNC_DONE` instead of an Observable: the item was handled synchronously and
 * emits nothing (the engine's common case), so no inner Observable or Subscription is made for it.
 */
/** What `inLanes`' work returns for an item it handled synchronously, emitting nothing. */
export const SYNC_DONE = Symbol('sync-done');

export function inLanes<T, R>(keyOf: (t: T) => string, work: (t: T) => Observable<R> | typeof SYNC_DONE): OperatorFunction<T, R> {
  return (source) =>
    new Observable<R>((subscriber) => {
      const lanes = new Map<string, T[]>();
      const active = new Set<Subscription>();
      let sourceDone = false;
      const finishIfIdle = () => {
        if (sourceDone && lanes.size === 0) subscriber.complete();
      };
      // Run a lane's queue head; keep going while items finish synchronously (a loop, not recursion,
      // so 50,000 queued items cannot overflow the stack); stop at the first asynchronous one, whose
      // completion resumes the lane.
      const drain = (key: string): void => {
        const queue = lanes.get(key)!;
        for (;;) {
          let w: Observable<R> | typeof SYNC_DONE;
          try {
            w = work(queue[0]!);
          } catch (e) {
            subscriber.error(e);
            return;
          }
          if (w === SYNC_DONE) {
            queue.shift();
            if (queue.length === 0) {
              lanes.delete(key);
              finishIfIdle();
              return;
            }
            continue;
          }
          let sync = true;
          let finishedSync = false;
          const inner = new Subscription();
          active.add(inner);
          inner.add(
            w.subscribe({
              next: (v) => subscriber.next(v),
              error: (e: unknown) => subscriber.error(e),
              complete: () => {
                active.delete(inner);
                queue.shift();
                if (sync) finishedSync = true;
                else resume(key);
              },
            }),
          );
          sync = false;
          if (!finishedSync) return;
          if (queue.length === 0) {
            lanes.delete(key);
            finishIfIdle();
            return;
          }
        }
      };
      const resume = (key: string): void => {
        if (lanes.get(key)!.length === 0) {
          lanes.delete(key);
          finishIfIdle();
        } else {
          drain(key);
        }
      };
      const sub = source.subscribe({
        next: (item) => {
          const key = keyOf(item);
          const queue = lanes.get(key);
          if (queue) {
            queue.push(item);
            return;
          }
          lanes.set(key, [item]);
          drain(key);
        },
        error: (e: unknown) => subscriber.error(e),
        complete: () => {
          sourceDone = true;
          finishIfIdle();
        },
      });
      return () => {
        sub.unsubscribe();
        for (const s of active) s.unsubscribe();
      };
    });
}

export class Engine {
  state: State;
  private readonly input = new Subject<Job>();
  private readonly subscription: Subscription;
  private batch: Pending[] = [];
  private batchFacts: NewFact[] = [];
  private flushScheduled = false;
  private stopped = false;
  private readonly maxBatch: number;

  private readonly opts: EngineOptions;
  /** Facts' times never go back along the journal (issue 18.2), across a wall clock step either (decision 0029). */
  private readonly clock: FactClock;

  constructor(opts: EngineOptions) {
    this.opts = { ...opts };
    this.clock = opts.clock ?? new FactClock();
    this.state = opts.state;
    this.maxBatch = opts.maxBatch ?? 2000;
    this.subscription = this.input
      .pipe(
        inLanes(
          (job) => job.command.owner.uuid,
          (job) => {
            // A /dev disk under an LVM or SCSI lockspace is named by running lvs / scsi_id: look
            // those up first, off the critical section; every other command stays synchronous, and
            // is handled here without an Observable of its own (SYNC_DONE).
            let paths: string[];
            try {
              paths = this.opts.blockdevNames ? blockdevPaths(job.command, this.opts.rules) : [];
              if (paths.length === 0) {
                this.handle(job);
                return SYNC_DONE;
              }
            } catch (e) {
              // Per command: one failure becomes a fact and a reply; the lane and the pipeline live on.
              this.fail(job, e);
              return SYNC_DONE;
            }
            return this.lookUpThenHandle(job, paths, this.opts.rules);
          },
        ),
      )
      .subscribe({
        error: (e: unknown) => opts.log?.('error', `pipeline stopped: ${(e as Error).stack ?? e}`),
      });
  }

  /** Submit one command; resolves once its facts are durable (or it was refused / failed). */
  submit(command: Command): Promise<Reply> {
    return new Promise<Reply>((resolve) => this.dispatch(command, resolve));
  }

  /**
   * `submit` without a promise: `done` is called once the command's facts are durable (or it was
   * refused / failed), possibly before this returns.
   */
  dispatch(command: Command, done: (reply: Reply) => void): void {
    if (this.stopped) return done({ status: 'error', code: 'VMLOCKD_ERR_UNREACHABLE', message: 'vmlockd is stopping' });
    const onReply = this.opts.onReply;
    if (!onReply) return this.input.next({ command, done });
    const t0 = performance.now();
    this.input.next({
      command,
      done: (reply) => {
        onReply(command, reply, (performance.now() - t0) / 1000);
        done(reply);
      },
    });
  }

  /** plan() an event and submit its commands in order; one reply per command. */
  async submitEvent(event: VmEvent): Promise<Reply[]> {
    return Promise.all(plan(event).map((c) => this.submit(c)));
  }

  /**
   * `submitEvent` without promises (the JSON-lines ingest, one call per line): `done` gets one reply
   * per planned command, in order, once every one is answered.
   */
  dispatchEvent(event: VmEvent, done: (replies: Reply[]) => void): void {
    const commands = plan(event);
    if (commands.length === 0) return done([]);
    if (commands.length === 1) return this.dispatch(commands[0]!, (r) => done([r]));
    const replies: Reply[] = new Array<Reply>(commands.length);
    let left = commands.length;
    commands.forEach((c, i) =>
      this.dispatch(c, (r) => {
        replies[i] = r;
        if (--left === 0) done(replies);
      }),
    );
  }

  /** Journal a rejected input (bad line, bad frame) so it shows in the audit trail. Changes no lock. */
  reject(source: string, error: unknown, raw?: string): Reply {
    return this.rejected(source, error, raw, () => {});
  }

  /**
   * `reject` for an answer that, like any command's reply, waits for its InputRejected fact's
   * group commit: `done` gets the rejection once the fact is durable, or, if the journal could not
   * record it, the journal's error naming the rejection (VMLOCKD_ERR_JOURNAL). Changes no lock.
   */
  rejectThen(source: string, error: unknown, raw: string | undefined, done: (reply: Reply) => void): void {
    this.rejected(source, error, raw, done);
  }

  private rejected(source: string, error: unknown, raw: string | undefined, done: (reply: Reply) => void): Reply {
    const code = error instanceof VmlockdError ? error.code : 'VMLOCKD_ERR_BAD_INPUT';
    const message = error instanceof Error ? error.message : String(error);
    const t = this.now();
    const f = withWall(fact('InputRejected', t.at, {
      source,
      code,
      message,
      ...(raw !== undefined ? { raw: raw.length > 4096 ? raw.slice(0, 4096) + '…' : raw } : {}),
    }), t);
    const reply: Reply = { status: 'error', code, message };
    this.enqueue([f], { facts: [f], outcome: { status: 'ok', acquired: [], released: [], already: [], free: [] }, commit: () => {}, abort: () => {} }, (r) => done(unrecorded(reply, r)));
    return reply;
  }

  /** Journal facts produced outside a command (start-up, recovery, shutdown) and fold them in. */
  record(facts: readonly NewFact[]): Fact[] {
    return this.recordOrWait(facts, () => false);
  }

  /**
   * `record` for facts no client waits for (the verifier's, a reload's): if the journal refuses the
   * write and `wait` takes the facts (given their journal times; it returns true), they are folded in
   * as if journaled and [] is returned; `wait` keeps them for a later append. Otherwise the error is
   * thrown and nothing is folded.
   */
  recordOrWait(facts: readonly NewFact[], wait: (timed: readonly NewFact[], e: unknown) => boolean): Fact[] {
    this.flush();
    // A copy of its own (monotone may hand back the caller's array; `wait` may keep it).
    const timed = [...this.monotone(facts)];
    let stored: Fact[];
    try {
      stored = appendFacts(this.opts.journal, timed);
    } catch (e) {
      if (!wait(timed, e)) throw e;
      for (const f of timed) evolve(this.state, f);
      return [];
    }
    for (const f of stored) evolve(this.state, f);
    this.opts.onFacts?.(stored);
    return stored;
  }

  /**
   * Looks the /dev disks' names up (lvs / scsi_id) under `rules`, then handles the command, but only
   * if those rules are still the ones in force: a reload of lvm_lockspace_dir or scsi_lockspace_dir
   * that lands while lvs runs would otherwise have a name looked up in the old directory taken while
   * the daemon says the new one is in force, and a host on the new directory could take the same LV
   * (review25a F5). The check and the critical section run in one turn of the event loop, as does a
   * reload, so no change can fall between them; after a change the lookup is done again.
   */
  private lookUpThenHandle(job: Job, paths: readonly string[], rules: NamingRules): Observable<void> {
    return from(this.opts.blockdevNames!(paths, rules)).pipe(
      mergeMap((names) => {
        const now = this.opts.rules;
        if (sameRules(now, rules)) return of(this.handle(job, names));
        this.opts.log?.('info', `the naming rules changed (a config reload) while ${paths.join(', ')} were looked up: looking up again under the rules now in force`);
        const again = blockdevPaths(job.command, now);
        return again.length === 0 ? of(this.handle(job)) : this.lookUpThenHandle(job, again, now);
      }),
      catchError((e: unknown) => of(this.fail(job, e))),
    );
  }

  /**
   * Journal the identities of held disks that had none and now exist (IdentityLearned) and fold them
   * in at once, ahead of whatever comes next. Each command does this before it resolves; the
   * verifier's round does it too, so a disk created under its lock is known by identity before it
   * can be renamed away. Returns the facts (empty in the common case: one Set size check).
   */
  learn(source: string): readonly NewFact[] {
    if (this.state.unidentified.size === 0) return [];
    const t = this.now();
    const learnt = learnIdentities(this.state, t.at, source).map((f) => withWall(f, t));
    if (learnt.length > 0) {
      this.enqueue(learnt, { facts: learnt, outcome: { status: 'ok', acquired: [], released: [], already: [], free: [] }, commit: () => {}, abort: () => {} }, () => {});
    }
    return learnt;
  }

  /** New naming rules (a config reload while no lock is held). */
  setRules(rules: NamingRules): void {
    this.opts.rules = rules;
  }

  /** Stop taking commands and journal what is pending. */
  stop(): void {
    this.stopped = true;
    this.flush();
    this.subscription.unsubscribe();
  }

  private handle(job: Job, blockdev?: BlockdevNames): void {
    const { command } = job;
    // A held disk that had no identity and now exists is known by it before this command resolves:
    // else its hard link would be another disk to it (review25a F1).
    if (command.kind !== 'observe') this.learn(command.source);
    const resolved = resolveCommand(command, this.opts.rules, this.state, blockdev);
    this.opts.onCommand?.(resolved);
    const intents = decide(resolved, this.state, this.opts.host);
    // A resource released earlier in this batch still has its description open until the batch
    // commits; taking it again now would conflict with ourselves. Commit the batch first.
    if (this.anyTakesHeld(intents)) this.flush();
    // The daemon's clock, not the command's `at`: a client's clock or a late report must not put a
    // fact before the ones journaled ahead of it (the state follows the journal's order; so does audit).
    const quiet = (command.kind === 'acquire' || command.kind === 'check') && command.quiet === true;
    const t = this.now();
    const prepared = this.opts.locker.prepare(intents, quiet ? { at: t.at, source: command.source, quiet } : { at: t.at, source: command.source });
    const facts = withClientAt(prepared.facts, command.clientAt);
    this.enqueue(t.wall === undefined ? facts : facts.map((f) => withWall(f, t)), prepared, job.done);
  }

  /**
   * Now, on the daemon's clock, never before the last fact's time. A step back the clock shows now
   * is journaled first (ClockStepped), ahead of the fact this time is for.
   */
  private now(): Stamp {
    const t = this.clock.now();
    this.journalSteps(this.clock.steps());
    return t;
  }

  /**
   * Looks at the wall clock against the monotonic one (the daemon's timer, every second): a step back
   * is journaled and logged when it happens, not at the next command, and its window is tight.
   */
  watchClock(): void {
    if (this.stopped) return;
    this.clock.look();
    this.journalSteps(this.clock.steps());
  }

  private journalSteps(steps: readonly ClockStep[]): void {
    for (const s of steps) {
      const f = stepFact(s);
      this.enqueue([f], { facts: [f], outcome: { status: 'ok', acquired: [], released: [], already: [], free: [] }, commit: () => {}, abort: () => {} }, () => {});
    }
  }

  /**
   * Facts made elsewhere (start-up, the verifier, shutdown) with their maker's reading of the clock:
   * labelled never before the last fact's time too, keeping that reading as wallAt after a step. A
   * step the clock shows now comes first, as a ClockStepped.
   */
  private monotone(facts: readonly NewFact[]): readonly NewFact[] {
    this.clock.look();
    const steps = this.clock.steps();
    // A start's step comes right after its DaemonStarted: audit reads the fact before a start as the
    // end of the previous run (a DaemonStopped there is a clean stop).
    const lead = steps.length > 0 && facts[0]?.kind === 'DaemonStarted' ? 1 : 0;
    let out: NewFact[] | undefined = steps.length > 0 ? [] : undefined;
    const placeSteps = () => out!.push(...steps.splice(0).map(stepFact));
    for (let i = 0; i < facts.length; i++) {
      if (i === lead && steps.length > 0) placeSteps();
      const f = facts[i]!;
      const t = f.kind === 'ClockStepped' ? { at: f.at } : this.clock.stamp(f.at);
      if (t.at === f.at && t.wall === undefined) {
        out?.push(f);
        continue;
      }
      // A copy only from the first fact that is relabelled.
      out ??= facts.slice(0, i);
      out.push(withWall({ ...f, at: t.at } as NewFact, t));
    }
    if (steps.length > 0) placeSteps();
    return out ?? facts;
  }

  private anyTakesHeld(intents: readonly Intent[]): boolean {
    for (const i of intents) if (i.kind === 'lock' && i.how === 'take' && this.opts.locker.isHeld(i.disk.resource.id)) return true;
    return false;
  }

  private enqueue(facts: readonly NewFact[], prepared: Prepared, done: (r: Reply) => void): void {
    // Later commands of this batch must see this one's effect before it is durable, or two of them
    // could both be granted one resource; if the commit fails the state is rebuilt from the journal.
    // Their times came from now(): already on the clock.
    for (const f of facts) evolve(this.state, f);
    this.batch.push({ prepared, done, count: facts.length });
    for (const f of facts) this.batchFacts.push(f);
    if (this.batchFacts.length >= this.maxBatch) {
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0) return;
    const batch = this.batch;
    const facts = this.batchFacts;
    this.batch = [];
    this.batchFacts = [];
    let stored: Fact[];
    try {
      stored = appendFacts(this.opts.journal, facts);
    } catch (e) {
      // Locks this batch took are given back before anyone is answered; releases were not done yet
      // (a description closes only on commit), so those locks stay held.
      for (const p of [...batch].reverse()) p.prepared.abort();
      // A step back of the clock answers no client and changes no lock: it waits for room (a full
      // disk) instead of going with the refused batch, ahead of every fact stamped after it (review27c
      // F2b). Kept before the reload, which folds in what waits.
      const steps = facts.filter((f) => f.kind === 'ClockStepped');
      if (steps.length > 0 && this.opts.keep?.(steps, e) !== true) {
        this.opts.log?.('error', `the journal could not record ${steps.length} step(s) back of the clock (ClockStepped): audit --at a moment in their window answers by the time labels alone`);
      }
      this.state = this.opts.reload();
      const why = (e as Error).message;
      const errno = (e as { errno?: unknown }).errno ?? (e as { cause?: { code?: unknown } }).cause?.code;
      this.opts.log?.('error', `the journal could not record the facts, so nothing was done: ${why}`);
      for (const p of batch) {
        const o = p.prepared.outcome;
        const kept = o.status === 'ok' && o.released.length > 0 ? `; still held: ${o.released.map((d) => d.path).join(', ')}` : '';
        const taken = o.status === 'ok' && o.acquired.length > 0 ? '; no lock was taken' : '';
        const message = `the journal could not record the facts, so nothing was done${taken}${kept}: ${why}`;
        p.done({ status: 'error', code: 'VMLOCKD_ERR_JOURNAL', message, ...(typeof errno === 'string' ? { errno } : {}) });
      }
      return;
    }
    if (stored.length > 0) this.state.seq = stored[stored.length - 1]!.seq;
    let first = 0;
    for (const p of batch) {
      const mine = stored.length === facts.length ? stored.slice(first, first + p.count) : [];
      first += p.count;
      p.prepared.commit();
      // A refusal names the seq of its LockRefused fact (a CONFLICT log line reports it).
      p.done(withRefusalSeqs(p.prepared.outcome, mine));
    }
    this.opts.onFacts?.(stored);
  }

  private fail(job: Job, e: unknown): void {
    const code = e instanceof VmlockdError ? e.code : 'VMLOCKD_ERR_INTERNAL';
    const message = e instanceof Error ? e.message : String(e);
    if (code === 'VMLOCKD_ERR_INTERNAL') this.opts.log?.('error', `command failed: ${(e as Error).stack ?? message}`);
    const c = job.command;
    const t = this.now();
    const f = withWall(
      e instanceof BadInputError
        ? fact('InputRejected', t.at, { source: c.source, code, message, raw: JSON.stringify(c) })
        : fact('CommandFailed', t.at, { source: c.source, code, message, owner: wellFormedOwner(c.owner), command: c.kind }),
      t,
    );
    const cause = (e as { cause?: NodeJS.ErrnoException }).cause;
    const reply: Reply = {
      status: 'error',
      code,
      message,
      ...(typeof cause?.code === 'string' ? { errno: cause.code } : {}),
      ...(typeof cause?.syscall === 'string' ? { syscall: cause.syscall } : {}),
    };
    this.enqueue(withClientAt([f], c.clientAt), { facts: [f], outcome: { status: 'ok', acquired: [], released: [], already: [], free: [] }, commit: () => {}, abort: () => {} }, (r) => job.done(unrecorded(reply, r)));
  }
}

/**
 * The reply of a refusal or failure whose fact's group commit answered `committed`: the reply itself
 * once its fact is durable; else the journal's error, naming what was refused (no lock changed).
 */
function unrecorded(reply: Reply, committed: Reply): Reply {
  if (committed.status === 'ok' || reply.status !== 'error' || committed.status !== 'error') return reply;
  return { ...committed, message: `refused (${reply.message}), but ${committed.message}` };
}

/** The wall clock's reading behind a fact's time after a step back, kept in its payload as `wallAt` (decision 0029). */
function withWall(f: NewFact, t: Stamp): NewFact {
  return t.wall === undefined ? f : ({ ...f, payload: { ...f.payload, wallAt: t.wall } } as unknown as NewFact);
}

/** The fact a step back of the wall clock is journaled as, labelled with the newest time reached before it. */
export function stepFact(s: ClockStep): NewFact {
  return fact('ClockStepped', s.from, { from: s.from, to: s.to, backMs: s.backMs, seenBy: s.seenBy });
}

/** The client's own time for the command, kept in each fact's payload as `clientAt` (never used for order). */
function withClientAt(facts: readonly NewFact[], clientAt: string | undefined): readonly NewFact[] {
  if (clientAt === undefined) return facts;
  return facts.map((f) => ({ ...f, payload: { ...f.payload, clientAt } }) as unknown as NewFact);
}

function sameRules(a: NamingRules, b: NamingRules): boolean {
  return a.fileLockspaceDir === b.fileLockspaceDir && (a.lvmLockspaceDir ?? null) === (b.lvmLockspaceDir ?? null) && (a.scsiLockspaceDir ?? null) === (b.scsiLockspaceDir ?? null);
}
