// Parser for libvirt's conf syntax (qemu-lockd.conf, virtlockd.conf), to the rules of libvirt's
// own reader so a file one accepts the other accepts too:
//   key = value            statements end at a newline or ";"
//   "text" or 'text'       no backslash escapes: a backslash is an ordinary character, and a
//                          string may not cross a line; """text""" may cross lines
//   12, -3, +4             decimal integers only
//   [ "a", "b", ]          lists, may span lines, trailing comma allowed, no comments inside
//   # comment              whole-line or after a value
// A key is a letter followed by letters, digits and "_".
// Pure: text in, entries or the first syntax problem out (file:line + message).

export type ConfValue =
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'integer'; readonly value: number; readonly raw: string }
  | { readonly type: 'list'; readonly items: readonly ConfValue[] };

export interface ConfEntry {
  readonly key: string;
  readonly value: ConfValue;
  /** 1-based line of the key. */
  readonly line: number;
}

export interface ConfProblem {
  readonly file: string;
  readonly line: number;
  readonly message: string;
}

export interface ParsedConf {
  /** Every statement before the first syntax error (all of them when `error` is null). */
  readonly entries: readonly ConfEntry[];
  /** Parsing stops at the first syntax error, as libvirt does: what follows a broken line is guesswork. */
  readonly error: ConfProblem | null;
}

export function formatProblem(p: { file: string; line?: number; message: string }): string {
  return p.line === undefined ? `${p.file}: ${p.message}` : `${p.file}:${p.line}: ${p.message}`;
}

/** How a value reads in an error message: `string "abc"`, `integer 5`, `list [ "a" ]`. */
export function describeValue(v: ConfValue): string {
  switch (v.type) {
    case 'string':
      return `string ${renderValue(v)}`;
    case 'integer':
      return `integer ${v.raw}`;
    case 'list':
      return `list ${renderValue(v)}`;
    default: {
      const _exhaustive: never = v;
      return _exhaustive;
    }
  }
}

/** The value in conf syntax, choosing a quote libvirt can read back. */
export function renderValue(v: ConfValue): string {
  switch (v.type) {
    case 'string':
      if (v.value.includes('\n')) return `"""${v.value}"""`;
      if (!v.value.includes('"')) return `"${v.value}"`;
      if (!v.value.includes("'")) return `'${v.value}'`;
      return `"""${v.value}"""`;
    case 'integer':
      return v.raw;
    case 'list':
      return v.items.length === 0 ? '[ ]' : `[ ${v.items.map(renderValue).join(', ')} ]`;
    default: {
      const _exhaustive: never = v;
      return _exhaustive;
    }
  }
}

class SyntaxProblem extends Error {
  constructor(readonly line: number, message: string) {
    super(message);
  }
}

const isBlank = (c: string): boolean => c === ' ' || c === '\t';
const isEol = (c: string): boolean => c === '\n' || c === '\r';
const isAlpha = (c: string): boolean => /^[A-Za-z]$/.test(c);
const isKeyChar = (c: string): boolean => /^[A-Za-z0-9_]$/.test(c);

class Cursor {
  pos = 0;
  line = 1;
  constructor(readonly text: string) {}

  get eof(): boolean {
    return this.pos >= this.text.length;
  }
  /** The current character, '' at the end. A method, not a getter: TS must not narrow it across next(). */
  peek(): string {
    return this.text[this.pos] ?? '';
  }
  startsWith(s: string): boolean {
    return this.text.startsWith(s, this.pos);
  }
  next(n = 1): void {
    for (let i = 0; i < n && !this.eof; i++) {
      if (this.peek() === '\n') this.line++;
      this.pos++;
    }
  }
  skipBlanks(): void {
    while (!this.eof && isBlank(this.peek())) this.next();
  }
  skipBlanksAndEol(): void {
    while (!this.eof && (isBlank(this.peek()) || isEol(this.peek()))) this.next();
  }
  skipToEol(): void {
    while (!this.eof && !isEol(this.peek())) this.next();
  }
  /** The characters up to the next blank, line end or structural character, for messages. */
  token(stopAt = ' \t\r\n#,]'): string {
    let end = this.pos;
    while (end < this.text.length && !stopAt.includes(this.text[end]!)) end++;
    return this.text.slice(this.pos, end);
  }
  fail(message: string, line = this.line): never {
    throw new SyntaxProblem(line, message);
  }
}

export function parseConf(text: string, file: string): ParsedConf {
  const cur = new Cursor(text.startsWith('\uFEFF') ? text.slice(1) : text);
  const entries: ConfEntry[] = [];
  try {
    for (;;) {
      cur.skipBlanksAndEol();
      if (cur.eof) break;
      if (cur.peek() === '#') {
        cur.skipToEol();
        continue;
      }
      entries.push(parseStatement(cur));
    }
    return { entries, error: null };
  } catch (e) {
    if (!(e instanceof SyntaxProblem)) throw e;
    return { entries, error: { file, line: e.line, message: e.message } };
  }
}

