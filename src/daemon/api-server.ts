// The control API: HTTP+JSON over a Unix socket (mode 0600). Every route maps onto engine commands;
// nothing here touches a lock file.
import * as fs from 'node:fs';
import * as http from 'node:http';
import { BadInputError, ERROR_CODES, type ErrorCode } from '../engine/errors.js';
import type { Engine, Reply } from '../engine/pipeline.js';
import { lockRequests } from '../engine/plan.js';
import { canonicalPath } from '../engine/resolve.js';
import type { Command, VmEvent } from '../engine/types.js';
import type { BoundedLine } from '../events/jsonl.js';
import { countJsonValues } from './json-bounds.js';
import { LineSplitter, MAX_JSON_DEPTH, MAX_LINE_BYTES, checkDepth, checkDisks, checkOwner, checkTime, parseEventLine } from '../events/jsonl.js';
import { HookRoute } from './hook-route.js';
import type { LogFields } from './log.js';
import { native } from '../engine/native.js';
import { BufferBudget } from '../events/virtlockd/buffer-budget.js';

/**
 * Who may use the control API, from the peer's credentials (SO_PEERCRED), not only the socket file's
 * mode: root, the daemon's own uid, or a member (primary group) of the socket file's group, which an
 * operator sets with chgrp (and mode 0660) to let a group of operators in.
 */
export function peerAllowed(cred: { uid: number; gid: number }, daemonUid: number, socketGid: number | null): boolean {
  return cred.uid === 0 || cred.uid === daemonUid || (socketGid !== null && cred.gid === socketGid);
}

const refusedPeers = new WeakMap<object, string>();

export interface ApiContext {
  readonly engine: Engine;
  status(): Record<string, unknown>;
  locks(): unknown[];
  audit(q: AuditQuery): unknown[];
  log(level: 'info' | 'warning' | 'error', msg: string, fields?: LogFields): void;
  /** virtlockd's lease rules from the live config (auto_disk_leases, require_lease_for_disks). */
  leaseRules?(): { autoDiskLeases: boolean; requireLeaseForDisks: boolean };
  /** Request bodies held at once, across connections (REQUEST_BYTES_MAX; tests set it lower). */
  readonly maxRequestBytes?: number;
}

export interface AuditQuery {
  owner?: string;
  disk?: string;
  since?: string;
  until?: string;
  limit?: number;
  kinds?: string[];
  host?: string;
  /** Only facts with seq > afterSeq (the next page after the previous page's last seq). */
  afterSeq?: number;
  /** A page of a paged read: a disk's or VM's facts read through its own index, in seq order. */
  page?: boolean;
}

/**
 * GET /v1/audit answers at most this many facts when no `limit` is given, and never more than
 * MAX_AUDIT_LIMIT: the read and its JSON run on the event loop, so a whole journal in one answer
 * froze every client for seconds (review25a F13: 108k facts, 8.3 s). Page on with `after_seq`.
 */
export const DEFAULT_AUDIT_LIMIT = 1_000;
export const MAX_AUDIT_LIMIT = 10_000;

/** A request body's limit: far beyond any acquire, release or check. */
export const MAX_BODY = 1 << 20;
/** /v1/hook carries a whole domain XML (the hook reads at most 64 MiB of it; JSON escaping adds some). */
export const MAX_HOOK_BODY = 80 << 20;
/**
 * At most this many JSON values (keys, elements, containers) in a /v1/hook body, counted before it
 * is parsed: the hook sends a handful of fields and one domain XML string; millions of keys would
 * hold the event loop in JSON.parse for seconds (review25b F1, json-bounds.ts).
 */
export const MAX_HOOK_JSON_VALUES = 10_000;
/**
 * Request bodies held by the control API at once, across connections, from their first byte until
 * their answer is sent: a /v1/hook body may be 80 MiB, and ten of them at once (or their domain XML
 * queued for the parser) would hold gigabytes (review27). Past it, the requests holding the most are
 * answered 503 and closed, largest first, until the rest fits: one body of the largest size fits.
 */
export const REQUEST_BYTES_MAX = 96 << 20;

/** A request let go because the bodies held together passed REQUEST_BYTES_MAX. */
class OverBudgetError extends Error {}

/** A body over its limit is read (and dropped) up to this much, so the client gets its 413, not a reset. */
const MAX_DRAIN = 128 << 20;

