// The time a fact is journaled with (decision 0029). The journal's seq order is the truth on one host
// and a fact's `at` is a label on it: never earlier than the fact before it, so every question by time
// follows the journal's order. When the wall clock steps back (an NTP step, `date -s`, a clock set back
// while the daemon was stopped) the labels stay at the newest time given until the clock catches up,
// and each fact made meanwhile keeps the clock's own reading as `wallAt`; the step itself is journaled
// (ClockStepped: the window [to, from) of wall times the clock passed twice) so `audit --at` a moment
// in that window says it is ambiguous instead of picking one of the two passes.
//
// Steps are seen two ways: at a start, the clock against the journal's last fact; while running, the
// wall clock against the monotonic clock (which no step moves), at every fact and on a timer, so a
// step is journaled and logged when it happens, not at the next command.

export interface ClockStep {
  /** The newest wall time the clock had reached before the step (an upper bound): the labels' floor after it. */
  readonly from: string;
  /** The wall time just after the step (a lower bound). Times in [to, from) were passed twice. */
  readonly to: string;
  /** How far back, in ms. */
  readonly backMs: number;
  /** `start`: the clock at a start against the journal's last fact; `monotonic`: against the monotonic clock while running. */
  readonly seenBy: 'start' | 'monotonic';
}

export interface Stamp {
  /** The fact's time: the wall clock, or the floor while the clock is behind it. */
  readonly at: string;
  /** The wall clock's own reading when it is behind `at` after a journaled step (the fact's payload.wallAt). */
  readonly wall?: string;
}

export interface FactClockOptions {
  /** The journal's last fact: its time and, when it was made in a stepped-back stretch, its wall time. */
  readonly last?: { readonly at: string; readonly wallAt?: string };
  /** ms since the epoch (Date.now). */
  readonly wall?: () => number;
  /** A clock no step moves, in ms (performance.now). */
  readonly mono?: () => number;
  /** A step back smaller than this is only clamped, not journaled (ms). */
  readonly toleranceMs?: number;
}

export const STEP_TOLERANCE_MS = 1000;
/** A look whose clock reads took longer than this (the thread was preempted) says nothing. */
const MAX_READ_MS = 50;

const iso = (ms: number) => new Date(ms).toISOString();

export class FactClock {
  /** The newest time given to a fact, or a step's `from`: no fact is labelled earlier. */
  private floor: string;
  /** A journaled step's stretch lasts while the wall clock is behind the floor: facts then carry wallAt. */
  private stretch = false;
  private readonly wall: () => number;
  private readonly mono: () => number;
  private readonly tolerance: number;
  /** wall - mono at the last look, and the monotonic time of that look. */
  private offset: number;
  private looked: number;
  /** Steps seen and not yet taken by `steps()`. */
  private pending: ClockStep[] = [];

  constructor(o: FactClockOptions = {}) {
    this.wall = o.wall ?? Date.now;
    this.mono = o.mono ?? (() => performance.now());
    this.tolerance = o.toleranceMs ?? STEP_TOLERANCE_MS;
    const w = this.wall();
    const m = this.mono();
    this.offset = w - m;
    this.looked = m;
    this.floor = o.last?.at ?? '';
    if (o.last === undefined) return;
    // The last fact's own wall time: a fact made in a stretch is labelled ahead of the clock.
    const lastWall = Date.parse(o.last.wallAt ?? o.last.at);
    const behind = Date.parse(o.last.at) - w;
    if (behind <= 0) return;
    this.stretch = o.last.wallAt !== undefined;
    if (lastWall - w >= this.tolerance) {
      this.pending.push({ from: o.last.at, to: iso(w), backMs: lastWall - w, seenBy: 'start' });
      this.stretch = true;
    }
  }

  /**
   * Compares the wall clock with the monotonic one: a drop of their difference by at least the
   * tolerance is a step back, queued for `steps()`. Cheap (two clock reads); call it often.
   */
  look(): void {
    // The wall clock read between two monotonic reads: a thread preempted between the reads would
    // otherwise look like a step of that long (a loaded host); such a look is left out.
    const m0 = this.mono();
    const w = this.wall();
    const m1 = this.mono();
    if (m1 - m0 > MAX_READ_MS) return;
    const m = (m0 + m1) / 2;
    const offset = w - m;
    const back = this.offset - offset;
    if (back >= this.tolerance) {
      // Somewhere between the last look and now: the first pass reached at most m + old offset, the
      // second began at least at the last look's monotonic time + the new offset.
      const from = iso(Math.max(m + this.offset, Date.parse(this.floor || iso(0))));
      const to = iso(Math.min(this.looked + offset, w));
      if (from > this.floor) this.floor = from;
      this.pending.push({ from, to, backMs: Math.round(back), seenBy: 'monotonic' });
      this.stretch = true;
    }
    // A forward step or a slew moves the baseline too: only a drop from the last look counts.
    this.offset = offset;
    this.looked = m;
  }

  /** The steps seen since the last call, oldest first: each is journaled as a ClockStepped before the next fact. */
  steps(): ClockStep[] {
    if (this.pending.length === 0) return [];
    const out = this.pending;
    this.pending = [];
    return out;
  }

  /** The time for a fact made now. */
  now(): Stamp {
    this.look();
    return this.stamp(iso(this.wall()));
  }

  /** The time for a fact made at `raw` (its maker's reading of the wall clock): never before the floor. */
  stamp(raw: string): Stamp {
    if (raw >= this.floor) {
      this.floor = raw;
      this.stretch = false;
      return { at: raw };
    }
    return this.stretch ? { at: this.floor, wall: raw } : { at: this.floor };
  }

  /** The floor, for a fact that must not move it (a ClockStepped is labelled with its `from`). */
  get label(): string {
    return this.floor;
  }
}
