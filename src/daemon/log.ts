// The daemon's log (docs/operations.md "Logs"). One call, three ways out:
// - under systemd (JOURNAL_STREAM names stderr's device:inode, as sd_journal documents), one datagram
//   per line to the journal's native socket, with PRIORITY, MESSAGE_ID and VMLOCKD_* fields, so
//   `journalctl -u vmlockd VMLOCKD_DISK=...` finds a disk's lines;
// - log_format = "json": JSON lines through pino (time, level, msg, disk, vm, host, event, seq);
// - log_format = "text" (the default): `time level message key=value...` for terminals.
// A journal send never blocks or throws (docs/operations.md "Logs"): an entry too big for one datagram
// goes as a sealed memfd (journald's protocol); one the socket does not take (gone, or its queue full
// because journald stops reading) goes to stderr as text instead (the stream systemd also reads). A
// stderr nobody reads (journald stuck) never grows the daemon's memory without bound: past
// MAX_STDERR_BACKLOG bytes waiting, lines are dropped and counted (vmlockd_log_entries_dropped_total).
// Levels follow virtlockd's log_level.
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import type pinoType from 'pino';
import { native as defaultNative, type NativeBinding } from '../engine/native.js';

export type Level = 'debug' | 'info' | 'warning' | 'error';
export type LogFormat = 'text' | 'json';
const RANK: Record<Level, number> = { debug: 1, info: 2, warning: 3, error: 4 };
/** syslog priorities, as journald reads PRIORITY=. */
const PRIORITY: Record<Level, number> = { debug: 7, info: 6, warning: 4, error: 3 };

/** What a line is about. `seq`: the journaled fact it reports (`vmlockd audit` shows the same seq). */
export interface LogFields {
  readonly event?: string;
  readonly disk?: string;
  readonly vm?: string;
  readonly host?: string;
  readonly seq?: number;
  /** CONFLICT lines: who holds the disk (its VM, its host; src/engine/conflict-line.ts). */
  readonly holder?: string;
  readonly holderHost?: string;
}

/**
 * MESSAGE_ID per event kind: fixed forever (an operator's alert or journalctl -o filter names them).
 * Listed in docs/operations.md. Never reuse or change one; add new kinds with a fresh random id.
 */
export const MESSAGE_IDS: Readonly<Record<string, string>> = {
  LeaseLost: 'b8a3517a6e6e3d9d08438a461479b371',
  Conflict: '8b259085b3bb5453db98b55a4cac498a',
  LockRefused: '9f3cb1f4ebec1623680588233444980c',
  Found: '5eda340b0e5fdd0c67b17764d021b8e5',
  Reacquired: '05fc47f36f12bb255cc45858f18f0e0a',
  DaemonStarted: '1a0b471aa259b117f1ad32b2b59e46ed',
  DaemonStopped: '6e56f1ac5512aae4333225e01349e240',
  JournalFailing: '017af9f8afbf6d0615b1a6babfae6149',
  ConflictAction: '44cbd26cf06525a94c1707b93752b59e',
  OwnerGone: '98bdcb0eb585c40586e865f9be2f6efa',
  ConfigRejected: 'aa989c8dd225860908394357d00754ed',
  CommandFailed: '04b7846563905d294c69f4f1fe95a2c0',
  DiskConflict: 'bb1537a622d34d639efacd6587d13a81',
  IdentityLearned: '22173385251545108a741270709b9272',
  FactsDropped: '633711fe930e4d4382bb48dc741141bf',
  ClockStepped: '139dd10fb8b41baa70aa59304b1bfd96',
};

export const JOURNAL_SOCKET = '/run/systemd/journal/socket';

/**
 * stderr is connected to the journal: JOURNAL_STREAM=<dev>:<ino> is stderr's own device and inode
 * (a child that inherited the variable but not the stream must not take it).
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env, nat: NativeBinding = defaultNative): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = nat.fstatId(2);
    return st.dev === m[1] && st.ino === m[2];
  } catch {
    return false;
  }
}

/**
 * One journal entry in the native protocol: KEY=value lines; a value holding a newline or a NUL (a
 * client's disk path or VM name may) in the binary form, KEY\n<u64 LE length><value>\n, which the
 * protocol allows for any value and which carries every byte as it is.
 */