/** A body over the limit: HTTP 413 naming the limit. */
class TooLargeError extends BadInputError {
  constructor(readonly limit: number, route: string) {
    super(`request body for ${route} is larger than the limit of ${limit} bytes (${limit >> 20} MiB)`);
  }
}

/** The request was cut off by its client: nobody is left to answer. */
function aborted(req: http.IncomingMessage, e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return !req.complete && (req.destroyed || code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (e as Error)?.message === 'aborted');
}

export function httpStatusOf(reply: Reply): number {
  if (reply.status === 'ok') return 200;
  if (reply.status === 'refused') return 409;
  const exit = reply.code in ERROR_CODES ? ERROR_CODES[reply.code as ErrorCode].exit : 1;
  return exit === 2 ? 400 : 500;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** One request's share of REQUEST_BYTES_MAX: its bytes count until its response is closed. */
interface Held {
  fail(e: Error): void;
  /** Let go (over the budget): its further bytes are dropped and not counted. */
  dropped: boolean;
}

function readJson(req: http.IncomingMessage, res: http.ServerResponse, budget: BufferBudget<Held>, route: string, limit = MAX_BODY, maxValues?: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const held: Held = {
      fail: (e) => {
        held.dropped = true;
        chunks.length = 0;
        reject(e);
      },
      dropped: false,
    };
    res.once('close', () => budget.set(held, 0));
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Let go: the rest is read and dropped (its answer waits for the end, so the client reads it
      // rather than a reset), up to MAX_DRAIN.
      if (held.dropped) {
        if (size > MAX_DRAIN) req.destroy();
        return;
      }
      if (size > limit && !over) {
        over = true;
        chunks.length = 0;
        budget.set(held, 0);
      }
      if (!over) {
        chunks.push(c);
        budget.set(held, size);
        const total = budget.total;
        for (const h of budget.over()) {
          const bytes = budget.get(h);
          budget.set(h, 0);
          h.fail(new OverBudgetError(`the control API holds ${total} bytes of request bodies at once, over the limit of ${budget.max} bytes for all of them together; this request held the most (${bytes} bytes) and is refused: retry it`));
        }
      }
      else if (size > MAX_DRAIN) {
        // Not a client that made a mistake: answer now and close.
        reject(new TooLargeError(limit, route));
      }
    });
    req.on('end', () => {
      if (held.dropped) return;
      if (over) return reject(new TooLargeError(limit, route));
      const bytes = Buffer.concat(chunks);
      if (maxValues !== undefined && countJsonValues(bytes, maxValues) > maxValues) {
        return reject(new BadInputError(`request body (${bytes.length} bytes) holds more than ${maxValues} JSON values (keys, elements and objects) for ${route}; refused unparsed`));
      }
      const text = bytes.toString('utf8');
      if (text.trim() === '') return resolve({});
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch (e) {
        return reject(new BadInputError(`request body is not valid JSON: ${(e as Error).message}`));
      }
      try {
        checkDepth(v, MAX_JSON_DEPTH, 'request body');
      } catch (e) {
        return reject(e);
      }
      resolve(v);
    });
    req.on('error', reject);
  });
}

/**
 * What an InputRejected fact keeps of a hook body: its first 4 KiB and its size. Each value is cut
 * before it is serialized, so a domain XML of megabytes is not copied whole to keep 4 KiB of it.
 */
function boundedRaw(body: Record<string, unknown>): string {
  const cut = (v: unknown): unknown => (typeof v === 'string' && v.length > 4096 ? `${v.slice(0, 4096)}… (${v.length} characters)` : v);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) out[k] = cut(v);
  const text = JSON.stringify(out);
  return text.length > 4096 ? `${text.slice(0, 4096)}… (${text.length} characters)` : text;
}

function obj(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadInputError(`request body must be a JSON object`);
  return v as Record<string, unknown>;
}

function paths(v: unknown, field: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new BadInputError(`${field} must be an array of absolute paths`);
  return v.map((p, i) => {
    if (typeof p !== 'string' || !p.startsWith('/')) throw new BadInputError(`${field}[${i}] must be an absolute path, got ${JSON.stringify(p)}`);
    return p;
  });
}

