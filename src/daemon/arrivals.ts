// When this process's facts became durable, coarsely, so `publish_lag_seconds` can say how long the
// oldest fact not yet published has waited. Before, a fact not yet in SQLite (still staged) was timed
// from when publication last had nothing to do: under a steady stream that is the stream's start, and
// the gauge jumped to 5-15 s while the real wait was ~0.2 s (bench/README.md "Publication").
//
// One mark per `grainMs` at most: a mark says "facts from seq `first` on were durable by `at`", so a
// fact's wait is over-stated by less than one grain, never under-stated. Past `cap` marks (a long
// outage of the lockspace) every other mark is dropped: the waits then over-state by more, never less.

/** Marks of when facts became durable (monotonic milliseconds). */
export class Arrivals {
  private first: number[] = [];
  private at: number[] = [];
  /** Marks before this index are wholly published. */
  private start = 0;

  constructor(
    private readonly grainMs = 100,
    private readonly cap = 4096,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Facts from seq `first` on are durable now (or by `at`, monotonic ms: the process's start is 0, its time origin). */
  note(first: number, at?: number): void {
    const t = at ?? this.now();
    const n = this.first.length;
    if (n > this.start && t - this.at[n - 1]! < this.grainMs) return;
    this.first.push(first);
    this.at.push(t);
    if (n + 1 - this.start > this.cap) this.thin();
  }

  /**
   * Milliseconds fact `seq` has waited since it became durable, by the newest mark at or before it;
   * undefined when no mark covers it (facts durable before this process marked any).
   */
  waited(seq: number): number | undefined {
    const n = this.first.length;
    if (n === this.start || seq < this.first[this.start]!) return undefined;
    // Marks wholly before `seq` are not needed again: published facts only grow.
    while (this.start + 1 < n && this.first[this.start + 1]! <= seq) this.start++;
    if (this.start >= 1024 && this.start * 2 >= n) {
      this.first.splice(0, this.start);
      this.at.splice(0, this.start);
      this.start = 0;
    }
    return Math.max(0, this.now() - this.at[this.start]!);
  }

  /** Every other mark after the oldest dropped (its facts then count from the mark before: longer, never shorter). */
  private thin(): void {
    const first: number[] = [];
    const at: number[] = [];
    for (let i = this.start; i < this.first.length; i++) {
      if ((i - this.start) % 2 === 0 || i === this.first.length - 1) {
        first.push(this.first[i]!);
        at.push(this.at[i]!);
      }
    }
    this.first = first;
    this.at = at;
    this.start = 0;
  }

  /** How many marks are kept (tests). */
  get size(): number {
    return this.first.length - this.start;
  }
}