export function journalEntry(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of fields) {
    if (!v.includes('\n') && !v.includes('\0')) {
      parts.push(Buffer.from(`${k}=${v}\n`, 'utf8'));
      continue;
    }
    const value = Buffer.from(v, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(value.length));
    parts.push(Buffer.from(`${k}\n`, 'utf8'), len, value, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

/** What became of one entry: sent (in a datagram or a memfd), the socket's queue full, or another failure. */
export type SendResult = 'sent' | 'full' | 'failed';

/**
 * Sends entries to journald's socket: one non-blocking datagram each (MSG_DONTWAIT: a journald that
 * stops reading fills the queue, and the send says 'full' at once instead of waiting). An entry too big
 * for one datagram (EMSGSIZE, ENOBUFS) goes as journald's protocol says: written to a sealed memfd whose
 * descriptor is the only content of an empty datagram (SCM_RIGHTS).
 */
export class JournalSink {
  private fd: number | undefined;
  /** Entries not taken for another reason than a full queue (no socket, refused). */
  failures = 0;
  /** Entries not taken because the socket's queue was full. */
  full = 0;
  /** Entries sent through a memfd. */
  viaMemfd = 0;
  constructor(
    readonly addr: string,
    private readonly nat: NativeBinding = defaultNative,
  ) {}

  send(entry: Buffer): SendResult {
    try {
      this.fd ??= this.nat.dgramSocket();
      this.nat.sendFds(this.fd, this.addr, entry, [], true);
      return 'sent';
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === 'EMSGSIZE' || code === 'ENOBUFS') && this.fd !== undefined) return this.sendMemfd(entry);
      return this.failed(code);
    }
  }

  private sendMemfd(entry: Buffer): SendResult {
    let mfd: number | undefined;
    try {
      mfd = this.nat.sealedMemfd('vmlockd-journal-entry', entry);
      this.nat.sendFds(this.fd!, this.addr, Buffer.alloc(0), [mfd], true);
      this.viaMemfd++;
      return 'sent';
    } catch (e) {
      return this.failed((e as NodeJS.ErrnoException).code);
    } finally {
      if (mfd !== undefined) fs.closeSync(mfd);
    }
  }

  private failed(code: string | undefined): SendResult {
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
      this.full++;
      return 'full';
    }
    this.failures++;
    return 'failed';
  }
}

/** Bytes that may wait for stderr (a pipe or socket nobody reads) before lines are dropped. */
export const MAX_STDERR_BACKLOG = 1 << 20;

type Sink = { kind: 'text' } | { kind: 'json'; pino: pinoType.Logger } | { kind: 'journal'; sink: JournalSink; fallback: Sink };

export interface LoggerOptions {
  format?: LogFormat;
  env?: NodeJS.ProcessEnv;
  nat?: NativeBinding;
  /**
   * Where text and JSON lines go; false: the line was dropped (the stream's backlog is full). Default:
   * stderr, dropping while more than MAX_STDERR_BACKLOG bytes wait (VMLOCKD_LOG_BACKLOG_MAX: tests only).
   */
  write?: (line: string) => unknown;
}

/** stderr, bounded: a stream nobody reads keeps at most `max` bytes waiting in this process. */
export function boundedStderr(max: number): (line: string) => boolean {
  return (line) => {
    if (process.stderr.writableLength > max) return false;
    process.stderr.write(line);
    return true;
  };
}