function commandFrom(kind: 'acquire' | 'release' | 'check', body: Record<string, unknown>, now: string): Command {
  const owner = checkOwner(body.vm);
  // The daemon's own clock and label, never the body's: a body saying `source: "virtlockd"` would put
  // the lock under a protocol connection's close rule, and an `at` would back-date the journal. The
  // body's `at` is kept beside the daemon's time as the client's (issue 12.6).
  const at = now;
  const clientAt = body.at === undefined ? {} : { clientAt: checkTime(body.at, 'at') };
  const source = 'api';
  if (kind === 'release') {
    const p = paths(body.disks, 'disks');
    return p === undefined ? { kind, owner, at, ...clientAt, source } : { kind, owner, paths: p, at, ...clientAt, source };
  }
  const disks = checkDisks(body.disks);
  if (disks.length === 0) throw new BadInputError(`disks must list at least one disk to ${kind}`);
  return { kind, owner, disks: lockRequests(disks), at, ...clientAt, source };
}

export function createApiServer(ctx: ApiContext): http.Server {
  // One per server: it remembers incoming migrations between the hook's calls.
  const hook = new HookRoute({ submit: (cmd) => ctx.engine.submit(cmd), host: () => String(ctx.status().host), log: (level, msg, fields) => ctx.log(level, msg, fields), ...(ctx.leaseRules ? { leaseRules: ctx.leaseRules } : {}) });
  const budget = new BufferBudget<Held>(ctx.maxRequestBytes ?? REQUEST_BYTES_MAX);
  const server = http.createServer((req, res) => {
    const denied = refusedPeers.get(req.socket);
    if (denied !== undefined) {
      // Logged at connection, not journaled: an unprivileged caller must not be able to fill the journal.
      res.setHeader('connection', 'close');
      return send(res, 403, { status: 'error', code: 'VMLOCKD_ERR_DENIED', message: denied });
    }
    handle(ctx, req, res, hook, budget).catch((e: unknown) => {
      if (e instanceof OverBudgetError) {
        // Not journaled: not the client's input that was wrong, only too much of it at once.
        ctx.log('warning', `API ${req.method} ${req.url}: ${e.message}`);
        const answer = () => {
          if (res.headersSent || res.destroyed) return;
          res.setHeader('connection', 'close');
          send(res, 503, { status: 'error', code: 'VMLOCKD_ERR_IO', message: e.message });
        };
        // Answered once the rest of the body is read (and dropped): a reply while the client still
        // writes would reach it as a reset.
        if (req.complete) answer();
        else req.once('end', answer);
        return;
      }
      if (!(e instanceof BadInputError) && aborted(req, e)) {
        // The client went away mid-request: nothing to answer, nothing to change, no stack.
        ctx.log('info', `API ${req.method} ${req.url}: the client closed the connection before the request was complete`);
        return;
      }
      const bad = e instanceof BadInputError;
      if (!bad) ctx.log('error', `API ${req.method} ${req.url} failed: ${(e as Error).stack ?? e}`);
      // Answered once the InputRejected fact is durable (or with the journal's error if it is not).
      ctx.engine.rejectThen('api', e, undefined, (reply) => {
        if (res.headersSent || res.destroyed) return;
        const unjournaled = reply.status === 'error' && reply.code === 'VMLOCKD_ERR_JOURNAL';
        if (e instanceof TooLargeError) {
          res.setHeader('connection', 'close');
          if (!req.complete) res.once('finish', () => req.destroy());
          return send(res, unjournaled ? httpStatusOf(reply) : 413, reply);
        }
        if (unjournaled) return send(res, httpStatusOf(reply), reply);
        send(res, bad ? 400 : 500, bad ? reply : { status: 'error', code: 'VMLOCKD_ERR_INTERNAL', message: (e as Error).message });
      });
    });
  });
  server.keepAliveTimeout = 60_000;
  // CONNECT (a proxy tunnel): http hands it to 'connect', and without a listener closes the
  // connection unanswered. Answered 405 naming it, as any request this API does not serve.
  server.on('connect', (req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
    const text = JSON.stringify({ status: 'error', code: 'VMLOCKD_ERR_USAGE', message: `method CONNECT is not served by the vmlockd control API (CONNECT ${String(req.url ?? '').slice(0, 200)}); use GET or POST on /v1/...` }) + '\n';
    socket.on('error', () => undefined);
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nallow: GET, POST\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`);
  });
  const daemonUid = process.geteuid?.() ?? 0;
  server.on('connection', (socket: import('node:net').Socket) => {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return; // not a Unix socket (tests on TCP): nothing to check
    let cred: { uid: number; gid: number; pid: number };
    try {
      cred = native.peerCred(fd);
    } catch (e) {
      refusedPeers.set(socket, `the control API cannot read the caller's credentials: ${(e as Error).message}`);
      return;
    }
    let socketGid: number | null = null;
    try {
      const addr = server.address();
      if (typeof addr === 'string') socketGid = fs.statSync(addr).gid;
    } catch {
      // the socket file is gone (a stop): only root and our uid
    }
    if (!peerAllowed(cred, daemonUid, socketGid)) {
      const message = `permission denied: uid ${cred.uid} (gid ${cred.gid}, pid ${cred.pid}) may not use the vmlockd control API; allowed are root, uid ${daemonUid} and the socket's group${socketGid !== null ? ` (gid ${socketGid})` : ''}`;
      refusedPeers.set(socket, message);
      ctx.log('warning', `API: refused a connection: ${message}`);
    }
  });
  return server;
}

