// What the composition root hands an event source (virsh stream, virtlockd server, ...): a way in
// to the pipeline and a read-only view of the state. Sources never touch lock files or the journal.
import type { ConflictFields } from './conflict-line.js';
import type { NewFact } from './facts.js';
import type { Reply } from './pipeline.js';
import type { State } from './state.js';
import type { Command, VmEvent } from './types.js';

export interface SourceContext {
  /** Submit one command; resolves when its facts are durable (or it was refused / failed). */
  submit(command: Command): Promise<Reply>;
  /**
   * `submit` without a promise (the protocol server's hot path): `done` gets the reply once the
   * command's facts are durable. It may be called from inside the engine's group commit, before the
   * rest of that batch is answered: it must not submit, record or reject anything itself (defer that
   * to a later microtask) and must not throw.
   */
  dispatch(command: Command, done: (reply: Reply) => void): void;
  /** plan() an event and submit its commands. */
  submitEvent(event: VmEvent): Promise<Reply[]>;
  /** Journal a rejected input (bad line, bad frame). Changes no lock. */
  reject(source: string, error: unknown, raw?: string): Reply;
  /**
   * `reject` for an input that is answered (or closed): `done` gets the rejection once its
   * InputRejected fact is durable, or the journal's error (VMLOCKD_ERR_JOURNAL) if it could not be
   * recorded (Engine.rejectThen). Changes no lock.
   */
  rejectThen(source: string, error: unknown, raw: string | undefined, done: (reply: Reply) => void): void;
  /**
   * Journal facts that are not lock changes (OwnerGone, conflicts applied, reconnects). True once
   * they are durable; false if the journal could not record them (logged, never thrown). A refused
   * write keeps them waiting in memory, journaled ahead of the next append (src/daemon/waiting-facts.ts),
   * unless `answers`: a fact a client is answered for (a LockRefused) is then refused instead, so the
   * client can be told.
   */
  record(facts: readonly NewFact[], opts?: { answers?: boolean }): boolean;
  /** The current state, read-only. */
  state(): State;
  /** This host's id. */
  readonly host: string;
  /** fields: a CONFLICT line's (src/engine/conflict-line.ts); without them the wording classifies the line. */
  log(level: 'debug' | 'info' | 'warning' | 'error', msg: string, fields?: ConflictFields): void;
}

export interface RunningSource {
  /**
   * Stop accepting input; resolve once closed. handingOver: a `serve --takeover` hand-off, whose new
   * daemon serves the same listening socket: leave its path in place.
   */
  stop(opts?: { handingOver?: boolean; connections?: boolean }): Promise<void>;
  /** The listening socket this source serves, for a take-over to hand over (src/daemon/listeners.ts). */
  listener?(): { kind: 'virtlockd'; addr: string; fd: number; managed?: boolean } | undefined;
  /**
   * After stop({ handingOver, connections }): the established client connections kept for the next
   * daemon (a descriptor of each, this process's own, and what the protocol knew of it).
   */
  handedConnections?(): HandedConnection[];
}

/** A client connection a take-over hands to the next daemon (src/daemon/takeover.ts). */
export interface HandedConnection {
  readonly kind: 'virtlockd';
  /** The socket path it was accepted on: the next daemon adopts it only if it serves that path. */
  readonly addr: string;
  readonly fd: number;
  /** The protocol's state of the connection, as JSON (the source that made it reads it back). */
  readonly state: unknown;
}
