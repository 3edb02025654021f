// The `--follow` loop of `audit` and `audit --cluster`: the backlog, then whatever each poll finds,
// until SIGINT, SIGTERM or a closed stdout (EPIPE: `| head`).
import type { StoredFact } from '../journal/journal.js';
import { csvHeader, csvRows, factColumns, table, tableCells, tableHeader, toRow, type Format, type TableOptions } from './audit-format.js';

/** Writes facts as a stream in one format: the header once (`start`), then rows as they come. */
export function factStream(format: Format, opts: TableOptions, out: (s: string) => void = (s) => process.stdout.write(s)): { start(): void; print(facts: readonly StoredFact[]): void; columns(next: TableOptions): void } {
  return {
    /**
     * The columns change while following (audit --cluster: a host's second journal appeared, so the
     * table needs its JOURNAL column): the table prints a new header before the next rows; CSV and
     * JSON carry the journal on every row already.
     */
    columns(next) {
      const was = tableHeader(opts).join('\u0000');
      opts = next;
      if (format === 'table' && tableHeader(opts).join('\u0000') !== was) out(table([tableHeader(opts)]));
    },
    start() {
      if (format === 'csv') out(csvHeader(factColumns(opts)));
      if (format === 'table') out(table([tableHeader(opts)]));
    },
    print(facts) {
      if (facts.length === 0) return;
      if (format === 'json') out(facts.map((f) => JSON.stringify(f)).join('\n') + '\n');
      else if (format === 'csv') out(csvRows(facts.map(toRow), factColumns(opts)));
      else out(table(facts.map((f) => tableCells(toRow(f), opts))));
    },
  };
}

/**
 * Calls `poll` every `intervalMs` until the process is asked to stop (SIGINT, SIGTERM) or stdout
 * fails (the reader went away); a stop wakes the wait at once. Resolves when stopped.
 */
export async function followLoop(poll: () => void | Promise<void>, intervalMs: number): Promise<void> {
  let stopped = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopped = true;
    wake?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.stdout.once('error', stop);
  try {
    while (!stopped) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (stopped) break;
      await poll();
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    process.stdout.off('error', stop);
  }
}
