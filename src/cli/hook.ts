// `vmlockd hook qemu NAME OP SUBOP [EXTRA] [--socket PATH] [--fail-open] [--timeout S]`: libvirt's
// qemu hook, the synchronous veto. libvirt runs it with the domain XML on stdin and aborts the
// operation on a non-zero exit, showing our stderr to the user. So:
// - every call that means nothing to locks exits 0 at once, without reading stdin or the socket:
//   a failing `reconnect begin` makes libvirt KILL the running QEMU;
// - stdout stays empty: for `migrate begin` and `restore begin` libvirt reads it as replacement XML;
// - a refusal is ONE stderr line naming the disk, its holder and how to look closer;
// - an unreachable daemon fails closed (the VM does not start without its locks) unless --fail-open.
// This module is kept small (node:net through ./unix-http.ts and the argument mapping only): libvirt waits for it on
// every VM start. The daemon parses the XML (POST /v1/hook, src/daemon/hook-route.ts).
import { hookAction, type HookAction } from '../events/hook-args.js';

/** The socket of the packaged set-up (contrib/libvirt-hook-qemu passes it explicitly). */
export const DEFAULT_HOOK_SOCKET = '/run/vmlockd/vmlockd.sock';
const DEFAULT_TIMEOUT_S = 30;
const MAX_XML = 64 << 20;

export interface HookIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stderr: { write(s: string): unknown };
  readonly env: NodeJS.ProcessEnv;
}

const USAGE = 'usage: vmlockd hook qemu NAME OP SUBOP [EXTRA] [--socket PATH] [--fail-open] [--timeout SECONDS] (domain XML on stdin)';

interface HookArgs {
  readonly positionals: string[];
  readonly socket?: string;
  readonly failOpen: boolean;
  readonly timeoutS: number;
  /** An option we do not know; only reported when the call has something to do. */
  readonly bad?: string;
}

function parse(argv: readonly string[]): HookArgs {
  const positionals: string[] = [];
  let socket: string | undefined;
  let failOpen = false;
  let timeoutS = DEFAULT_TIMEOUT_S;
  let bad: string | undefined;
  let optionsDone = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (optionsDone || !a.startsWith('--')) {
      positionals.push(a);
    } else if (a === '--') {
      optionsDone = true;
    } else if (a === '--fail-open') {
      failOpen = true;
    } else if (a === '--socket' || a === '--timeout') {
      const v = argv[++i];
      if (v === undefined) bad ??= `${a} needs a value`;
      else if (a === '--socket') socket = v;
      else timeoutS = Number(v);
    } else if (a.startsWith('--socket=')) {
      socket = a.slice('--socket='.length);
    } else if (a.startsWith('--timeout=')) {
      timeoutS = Number(a.slice('--timeout='.length));
    } else {
      bad ??= `unknown option ${a}`;
    }
  }
  if (!(timeoutS > 0)) bad ??= `--timeout must be a positive number of seconds`;
  return { positionals, failOpen, timeoutS, ...(socket !== undefined ? { socket } : {}), ...(bad !== undefined ? { bad } : {}) };
}

function readAll(stdin: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stdin.on('data', (c: Buffer | string) => {
      const b = typeof c === 'string' ? Buffer.from(c) : c;
      size += b.length;
      if (size > MAX_XML) reject(new Error(`the domain XML on stdin is larger than ${MAX_XML} bytes`));
      else chunks.push(b);
    });
    stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stdin.on('error', reject);
  });
}

type Answer = { kind: 'reply'; status: number; body: Record<string, any> } | { kind: 'unreachable'; why: string };

async function post(socketPath: string, body: string, timeoutMs: number): Promise<Answer> {
  // Loaded here, not at the top: the no-op calls (most of libvirt's hook calls) never need it.
  const { BadAnswer, unixRequest } = await import('./unix-http.js');
  let answer;
  try {
    answer = await unixRequest(socketPath, 'POST', '/v1/hook', body, timeoutMs);
  } catch (e) {
    if (e instanceof BadAnswer) return { kind: 'unreachable', why: e.message };
    const code = (e as NodeJS.ErrnoException).code;
    return { kind: 'unreachable', why: code === 'ENOENT' ? 'no socket there' : code === 'ECONNREFUSED' ? 'nothing listens on it' : (e as Error).message };
  }
  try {
    return { kind: 'reply', status: answer.status, body: JSON.parse(answer.body) as Record<string, any> };
  } catch {
    return { kind: 'reply', status: answer.status, body: { status: 'error', message: `vmlockd answered HTTP ${answer.status} with a body that is not JSON: ${answer.body.slice(0, 120)}` } };
  }
}

