import * as assert from 'uvu/assert';

/**
 * A start that fails says so in one line of error, whatever log lines (timestamped, e.g. the
 * warning that a first start created a new lockspace) it printed before it failed.
 */
export function oneErrorLine(r: { stderr: string }, re: RegExp | string): void {
  const lines = r.stderr.trim().split('\n').filter((l) => !/^\S+Z (debug|info|warning) /.test(l));
  assert.is(lines.length, 1, r.stderr);
  assert.match(lines[0]!, re);
}