/** `?disk=` of /v1/audit: an absolute path, canonical as the journal names it; never a 500 (a NUL made realpath throw). */
function auditDisk(disk: string): string {
  if (!disk.startsWith('/') || disk.includes('\0')) throw new BadInputError(`disk must be an absolute path, got ${JSON.stringify(disk.slice(0, 200))}`);
  try {
    return canonicalPath(disk);
  } catch (e) {
    throw new BadInputError(`disk ${JSON.stringify(disk.slice(0, 200))} cannot be resolved: ${(e as Error).message}`);
  }
}

/**
 * The request target as a URL. Parsed as a path below a fixed origin, never as a URL of its own:
 * `new URL('//', base)` reads "//" as a host and threw "Invalid URL", a 500 with a stack in the log
 * (found by fuzzing), and `//v1/status` would have lost its first segment to the host.
 */
export function requestUrl(target: string): URL {
  try {
    return new URL(`http://vmlockd${target.startsWith('/') ? '' : '/'}${target}`);
  } catch {
    throw new BadInputError(`request target ${JSON.stringify(target.slice(0, 200))} is not a valid path`);
  }
}

async function handle(ctx: ApiContext, req: http.IncomingMessage, res: http.ServerResponse, hook: HookRoute, budget: BufferBudget<Held>): Promise<void> {
  const url = requestUrl(req.url ?? '/');
  const route = `${req.method} ${url.pathname}`;
  const now = new Date().toISOString();
  switch (route) {
    case 'GET /v1/status':
      return send(res, 200, ctx.status());
    case 'GET /v1/locks':
      return send(res, 200, ctx.locks());
    case 'GET /v1/audit': {
      const q: AuditQuery = {};
      const vm = url.searchParams.get('vm');
      const disk = url.searchParams.get('disk');
      const since = url.searchParams.get('since');
      const until = url.searchParams.get('until');
      const limit = url.searchParams.get('limit');
      const kind = url.searchParams.get('kind');
      const host = url.searchParams.get('host');
      const afterSeq = url.searchParams.get('after_seq');
      if (vm) q.owner = vm;
      if (disk) q.disk = auditDisk(disk);
      if (since) q.since = checkTime(since, 'since');
      if (until) q.until = checkTime(until, 'until');
      if (host) q.host = host;
      if (kind) q.kinds = kind.split(',');
      q.limit = DEFAULT_AUDIT_LIMIT;
      if (limit) {
        const n = Number(limit);
        if (!Number.isInteger(n) || n <= 0) throw new BadInputError(`limit must be a positive integer, got ${JSON.stringify(limit)}`);
        if (n > MAX_AUDIT_LIMIT) throw new BadInputError(`limit must be at most ${MAX_AUDIT_LIMIT} (page on with after_seq=<the last seq answered>), got ${n}`);
        q.limit = n;
      }
      if (afterSeq) {
        const n = Number(afterSeq);
        if (!/^\d+$/.test(afterSeq) || !Number.isSafeInteger(n)) throw new BadInputError(`after_seq must be a non-negative integer, got ${JSON.stringify(afterSeq)}`);
        q.afterSeq = n;
      }
      q.page = true;
      let facts: unknown[];
      try {
        facts = ctx.audit(q);
      } catch (e) {
        // Another process holds the journal's write lock: try again (no stack, nothing journaled).
        if ((e as { code?: unknown })?.code !== 'VMLOCKD_ERR_JOURNAL_BUSY') throw e;
        res.setHeader('retry-after', '1');
        return send(res, 503, { status: 'error', code: 'VMLOCKD_ERR_JOURNAL_BUSY', message: (e as Error).message });
      }
      if (facts.length === q.limit) {
        // Perhaps more: where the next page starts (the body stays a plain array).
        const last = facts[facts.length - 1] as { seq?: unknown };
        if (typeof last?.seq === 'number') res.setHeader('x-vmlockd-next-after-seq', String(last.seq));
      }
      return send(res, 200, facts);
    }
    case 'POST /v1/acquire':
    case 'POST /v1/release':
    case 'POST /v1/check': {
      const kind = url.pathname.slice(4) as 'acquire' | 'release' | 'check';
      const body = obj(await readJson(req, res, budget, route));
      let reply: Reply;
      try {
        reply = await ctx.engine.submit(commandFrom(kind, body, now));
      } catch (e) {
        if (!(e instanceof BadInputError)) throw e;
        reply = await rejected(ctx, 'api', e, JSON.stringify(body));
      }
      return send(res, httpStatusOf(reply), reply);
    }
    case 'POST /v1/events':
      return ingest(ctx, req, res);
    case 'POST /v1/hook': {
      // The qemu hook (src/cli/hook.ts): arguments and domain XML in, the decision out.
      const body = obj(await readJson(req, res, budget, route, MAX_HOOK_BODY, MAX_HOOK_JSON_VALUES));
      try {
        const reply = await hook.handle(body);
        return send(res, httpStatusOf(reply), reply);
      } catch (e) {
        if (!(e instanceof BadInputError)) throw e;
        const reply = await rejected(ctx, 'hook', e, boundedRaw(body));
        return send(res, httpStatusOf(reply), reply);
      }
    }
    default:
      return send(res, 404, { status: 'error', code: 'VMLOCKD_ERR_USAGE', message: `no such endpoint: ${route}` });
  }
}

