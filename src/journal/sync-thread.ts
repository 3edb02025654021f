// The staging file's fdatasync on a thread of its own (issue 13, proto25; bench/README.md). The main
// thread still waits for the sync before it answers anyone (Atomics.wait on a shared counter: the
// append stays synchronous, every invariant as before); only the system call runs elsewhere. On this
// project's VM the sync's kernel path (block layer, virtio kick, completion interrupt) left the main
// thread's caches cold: the JavaScript after each sync ran up to ~2x slower than without a sync.
//
// The thread is a plain loop (no event loop): wait for a request, fdatasync, publish the outcome.
// Until it has started, or once it has exited, the main thread calls fdatasync itself.
import { fdatasyncSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { Worker } from 'node:worker_threads';

/** Int32 slots: the last request (-1: stop), the last answered, that answer's errno (0: synced), ready, exited. */
const REQ = 0;
const DONE = 1;
const ERR = 2;
const READY = 3;
const EXITED = 4;
const SLOTS = 5;
/** A wait looks this often whether the thread is gone (its exit event cannot run while the main thread waits). */
const SLICE_MS = 50;

const WORKER = `
const { workerData } = require('node:worker_threads');
const { fdatasyncSync } = require('node:fs');
const s = new Int32Array(workerData.slots);
const fd = workerData.fd;
process.on('exit', () => { Atomics.store(s, ${EXITED}, 1); Atomics.notify(s, ${DONE}); });
Atomics.store(s, ${READY}, 1);
let seen = 0;
for (;;) {
  Atomics.wait(s, ${REQ}, seen);
  const req = Atomics.load(s, ${REQ});
  if (req < 0) break;
  if (req === seen) continue;
  seen = req;
  let err = 0;
  try { fdatasyncSync(fd); } catch (e) { err = typeof e.errno === 'number' && e.errno < 0 ? e.errno : -5; }
  Atomics.store(s, ${ERR}, err);
  Atomics.store(s, ${DONE}, req);
  Atomics.notify(s, ${DONE});
}
Atomics.store(s, ${EXITED}, 1);
Atomics.notify(s, ${DONE});
`;

export class SyncThread {
  private readonly slots: Int32Array;
  private readonly worker: Worker;
  private req = 0;
  private dead = false;

  constructor(private readonly fd: number) {
    const sab = new SharedArrayBuffer(4 * SLOTS);
    this.slots = new Int32Array(sab);
    this.worker = new Worker(WORKER, { eval: true, workerData: { slots: sab, fd }, name: 'vmlockd-stage-sync' });
    this.worker.unref();
    this.worker.on('error', () => (this.dead = true));
    this.worker.on('exit', () => (this.dead = true));
  }

  /** Whether syncs go to the thread (it started and has not exited). */
  usable(): boolean {
    return !this.dead && Atomics.load(this.slots, READY) === 1 && Atomics.load(this.slots, EXITED) === 0;
  }

  /**
   * fdatasync(fd), returning once it did: on the thread when it is there, else here. Throws what
   * fdatasync failed with (an errno error, as fdatasyncSync would).
   */
  sync(): void {
    if (!this.usable()) return fdatasyncSync(this.fd);
    const want = ++this.req;
    Atomics.store(this.slots, REQ, want);
    Atomics.notify(this.slots, REQ);
    for (;;) {
      const done = Atomics.load(this.slots, DONE);
      if (done >= want) break;
      if (Atomics.load(this.slots, EXITED) === 1) {
        // Gone before answering: whatever it did, a sync here covers everything written so far.
        this.dead = true;
        return fdatasyncSync(this.fd);
      }
      Atomics.wait(this.slots, DONE, done, SLICE_MS);
    }
    const errno = Atomics.load(this.slots, ERR);
    if (errno !== 0) {
      let code: string;
      try {
        code = getSystemErrorName(errno);
      } catch {
        code = 'EIO';
      }
      throw Object.assign(new Error(`${code}: fdatasync failed`), { errno, code, syscall: 'fdatasync' });
    }
  }

  /** Stops the thread (the file stays open: its owner closes it). */
  close(): void {
    if (!this.dead) {
      Atomics.store(this.slots, REQ, -1);
      Atomics.notify(this.slots, REQ);
    }
    this.dead = true;
    void this.worker.terminate();
  }
}