function verb(op: string): string {
  return op === 'migrate' ? 'migrate in' : op === 'restore' ? 'restore' : op === 'release' ? 'release the locks of' : 'start';
}

/** The one line libvirt shows the user when we refuse. */
export function refusalLine(name: string, op: string, body: Record<string, any>): string {
  const refusals = Array.isArray(body.refusals) ? (body.refusals as Array<Record<string, any>>) : [];
  const first = refusals[0];
  const what = first?.message ?? body.message ?? 'a disk is locked by another owner';
  const more = refusals.length > 1 ? ` (and ${refusals.length - 1} more disk(s))` : '';
  const disk = first?.path ?? first?.disk;
  const host = first?.holder?.host;
  const inspect = `inspect with \`vmlockd locks\`${host ? ` on host ${host}` : ''}${disk ? ` or \`vmlockd audit --disk ${disk}\`` : ''}`;
  return `vmlockd: cannot ${verb(op)} VM ${name}: ${what}${more}; ${inspect}`;
}

export async function runHook(argv: string[], io: HookIo = { stdin: process.stdin, stderr: process.stderr, env: process.env }): Promise<number> {
  const args = parse(argv);
  const [driver, name, op, subop, extra] = args.positionals;
  if (driver !== 'qemu' || name === undefined || op === undefined || subop === undefined) {
    io.stderr.write(`vmlockd hook: ${driver !== undefined && driver !== 'qemu' ? `only the qemu hook is supported, got ${JSON.stringify(driver)}` : 'missing arguments'}\n${USAGE}\n`);
    return 2;
  }
  const action: HookAction = hookAction(op, subop);
  if (action === 'noop') return 0;
  if (args.bad) {
    io.stderr.write(`vmlockd hook: ${args.bad}\n${USAGE}\n`);
    return 2;
  }
  if (io.stdin.isTTY) {
    io.stderr.write(`vmlockd hook: expects the domain XML on stdin (libvirt passes it)\n${USAGE}\n`);
    return 2;
  }
  const socket = args.socket ?? io.env.VMLOCKD_SOCKET ?? DEFAULT_HOOK_SOCKET;
  let xml: string;
  try {
    xml = await readAll(io.stdin);
  } catch (e) {
    io.stderr.write(`vmlockd: cannot ${verb(op)} VM ${name}: reading the domain XML failed: ${(e as Error).message}\n`);
    return 1;
  }
  // A 503 is the daemon holding too many request bytes at once (api-server.ts REQUEST_BYTES_MAX), not
  // an answer about this VM: asked again, with a growing pause, while the hook's time lasts.
  const deadline = Date.now() + args.timeoutS * 1000;
  const request = JSON.stringify({ driver, name, op, subop, extra: extra ?? '-', xml });
  let answer = await post(socket, request, args.timeoutS * 1000);
  for (let pause = 100; answer.kind === 'reply' && answer.status === 503 && Date.now() + pause < deadline; pause = Math.min(pause * 2, 2000)) {
    await new Promise((r) => setTimeout(r, pause));
    answer = await post(socket, request, Math.max(1, deadline - Date.now()));
  }

  if (answer.kind === 'unreachable') {
    if (args.failOpen) {
      io.stderr.write(`vmlockd: warning: cannot reach vmlockd at ${socket} (${answer.why}); --fail-open lets VM ${name} ${verb(op)} WITHOUT disk locks\n`);
      return 0;
    }
    if (action === 'release') {
      io.stderr.write(`vmlockd: cannot reach vmlockd at ${socket} (${answer.why}) to release the locks of VM ${name}; vmlockd releases them when it reconciles with libvirt (libvirt_uri), or run \`vmlockd release --vm UUID\`\n`);
      return 1;
    }
    io.stderr.write(`vmlockd: cannot ${verb(op)} VM ${name}: vmlockd is unreachable at ${socket} (${answer.why}), and a VM must not run without its disk locks; start vmlockd (or install the hook with --fail-open)\n`);
    return 1;
  }

  const body = answer.body;
  if (body.status === 'ok') {
    for (const u of (Array.isArray(body.unprotected) ? body.unprotected : []) as Array<{ target: string; reason: string }>) {
      io.stderr.write(`vmlockd: warning: VM ${name} disk ${u.target} is not protected by a lock: ${u.reason}\n`);
    }
    return 0;
  }
  if (body.status === 'refused') {
    io.stderr.write(refusalLine(name, op, body) + '\n');
    return 3;
  }
  io.stderr.write(`vmlockd: cannot ${verb(op)} VM ${name}: ${body.message ?? `vmlockd answered HTTP ${answer.status}`}\n`);
  // 400: bad input; 413: a domain XML over the daemon's limit (also bad input).
  return answer.status === 400 || answer.status === 413 ? 2 : 1;
}
