// The Int32 slots the main thread and the journal's SQLite writer thread share (mover.ts,
// mover-worker.ts; decision 0021). Its own module: importing mover-worker.ts would start the worker's main.

/** The id of the last request the thread answered (Atomics.notify'd after its answer is posted). */
export const MOVER_DONE = 0;
/** The newest batch id whose move must not wait for another process's write lock (a nonBlocking caller settles it). */
export const MOVER_NO_WAIT = 1;
/** 1 once the thread is exiting (told from its process 'exit' event). */
export const MOVER_EXITED = 2;
export const MOVER_SLOTS = 3;
