// The bytes the virtlockd protocol server holds for its connections, received but not yet handled (a
// partial frame, frames queued behind a call in flight), bounded in total across connections. One
// connection may buffer a frame of up to 32 MiB (MAX_FRAME_BYTES), but 100 connections each sending
// 32 MiB less one byte would hold 3.2 GB: past `max`, the connections holding the most are let go
// (largest first) until the total fits again, so a client sending small frames is never the one
// closed while a larger buffer stands. Pure bookkeeping: the server closes what `over` names.

/** The default bound: two frames of the largest size the protocol allows. */
export const BUFFERED_BYTES_MAX = 64 * 1024 * 1024;

export class BufferBudget<K> {
  private readonly held = new Map<K, number>();
  private sum = 0;

  constructor(readonly max: number = BUFFERED_BYTES_MAX) {}

  /** Bytes buffered for every connection together. */
  get total(): number {
    return this.sum;
  }

  /** What `k` holds now (0 forgets it). */
  set(k: K, bytes: number): void {
    const old = this.held.get(k) ?? 0;
    if (bytes === 0) this.held.delete(k);
    else this.held.set(k, bytes);
    this.sum += bytes - old;
  }

  get(k: K): number {
    return this.held.get(k) ?? 0;
  }

  /** Over the bound: the holders to let go, largest first, until the rest fits (empty when it fits). */
  over(): K[] {
    if (this.sum <= this.max) return [];
    const out: K[] = [];
    let left = this.sum;
    for (const [k, n] of [...this.held].sort((a, b) => b[1] - a[1])) {
      if (left <= this.max) break;
      out.push(k);
      left -= n;
    }
    return out;
  }
}