export class Logger {
  private sink: Sink;
  private readonly write: (line: string) => void;
  private journalWarned = false;
  /** Lines lost: neither the journal nor stderr took them. */
  dropped = 0;
  /** Journal entries that went to stderr instead. */
  fellBack = 0;
  constructor(
    public level: Level = 'info',
    private readonly opts: LoggerOptions = {},
  ) {
    const env = opts.env ?? process.env;
    const max = Number(env.VMLOCKD_LOG_BACKLOG_MAX) > 0 ? Number(env.VMLOCKD_LOG_BACKLOG_MAX) : MAX_STDERR_BACKLOG;
    const out = opts.write ?? boundedStderr(max);
    this.write = (line) => {
      if (out(line) === false) this.dropped++;
    };
    this.sink = this.makeSink(opts.format ?? 'text');
  }

  /** The log's own health, as metrics gauges (named without the vmlockd_ prefix). */
  gauges(): Record<string, { help: string; value: number }> {
    const j = this.sink.kind === 'journal' ? this.sink.sink : undefined;
    return {
      log_entries_dropped_total: { help: 'Log lines lost since start: the journal did not take them and stderr had too much waiting (a journald that stops reading).', value: this.dropped },
      log_journal_fallback_total: { help: "Journal entries the journal's socket did not take (queue full, socket gone) that went to stderr instead.", value: this.fellBack },
      log_journal_queue_full_total: { help: "Journal entries refused because the journal socket's queue was full (journald not reading).", value: j?.full ?? 0 },
      log_journal_memfd_total: { help: 'Journal entries too big for one datagram, sent through a sealed memfd.', value: j?.viaMemfd ?? 0 },
    };
  }

  /** The way out in use: 'journal', 'json' or 'text'. */
  get output(): 'journal' | LogFormat {
    return this.sink.kind;
  }

  /** log_format changed (a reload). Under systemd the journal stays the way out. */
  set format(f: LogFormat) {
    if (this.sink.kind === 'journal') this.sink.fallback = this.streamSink(f);
    else this.sink = this.streamSink(f);
  }

  private makeSink(format: LogFormat): Sink {
    const env = this.opts.env ?? process.env;
    const stream = this.streamSink(format);
    if (!stderrIsJournal(env, this.opts.nat)) return stream;
    // VMLOCKD_JOURNAL_SOCKET: tests only (a socket of their own standing in for journald's).
    return { kind: 'journal', sink: new JournalSink(env.VMLOCKD_JOURNAL_SOCKET || JOURNAL_SOCKET, this.opts.nat), fallback: stream };
  }

  private streamSink(format: LogFormat): Sink {
    if (format === 'text') return { kind: 'text' };
    const write = this.write;
    // Loaded only for log_format = "json": pino and its dependencies are a noticeable part of the
    // daemon's start (bench/README.md, restart with 10,000 locks), and the text formats need none of it.
    const pino = createRequire(import.meta.url)('pino') as typeof pinoType;
    const p = pino(
      {
        level: 'debug',
        base: undefined,
        messageKey: 'msg',
        timestamp: pino.stdTimeFunctions.isoTime,
        // The level by name, as log_level spells it ("warning", not pino's "warn").
        formatters: { level: (label: string) => ({ level: label === 'warn' ? 'warning' : label }) },
      },
      { write: (s: string) => write(s) },
    );
    return { kind: 'json', pino: p };
  }

  enabled(level: Level): boolean {
    return RANK[level] >= RANK[this.level];
  }

  log(level: Level, msg: string, fields: LogFields = classify(msg)): void {
    if (!this.enabled(level)) return;
    this.emit(this.sink, level, msg, fields);
  }

