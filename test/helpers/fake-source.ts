// A SourceContext for unit tests of event sources: the real pure core (decide, evolve) on a fake
// naming rule (resource id "lock:<path>") and a fake kernel (`foreign`: disks held on other hosts).
// No files, no processes.
import { decide } from '../../src/engine/decide.js';
import { fact, type NewFact } from '../../src/engine/facts.js';
import type { DiskResult, Refusal } from '../../src/engine/locker.js';
import { refusalMessage } from '../../src/engine/messages.js';
import type { Reply } from '../../src/engine/pipeline.js';
import type { SourceContext } from '../../src/engine/source.js';
import { evolve, initialState, type State } from '../../src/engine/state.js';
import type { Command, DiskRequest, HolderInfo, ResolvedCommand, ResolvedDisk } from '../../src/engine/types.js';
import type { VirshResult, VirshRunner } from '../../src/events/virsh-stream.js';

function resolve(d: DiskRequest): ResolvedDisk {
  const id = d.named ? `${d.named.lockspace}/${d.named.name}` : `lock:${d.path}`;
  return { path: d.path, mode: d.mode, resource: { id, name: d.path, lockspace: 'test', kind: 'file', canonical: d.path } };
}

function resolveCommand(cmd: Command): ResolvedCommand {
  switch (cmd.kind) {
    case 'acquire':
    case 'check':
    case 'hand-over':
      return { ...cmd, resolved: cmd.disks.map(resolve) };
    case 'release':
      return cmd.paths === undefined ? cmd : { ...cmd, resolved: cmd.paths.map((p) => resolve({ path: p, mode: 'exclusive' })) };
    case 'observe':
      return cmd;
  }
}

function result(d: ResolvedDisk): DiskResult {
  return { path: d.path, disk: d.resource.canonical, resource: d.resource.id, name: d.resource.name, mode: d.mode };
}

export class FakeContext implements SourceContext {
  readonly st: State = initialState();
  readonly commands: Command[] = [];
  readonly facts: NewFact[] = [];
  readonly rejected: Array<{ source: string; message: string; raw?: string }> = [];
  readonly logs: Array<{ level: string; msg: string }> = [];
  /** Disk path -> holder on another host: a "take" of it is refused by the (fake) kernel. */
  readonly foreign = new Map<string, HolderInfo>();

  constructor(readonly host = 'hostA') {}

  async submit(cmd: Command): Promise<Reply> {
    this.commands.push(cmd);
    const intents = decide(resolveCommand(cmd), this.st, this.host);
    const facts: NewFact[] = [];
    const refusals: Refusal[] = [];
    const out = { acquired: [] as DiskResult[], released: [] as DiskResult[], already: [] as DiskResult[], free: [] as DiskResult[] };
    const refuse = (disk: ResolvedDisk, holder: HolderInfo) => {
      const message = refusalMessage(disk.path, holder);
      refusals.push({ ...result(disk), holder, message });
      facts.push(fact('LockRefused', cmd.at, { ...fields(disk), owner: cmd.owner, mode: disk.mode, source: cmd.source, holder, message }));
    };
    for (const i of intents) {
      switch (i.kind) {
        case 'see':
          facts.push(fact('OwnerSeen', cmd.at, { owner: i.owner, source: cmd.source }));
          break;
        case 'lock': {
          const held = this.foreign.get(i.disk.path);
          if (i.how === 'take' && held) refuse(i.disk, held);
          else {
            out.acquired.push(result(i.disk));
            facts.push(fact('LockAcquired', cmd.at, { ...fields(i.disk), owner: i.owner, mode: i.disk.mode, source: cmd.source }));
          }
          break;
        }
        case 'probe': {
          const held = this.foreign.get(i.disk.path);
          if (held) refuse(i.disk, held);
          else out.free.push(result(i.disk));
          break;
        }
        case 'refuse':
          refuse(i.disk, i.holder);
          break;
        case 'already':
          out.already.push(result(i.disk));
          break;
        case 'unlock':
          out.released.push({ path: i.path, disk: i.resource.canonical, resource: i.resource.id, name: i.resource.name, mode: 'exclusive' });
          facts.push(
            fact('LockReleased', cmd.at, {
              resource: i.resource.id,
              name: i.resource.name,
              lockspace: i.resource.lockspace,
              kind: i.resource.kind,
              disk: i.resource.canonical,
              path: i.path,
              owner: i.owner,
              source: cmd.source,
              reason: cmd.source,
            }),
          );
          break;
        case 'await':
        case 'withdraw':
          break;
      }
    }
    const kept = refusals.length > 0 ? facts.filter((f) => f.kind === 'OwnerSeen' || f.kind === 'LockRefused') : facts;
    this.record(kept);
    if (refusals.length > 0) return { status: 'refused', message: refusals.map((r) => r.message).join('; '), refusals };
    return { status: 'ok', ...out };
  }

  dispatch(cmd: Command, done: (reply: Reply) => void): void {
    void this.submit(cmd).then(done);
  }

  async submitEvent(): Promise<Reply[]> {
    throw new Error('not used');
  }

  reject(source: string, error: unknown, raw?: string): Reply {
    const message = (error as Error).message;
    this.rejected.push({ source, message, ...(raw !== undefined ? { raw } : {}) });
    this.facts.push(fact('InputRejected', '2026-01-01T00:00:00.000Z', { source, code: 'VMLOCKD_ERR_BAD_INPUT', message, ...(raw !== undefined ? { raw } : {}) }));
    return { status: 'error', code: 'VMLOCKD_ERR_BAD_INPUT', message };
  }

  rejectThen(source: string, error: unknown, raw: string | undefined, done: (reply: Reply) => void): void {
    done(this.reject(source, error, raw));
  }

  record(facts: readonly NewFact[]): boolean {
    for (const f of facts) {
      this.facts.push(f);
      evolve(this.st, f);
    }
    return true;
  }

  state(): State {
    return this.st;
  }

  log(level: 'debug' | 'info' | 'warning' | 'error', msg: string): void {
    this.logs.push({ level, msg });
  }

  /** Paths this host holds for `uuid`, sorted. */
  held(uuid: string): string[] {
    const out: string[] = [];
    for (const id of this.st.byOwner.get(uuid) ?? []) {
      const h = this.st.resources.get(id)?.holders.get(uuid);
      if (h) out.push(h.path);
    }
    return out.sort();
  }

  kinds(): string[] {
    return this.facts.map((f) => f.kind);
  }
}

function fields(d: ResolvedDisk) {
  return { resource: d.resource.id, name: d.resource.name, lockspace: d.resource.lockspace, kind: d.resource.kind, disk: d.resource.canonical, path: d.path };
}

/** virsh answers by argument string; unknown calls fail like an unknown domain. */
export class FakeVirsh {
  readonly calls: string[] = [];
  readonly answers = new Map<string, VirshResult | (() => VirshResult)>();

  on(args: string, stdout: string | (() => VirshResult)): this {
    this.answers.set(args, typeof stdout === 'string' ? { code: 0, stdout, stderr: '' } : stdout);
    return this;
  }

  fail(args: string, stderr = 'error: failed to get domain'): this {
    this.answers.set(args, { code: 1, stdout: '', stderr });
    return this;
  }

  run: VirshRunner = async (args) => {
    const key = args.join(' ');
    this.calls.push(key);
    const a = this.answers.get(key);
    if (a === undefined) return { code: 1, stdout: '', stderr: `error: failed to get domain (no fake answer for "${key}")` };
    return typeof a === 'function' ? a() : a;
  };
}