function parseStatement(cur: Cursor): ConfEntry {
  const line = cur.line;
  const key = parseKey(cur);
  cur.skipBlanks();
  if (cur.peek() !== '=') {
    if (cur.eof || isEol(cur.peek()) || cur.peek() === '#') cur.fail(`missing "=" after key "${key}"`);
    cur.fail(`expected "=" after key "${key}", got "${cur.token()}"`);
  }
  cur.next();
  cur.skipBlanks();
  const value = parseValue(cur, key);
  cur.skipBlanks();
  if (cur.peek() === '#') cur.skipToEol();
  if (cur.eof || isEol(cur.peek())) return { key, value, line };
  if (cur.peek() === ';') {
    cur.next();
    return { key, value, line };
  }
  return cur.fail(`unexpected "${cur.token(' \t\r\n#')}" after the value of "${key}" (one "key = value" per line)`);
}

function parseKey(cur: Cursor): string {
  const word = cur.token(' \t\r\n=#');
  if (word === '') cur.fail(`expected a key name, got "${cur.token(' \t\r\n')}"`);
  if (!isAlpha(word[0]!) || ![...word].every(isKeyChar)) {
    cur.fail(`invalid key name "${word}" (a key is a letter followed by letters, digits and "_")`);
  }
  cur.next(word.length);
  return word;
}

/**
 * How deep [ lists ] may nest. No key takes more than a flat list; the parser is recursive, so without
 * a bound a file of 20,000 "[" overflowed the stack ("Maximum call stack size exceeded" with a stack
 * trace, exit 1) instead of naming the line.
 */
export const MAX_LIST_DEPTH = 32;

function parseValue(cur: Cursor, key: string, depth = 0): ConfValue {
  if (cur.eof || isEol(cur.peek()) || cur.peek() === '#' || cur.peek() === ';') cur.fail(`missing value for "${key}"`);
  const c = cur.peek();
  if (c === '"' || c === "'") return { type: 'string', value: parseString(cur) };
  if (c === '[') {
    if (depth >= MAX_LIST_DEPTH) cur.fail(`lists for "${key}" are nested deeper than ${MAX_LIST_DEPTH} levels`);
    return parseList(cur, key, depth + 1);
  }
  const word = cur.token(' \t\r\n#,];');
  if (/^[+-]?[0-9]+$/.test(word)) {
    const value = Number(word);
    if (!Number.isSafeInteger(value)) cur.fail(`integer ${word} for "${key}" is out of range`);
    cur.next(word.length);
    return { type: 'integer', value: Object.is(value, -0) ? 0 : value, raw: word };
  }
  return cur.fail(
    `invalid value ${word === '' ? `"${c}"` : word} for "${key}": expected a "quoted string", an integer or a [ list ]`,
  );
}

function parseString(cur: Cursor): string {
  const startLine = cur.line;
  if (cur.startsWith('"""')) {
    cur.next(3);
    const start = cur.pos;
    while (!cur.eof && !cur.startsWith('"""')) cur.next();
    if (cur.eof) cur.fail(`unterminated string: """ opened here is never closed`, startLine);
    const s = textBetween(cur, start);
    cur.next(3);
    return s;
  }
  const quote = cur.peek();
  cur.next();
  const start = cur.pos;
  while (!cur.eof && cur.peek() !== quote && !isEol(cur.peek())) cur.next();
  if (cur.peek() !== quote) cur.fail(`unterminated string: missing closing ${quote} before the end of the line`);
  const s = textBetween(cur, start);
  cur.next();
  return s;
}

function textBetween(cur: Cursor, start: number): string {
  return cur.text.slice(start, cur.pos);
}

function parseList(cur: Cursor, key: string, depth: number): ConfValue {
  const startLine = cur.line;
  const items: ConfValue[] = [];
  const unterminated = (): never => cur.fail(`unterminated list: "[" opened here is never closed with "]"`, startLine);
  const noComment = (): void => {
    if (cur.peek() === '#') cur.fail('comments are not allowed inside a [ list ] (libvirt rejects them too)');
  };
  cur.next();
  cur.skipBlanksAndEol();
  while (cur.peek() !== ']') {
    if (cur.eof) unterminated();
    noComment();
    items.push(parseValue(cur, key, depth));
    cur.skipBlanksAndEol();
    if (cur.eof) unterminated();
    noComment();
    if (cur.peek() === ',') {
      cur.next();
      cur.skipBlanksAndEol();
    } else if (cur.peek() !== ']') {
      cur.fail(`expected "," or "]" in the list for "${key}", got "${cur.token()}"`);
    }
  }
  cur.next();
  return { type: 'list', items };
}