  private emit(sink: Sink, level: Level, msg: string, f: LogFields): void {
    switch (sink.kind) {
      case 'text': {
        const extra = [f.event && `event=${fieldValue(f.event)}`, f.seq !== undefined && `seq=${f.seq}`, f.disk && `disk=${fieldValue(f.disk)}`, f.vm && `vm=${fieldValue(f.vm)}`, f.host && `host=${fieldValue(f.host)}`, f.holder && `holder=${fieldValue(f.holder)}`, f.holderHost && `holderHost=${fieldValue(f.holderHost)}`].filter(Boolean);
        // One event, one line: a disk path or VM name chosen by a client may hold a newline (or
        // another control character) that would otherwise forge a log line of its own.
        this.write(`${new Date().toISOString()} ${level} ${oneLine(msg)}${extra.length > 0 ? ` [${extra.join(' ')}]` : ''}\n`);
        return;
      }
      case 'json': {
        const obj: Record<string, unknown> = {};
        if (f.event !== undefined) obj.event = f.event;
        if (f.seq !== undefined) obj.seq = f.seq;
        if (f.disk !== undefined) obj.disk = f.disk;
        if (f.vm !== undefined) obj.vm = f.vm;
        if (f.host !== undefined) obj.host = f.host;
        if (f.holder !== undefined) obj.holder = f.holder;
        if (f.holderHost !== undefined) obj.holderHost = f.holderHost;
        sink.pino[level === 'warning' ? 'warn' : level](obj, msg);
        return;
      }
      case 'journal': {
        const fields: Array<[string, string]> = [
          ['MESSAGE', msg],
          ['PRIORITY', String(PRIORITY[level])],
          ['SYSLOG_IDENTIFIER', 'vmlockd'],
        ];
        const id = f.event !== undefined ? MESSAGE_IDS[f.event] : undefined;
        if (id) fields.push(['MESSAGE_ID', id]);
        if (f.event !== undefined) fields.push(['VMLOCKD_EVENT', f.event]);
        if (f.seq !== undefined) fields.push(['VMLOCKD_SEQ', String(f.seq)]);
        if (f.disk !== undefined) fields.push(['VMLOCKD_DISK', f.disk]);
        if (f.vm !== undefined) fields.push(['VMLOCKD_VM', f.vm]);
        if (f.host !== undefined) fields.push(['VMLOCKD_HOST', f.host]);
        if (f.holder !== undefined) fields.push(['VMLOCKD_HOLDER', f.holder]);
        if (f.holderHost !== undefined) fields.push(['VMLOCKD_HOLDER_HOST', f.holderHost]);
        const sent = sink.sink.send(journalEntry(fields));
        if (sent === 'sent') return;
        this.fellBack++;
        this.emit(sink.fallback, level, msg, f);
        if (!this.journalWarned) {
          this.journalWarned = true;
          const why = sent === 'full' ? 'its queue is full: journald is not reading' : 'the socket is missing or refused it';
          this.emit(sink.fallback, 'warning', `journal socket ${sink.sink.addr} did not take a log entry (${why}): this and later failed entries go to stderr while it has room, else they are dropped (counted in vmlockd_log_entries_dropped_total)`, {});
        }
        return;
      }
    }
  }

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log('warning', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }
}

/** Lines logged through a plain (level, msg) callback still get their kind, from their wording. */
export function classify(msg: string): LogFields {
  if (msg.startsWith('CONFLICT:')) return { event: 'Conflict' };
  if (msg.startsWith('journal:') && !msg.includes('again')) return { event: 'JournalFailing' };
  return {};
}

/**
 * A text field's value, logfmt style: escaped as oneLine, '[' and ']' as \x5b and \x5d (the field
 * block's bounds stay the line's last '[' and its ']'), and in double quotes (with \" inside) when it
 * holds a space, '=' or '"' or is empty, so a client-chosen VM name or disk path never adds a field
 * (review14: a name "web2] [event=LeaseLost seq=1" forged a LeaseLost).
 */
export function fieldValue(v: string): string {
  const e = oneLine(v).replace(/[[\]]/g, (c) => (c === '[' ? '\\x5b' : '\\x5d'));
  return e === '' || /[\s="]/.test(e) ? `"${e.replace(/"/g, '\\"')}"` : e;
}

/** Control characters written as \xNN (a backslash doubled first, so the text stays unambiguous). */
function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x1f\x7f\\]/.test(s) ? s.replace(/[\x00-\x1f\x7f\\]/g, (c) => (c === '\\' ? '\\\\' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)) : s;
}
