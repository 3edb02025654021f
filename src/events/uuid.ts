// A VM uuid and how a bad value is shown in an error: shared by the JSON-lines checks (jsonl.ts)
// and the command line, which loads only this much of them (a client command's start, bench/cli-start.ts).
import { BadInputError } from '../engine/errors.js';

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** A value as an error message quotes it: JSON, cut at 80 characters. */
export function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + '...' : s;
}

/** A VM uuid in its canonical lowercase dashed form. */
export function checkUuid(v: unknown, field: string): string {
  if (typeof v !== 'string' || !UUID_RE.test(v)) throw new BadInputError(`${field} must be a UUID, got ${show(v)}`);
  const hex = v.replace(/-/g, '').toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
