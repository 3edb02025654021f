// The bash completion is generated from the usage table (src/cli/usage.ts): every command, subcommand
// and flag there is completed; a flag's value completes as its placeholder says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bashCompletion, parseUsage } from '../../src/cli/completion.js';
import { USAGE } from '../../src/cli/usage.js';

test('every command of the usage table, with its subcommands and flags', () => {
  const { commands, values } = parseUsage(USAGE);
  const names = commands.map((c) => c.name);
  for (const c of ['serve', 'acquire', 'release', 'check', 'locks', 'who', 'generation', 'cluster', 'ingest', 'audit', 'journal', 'status', 'integrity', 'config', 'hook']) {
    assert.ok(names.includes(c), c);
  }
  const of = (n: string) => commands.find((c) => c.name === n)!;
  assert.equal(of('journal').subcommands, ['compact', 'verify']);
  assert.equal(of('config').subcommands, ['show', 'check']);
  assert.equal(of('hook').subcommands, ['qemu']);
  assert.equal(of('acquire').subcommands, []);
  for (const f of ['--takeover', '--state-dir', '--log-format', '--journal-sync', '--socket', '--help']) assert.ok(of('serve').flags.includes(f), f);
  assert.ok(of('audit').flags.includes('--timeline'), '--timeline after a TIME| placeholder');
  assert.ok(of('locks').flags.includes('--cluster'));
  assert.equal(values.get('--log-level'), { kind: 'words', words: ['debug', 'info', 'warning', 'error'] });
  assert.equal(values.get('--state-dir'), { kind: 'dir' });
  assert.equal(values.get('--config'), { kind: 'file' });
  assert.equal(values.get('--takeover'), { kind: 'bool' });
  assert.equal(values.get('--vm'), { kind: 'none' });
});

test('a command added to the table is completed without touching the generator', () => {
  const usage = USAGE.replace('  status [--json]\n', '  status [--json]\n  frobnicate --level low|high [--dry-run] FILE\n');
  const script = bashCompletion(usage);
  assert.match(script, /compgen -W "serve acquire [^"]*frobnicate[^"]*"/);
  assert.match(script, /frobnicate\) flags="--level --dry-run /);
  assert.match(script, /--level\) COMPREPLY=\(\$\(compgen -W "low high"/);
});

test.run();
