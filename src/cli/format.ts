// Human-readable tables for the CLI. --json prints the API's own objects instead.

function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n').join('');
}

interface LockRow {
  disk: string;
  path: string;
  name: string;
  mode: string;
  vm: { uuid: string; name?: string };
  since: string;
}

export function formatLocks(locks: LockRow[]): string {
  if (locks.length === 0) return 'no locks held\n';
  return table([
    ['DISK', 'MODE', 'VM', 'UUID', 'SINCE', 'RESOURCE'],
    ...locks.map((l) => [l.disk, l.mode, l.vm.name ?? '-', l.vm.uuid, l.since, l.name]),
  ]);
}

/** One `key: value` line per field; a nested object prints its fields inline (`k=v, ...`), never `[object Object]`. */
export function formatStatus(s: Record<string, unknown>): string {
  return Object.entries(s)
    .map(([k, v]) => `${k}: ${statusValue(v)}\n`)
    .join('');
}

function statusValue(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (Array.isArray(v)) return v.map(statusValue).join(', ');
  if (typeof v === 'object') {
    return Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${k}=${x !== null && typeof x === 'object' ? JSON.stringify(x) : statusValue(x)}`)
      .join(', ');
  }
  return String(v);
}
