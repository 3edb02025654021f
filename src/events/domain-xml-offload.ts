// parseDomainXml off the event loop for large documents (review25a F3). The qemu hook's body and
// `virsh dumpxml` carry the whole domain XML, and any libvirt user who may define a domain may fill
// its <metadata> or <description> with megabytes: parsed on the loop, 4 MiB of tiny elements
// stopped every client, the protocol socket and the verifier for ~6 s. A document up to INLINE_MAX
// (every ordinary domain: a few KiB) is parsed at once, as before; a larger one on one lazily
// started worker thread (domain-xml-worker.ts), one document at a time, each bounded in time
// (PARSE_TIMEOUT_MS) and the thread in memory: a document that exceeds either is refused as bad
// input and the thread is replaced. The caller's reply still waits for the parse and then for the
// command's durable facts, exactly as before; only the waiting no longer blocks anyone else.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { startThread } from '../journal/young-generation.js';
import { BadInputError } from '../engine/errors.js';
import { parseDomainXml, type DomainInfo } from './domain-xml.js';
import type { FromParser, ToParser } from './domain-xml-worker.js';

/** Parsed on the loop up to this many characters: a few ms at most (an ordinary domain is 3-10 KiB). */
export const INLINE_MAX = 32 * 1024;
/** A document the thread has not parsed in this long is refused (the hook's own default timeout is 30 s). */
export const PARSE_TIMEOUT_MS = 20_000;
/** The thread's heap: an 80 MiB body (the route's limit) fits; a document that would need more is refused. */
const WORKER_HEAP_MB = 512;

function startWorker(options: WorkerOptions): Worker {
  const here = fileURLToPath(import.meta.url);
  const js = new URL('./domain-xml-worker.js', import.meta.url);
  if (!here.endsWith('.ts') || existsSync(fileURLToPath(js))) return startThread(js, options);
  // From source (uvu -r tsx): the worker gets no loader of its own; register tsx's there.
  const tsx = createRequire(import.meta.url).resolve('tsx/package.json');
  const api = pathToFileURL(join(dirname(tsx), 'dist', 'esm', 'api', 'index.mjs')).href;
  const ts = new URL('./domain-xml-worker.ts', import.meta.url).href;
  return startThread(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); })`, options);
}

interface Pending {
  readonly xml: string;
  resolve(info: DomainInfo): void;
  reject(e: Error): void;
}

class ParserThread {
  private worker: Worker | undefined;
  private readonly queue = new Map<number, Pending>();
  private nextId = 1;
  private timer: NodeJS.Timeout | undefined;
  /** The request the thread works on (the first in the queue), whose time runs. */
  private head: number | undefined;

  parse(xml: string): Promise<DomainInfo> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.queue.set(id, { xml, resolve, reject });
      const w = this.ensure();
      if (w === undefined) {
        // No thread could be started: parse here rather than refuse a VM its start.
        this.queue.delete(id);
        try {
          resolve(parseDomainXml(xml));
        } catch (e) {
          reject(e as Error);
        }
        return;
      }
      w.ref();
      w.postMessage({ id, xml } satisfies ToParser);
      this.arm();
    });
  }

  private ensure(): Worker | undefined {
    if (this.worker) return this.worker;
    let w: Worker;
    try {
      w = startWorker({ name: 'vmlockd-domain-xml', resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB } });
    } catch {
      return undefined;
    }
    w.on('message', (m: FromParser) => this.answer(m));
    w.on('error', (e: Error & { code?: string }) => this.lost(w, e));
    w.on('exit', () => this.lost(w));
    this.worker = w;
    return w;
  }

  /** Time the request now at the head of the queue (the thread takes them in order). */
  private arm(): void {
    const first = this.queue.keys().next();
    if (first.done) {
      this.head = undefined;
      clearTimeout(this.timer);
      this.worker?.unref();
      return;
    }
    if (this.head === first.value) return;
    this.head = first.value;
    clearTimeout(this.timer);
    const id = first.value;
    this.timer = setTimeout(() => this.expire(id), PARSE_TIMEOUT_MS);
    this.timer.unref();
  }

  private answer(m: FromParser): void {
    const p = this.queue.get(m.id);
    if (!p) return;
    this.queue.delete(m.id);
    if ('info' in m) p.resolve(m.info);
    else p.reject(m.bad ? new BadInputError(m.message) : new Error(`domain XML parser: ${m.message}`));
    this.arm();
  }

  private expire(id: number): void {
    const p = this.queue.get(id);
    if (!p || this.head !== id) return;
    this.queue.delete(id);
    p.reject(new BadInputError(`domain XML of ${p.xml.length} characters was not parsed within ${PARSE_TIMEOUT_MS / 1000} s; refused`));
    this.restart();
  }

  /** The thread died: the request it worked on is refused if it ran out of memory; the rest go to a new thread. */
  private lost(w: Worker, e?: Error & { code?: string }): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    const first = this.queue.keys().next();
    if (!first.done) {
      const p = this.queue.get(first.value)!;
      this.queue.delete(first.value);
      if (e?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
        p.reject(new BadInputError(`domain XML of ${p.xml.length} characters needs more than the parser's ${WORKER_HEAP_MB} MiB of memory; refused`));
      } else {
        p.reject(new Error(`domain XML parser thread ended (${e?.message ?? 'exited'})`));
      }
    }
    this.head = undefined;
    this.resend();
  }

  private restart(): void {
    const w = this.worker;
    this.worker = undefined;
    this.head = undefined;
    if (w) void w.terminate();
    this.resend();
  }

  private resend(): void {
    clearTimeout(this.timer);
    if (this.queue.size === 0) return;
    const w = this.ensure();
    for (const [id, p] of [...this.queue]) {
      if (w === undefined) {
        this.queue.delete(id);
        try {
          p.resolve(parseDomainXml(p.xml));
        } catch (e) {
          p.reject(e as Error);
        }
      } else {
        w.postMessage({ id, xml: p.xml } satisfies ToParser);
      }
    }
    if (w) {
      w.ref();
      this.arm();
    }
  }
}

let thread: ParserThread | undefined;

/**
 * parseDomainXml, without holding the event loop for a large document: the same DomainInfo, the
 * same BadInputError for bad input.
 */
export async function parseDomainXmlOffLoop(xml: string): Promise<DomainInfo> {
  if (typeof xml !== 'string' || xml.length <= INLINE_MAX) return parseDomainXml(xml);
  thread ??= new ParserThread();
  return thread.parse(xml);
}