/**
 * JSON lines in, one JSON result line out per input line, in order. Lines are submitted as they
 * arrive (lanes keep each VM's events in order) and answered as their facts become durable.
 *
 * Per chunk, not per line: every line of a chunk is split, parsed and submitted in one synchronous
 * pass (no promise per line), and the answers that are ready, in order, go out in one write per
 * turn of the event loop (one group commit answers hundreds of lines at once). At most
 * MAX_IN_FLIGHT lines wait for an answer; past that, or while the client does not read its answers
 * (the response's buffer is full), the request is not read on.
 */
async function ingest(ctx: ApiContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  const answers = new OrderedAnswers(res);
  const splitter = new LineSplitter(MAX_LINE_BYTES);
  let lineNo = 0;
  const take = (item: BoundedLine): void => {
    const n = ++lineNo;
    // A rejected line is answered like any command: once its InputRejected fact is durable.
    const reject = (slot: number, e: unknown, raw: string | undefined): void =>
      ctx.engine.rejectThen('jsonl', e, raw, (r) => answers.put(slot, JSON.stringify({ line: n, ...r })));
    if ('tooLong' in item) {
      const e = new BadInputError(`line ${n} is ${item.tooLong} bytes long, over the limit of ${MAX_LINE_BYTES} bytes per line; skipped (is this a JSON-lines file?)`);
      reject(answers.slot(), e, undefined);
      return;
    }
    const line = item.line;
    let event: VmEvent | null;
    try {
      event = parseEventLine(line, 'jsonl', new Date().toISOString());
    } catch (e) {
      reject(answers.slot(), e, line);
      return;
    }
    if (event === null) return;
    const slot = answers.slot();
    try {
      ctx.engine.dispatchEvent(event, (replies) => answers.put(slot, JSON.stringify({ line: n, ...merge(replies) })));
    } catch (e) {
      reject(slot, e, line);
    }
  };
  // A chunk holds thousands of short lines, and the next one is often buffered already, so without a
  // yield a burst took its locks back to back with no turn of the event loop between: no group
  // commit, no other client answered (review25b F6: 3,000 `started` lines, status waited 4.4 s).
  let sliceStart = performance.now();
  let sliceLines = 0;
  for await (const chunk of req) {
    for (const item of splitter.push(chunk as Buffer)) {
      take(item);
      if (++sliceLines >= INGEST_SLICE_LINES || performance.now() - sliceStart >= INGEST_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
        sliceLines = 0;
      }
    }
    if (answers.waiting() >= MAX_IN_FLIGHT || answers.blocked()) await answers.room(MAX_IN_FLIGHT);
  }
  const last = splitter.end();
  if (last !== undefined) take(last);
  await answers.done();
  res.end();
}

