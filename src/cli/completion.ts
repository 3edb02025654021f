// Bash completion for vmlockd, generated from the usage table (src/cli/usage.ts) at build time
// (packaging/gen-docs.sh -> /usr/share/bash-completion/completions/vmlockd). A command, subcommand
// or flag added to the usage table is completed without touching this file.

/** What the usage table says about one command. */
export interface CommandSpec {
  readonly name: string;
  /** `journal compact|verify`, `config show|check`, `hook qemu`. */
  readonly subcommands: readonly string[];
  readonly flags: readonly string[];
}

/** How a flag's value completes: a file, a directory, one of some words, nothing known (UUID, TIME), or a flag without a value. */
export type ValueSpec = { kind: 'file' } | { kind: 'dir' } | { kind: 'words'; words: readonly string[] } | { kind: 'none' } | { kind: 'bool' };

/** Flags every command takes (src/main.ts COMMON). */
const COMMON_FLAGS = ['--socket', '--config', '--json', '--help'];

interface Parsed {
  readonly commands: CommandSpec[];
  readonly values: Map<string, ValueSpec>;
}

/** The usage table's commands in order, their subcommands and flags, and what each flag's value is. */
export function parseUsage(usage: string): Parsed {
  const byName = new Map<string, { subs: Set<string>; flags: Set<string> }>();
  const values = new Map<string, ValueSpec>();
  let current: string | undefined;
  const take = (name: string, text: string): void => {
    const entry = byName.get(name) ?? { subs: new Set<string>(), flags: new Set<string>() };
    byName.set(name, entry);
    // `journal compact ... | journal verify ...`: a top-level alternative naming the command again.
    for (const segment of text.split(/\s\|\s/)) {
      const words = segment.trim().split(/\s+/);
      const at = words[0] === name ? 1 : -1;
      if (at === 1 && words[1] !== undefined && /^[a-z][a-z-]*$/.test(words[1])) entry.subs.add(words[1]);
    }
    // A placeholder: alternatives that do not start with "-" (`TIME|--timeline` is a placeholder and a flag).
    const flagRe = /--([a-z][a-z-]*)(?:[ =]([^\s\][|-][^\s\][|]*(?:\|[^\s\][|-][^\s\][|]*)*))?/g;
    for (const m of text.matchAll(flagRe)) {
      const flag = `--${m[1]!}`;
      entry.flags.add(flag);
      // The most telling mention wins (`--lockspace DIR` over `--lockspace ""`, `--archive FILE` over `--archive`).
      const v = valueOf(m[2]);
      const had = values.get(flag);
      if (had === undefined || rank(v) > rank(had)) values.set(flag, v);
    }
  };
  for (const line of usage.split('\n')) {
    const top = /^ {2}([a-z][a-z-]*)(?=\s|$)(.*)$/.exec(line);
    if (top) {
      current = top[1]!;
      take(current, `${current}${top[2]!}`);
    } else if (current !== undefined && /^ {4,}\S/.test(line)) {
      take(current, line);
    } else if (line.trim() === '' || !line.startsWith(' ')) {
      current = undefined;
    }
  }
  const commands = [...byName].map(([name, e]) => ({ name, subcommands: [...e.subs], flags: [...new Set([...e.flags, ...COMMON_FLAGS])] }));
  return { commands, values };
}

const rank = (v: ValueSpec): number => ['bool', 'none', 'words', 'dir', 'file'].indexOf(v.kind);

/** The placeholder after a flag: FILE/PATH a file, DIR a directory, a|b|c those words; none: a boolean flag. */
function valueOf(placeholder: string | undefined): ValueSpec {
  if (placeholder === undefined || placeholder.startsWith('-') || placeholder === '|') return { kind: 'bool' };
  const p = placeholder.replace(/[.,]+$/, '');
  if (/^(FILE|PATH)(\|-)?$/.test(p)) return { kind: 'file' };
  if (p === 'DIR') return { kind: 'dir' };
  if (/^[a-z]+(\|[a-z]+)+$/.test(p)) return { kind: 'words', words: p.split('|') };
  return { kind: 'none' };
}

const quote = (words: readonly string[]): string => `"${words.join(' ')}"`;

/** The completion script: `complete -F _vmlockd vmlockd`. */
export function bashCompletion(usage: string): string {
  const { commands, values } = parseUsage(usage);
  const byKind = (kind: ValueSpec['kind']) => [...values].filter(([, v]) => v.kind === kind).map(([f]) => f);
  const wordCases = [...values]
    .filter((e): e is [string, { kind: 'words'; words: readonly string[] }] => e[1].kind === 'words')
    .map(([f, v]) => `    ${f}) COMPREPLY=($(compgen -W ${quote(v.words)} -- "$cur")); return ;;`);
  const valueCases = [
    byKind('file').length > 0 ? `    ${byKind('file').join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;` : '',
    byKind('dir').length > 0 ? `    ${byKind('dir').join('|')}) COMPREPLY=($(compgen -d -- "$cur")); return ;;` : '',
    ...wordCases,
    // A value nothing can guess (UUID, TIME, ID): offer nothing rather than flags.
    byKind('none').length > 0 ? `    ${byKind('none').join('|')}) COMPREPLY=(); return ;;` : '',
  ].filter((l) => l !== '');
  const subCases = commands.filter((c) => c.subcommands.length > 0).map((c) => `    ${c.name}) COMPREPLY=($(compgen -W ${quote(c.subcommands)} -- "$cur")); return ;;`);
  const flagCases = commands.map((c) => `    ${c.name}) flags=${quote(c.flags)} ;;`);
  return [
    '# bash completion for vmlockd(8): commands, subcommands and flags, generated from the usage table',
    '# (src/cli/usage.ts) by src/cli/completion.ts when the package is built. Do not edit.',
    '_vmlockd() {',
    '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd=${COMP_WORDS[1]} flags=',
    '  if [ "$COMP_CWORD" -eq 1 ]; then',
    `    COMPREPLY=($(compgen -W ${quote([...commands.map((c) => c.name), 'help'])} -- "$cur")); return`,
    '  fi',
    '  case "$prev" in',
    ...valueCases,
    '  esac',
    '  if [ "$COMP_CWORD" -eq 2 ] && [[ $cur != -* ]]; then',
    '    case "$cmd" in',
    ...subCases.map((l) => '  ' + l),
    '    esac',
    '  fi',
    '  if [[ $cur == -* ]]; then',
    '    case "$cmd" in',
    ...flagCases.map((l) => '  ' + l),
    '    esac',
    '    COMPREPLY=($(compgen -W "$flags" -- "$cur")); return',
    '  fi',
    '  COMPREPLY=($(compgen -f -- "$cur"))',
    '}',
    'complete -o filenames -F _vmlockd vmlockd',
    '',
  ].join('\n');
}