/** `engine.rejectThen` as a promise: the rejection once its fact is durable, else the journal's error. */
function rejected(ctx: ApiContext, source: string, e: unknown, raw: string | undefined): Promise<Reply> {
  return new Promise((resolve) => ctx.engine.rejectThen(source, e, raw, resolve));
}

/** Lines waiting for their answers, at most (the request is not read on past this). */
const MAX_IN_FLIGHT = 8192;
/** An ingest stream gives the event loop a turn after this many lines or this much time, whichever first. */
const INGEST_SLICE_LINES = 256;
const INGEST_SLICE_MS = 5;

/**
 * The answers of one ingest stream, written in the order of their lines however they complete:
 * `slot()` reserves the next place, `put()` fills it, and whatever is ready from the front goes out
 * in one write, once per turn of the microtask queue (a group commit answers many lines at once).
 */
class OrderedAnswers {
  private readonly ready = new Map<number, string>();
  private next = 0;
  private head = 0;
  private scheduled = false;
  private wake: (() => void) | undefined;
  private full = false;

  constructor(private readonly res: http.ServerResponse) {
    res.on('drain', () => {
      this.full = false;
      this.poke();
    });
    res.on('close', () => this.poke());
  }

  slot(): number {
    return this.next++;
  }

  put(slot: number, text: string): void {
    this.ready.set(slot, text);
    if (slot === this.head && !this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.write());
    }
  }

  /** Lines not answered yet. */
  waiting(): number {
    return this.next - this.head;
  }

  /** The client is not reading its answers: the response's buffer is full. */
  blocked(): boolean {
    return this.full;
  }

  /** Resolves once fewer than `max` lines wait and the response takes writes again (or is gone). */
  room(max: number): Promise<void> {
    return this.until(() => (this.waiting() < max && !this.full) || this.res.destroyed);
  }

  /** Resolves once every line is answered and written (or the response is gone). */
  done(): Promise<void> {
    return this.until(() => this.waiting() === 0 || this.res.destroyed);
  }

  private until(ok: () => boolean): Promise<void> {
    if (ok()) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = () => {
        if (!ok()) return;
        this.wake = undefined;
        resolve();
      };
    });
  }

  private poke(): void {
    this.wake?.();
  }

  private write(): void {
    this.scheduled = false;
    let text = '';
    while (this.ready.has(this.head)) {
      text += this.ready.get(this.head)! + '\n';
      this.ready.delete(this.head);
      this.head++;
    }
    if (text !== '' && !this.res.destroyed && !this.res.write(text)) this.full = true;
    this.poke();
  }
}

/** One event may plan several commands; its result is the first failure, else everything done. */
function merge(replies: Reply[]): Reply {
  const bad = replies.find((r) => r.status !== 'ok');
  if (bad) return bad;
  if (replies.length === 1) return replies[0]!;
  const out = { status: 'ok' as const, acquired: [] as unknown[], released: [] as unknown[], already: [] as unknown[], free: [] as unknown[] };
  for (const r of replies) {
    if (r.status !== 'ok') continue;
    out.acquired.push(...r.acquired);
    out.released.push(...r.released);
    out.already.push(...r.already);
    out.free.push(...r.free);
  }
  return out as Reply;
}

export async function listenUnix(server: http.Server, socketPath: string): Promise<void> {
  // A socket file left by a crashed daemon refuses new binds; the instance guard already proved
  // no live daemon owns this state, so the file is stale.
  try {
    fs.unlinkSync(socketPath);
  } catch {
    // absent
  }
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  fs.chmodSync(socketPath, 0o600);
}
