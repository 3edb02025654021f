// decide: a resolved command and the current state become intents for the locker. Pure.
//
// Conflicts between owners of this host are decided here, from the state: one host holds one
// open file description per resource, so the kernel cannot tell two local VMs apart. Conflicts
// with other hosts are the kernel's to decide when the locker applies a "take".
import type { State } from './state.js';
import type { HolderInfo, Intent, Owner, ResolvedCommand, ResolvedDisk } from './types.js';

export function decide(cmd: ResolvedCommand, state: State, host: string): Intent[] {
  // One array for the command's intents, the owner's `see` first (issue 13: no spreads of
  // per-part arrays on every command).
  const out: Intent[] = [];
  if (!ownerKnown(cmd.owner, state)) out.push({ kind: 'see', owner: cmd.owner });
  switch (cmd.kind) {
    case 'acquire':
      return decideAcquire(out, mergeDuplicates(cmd.resolved), cmd.owner, state, host, 'lock');
    case 'check':
      return decideAcquire(out, mergeDuplicates(cmd.resolved), cmd.owner, state, host, 'probe');
    case 'release':
      return decideRelease(out, cmd, state);
    case 'observe':
      return out;
    case 'hand-over':
      out.push(...decideHandOver(cmd, state));
      return out;
    default: {
      const _exhaustive: never = cmd;
      return _exhaustive;
    }
  }
}

function ownerKnown(owner: Owner, state: State): boolean {
  const known = state.owners.get(owner.uuid);
  return known !== undefined && (owner.name === undefined || known.name === owner.name);
}

/** One command naming the same resource twice (an alias, or a repeat) asks once, in the stronger mode. */
function mergeDuplicates(disks: readonly ResolvedDisk[]): readonly ResolvedDisk[] {
  // One disk (every protocol call): nothing to merge.
  if (disks.length <= 1) return disks;
  const byId = new Map<string, ResolvedDisk>();
  for (const d of disks) {
    const prev = byId.get(d.resource.id);
    if (!prev || (prev.mode === 'shared' && d.mode === 'exclusive')) byId.set(d.resource.id, d);
  }
  return [...byId.values()];
}

/** Appends to `out` (which holds the owner's `see`, if any) the command's locks, or its refusals alone. */
function decideAcquire(out: Intent[], disks: readonly ResolvedDisk[], owner: Owner, state: State, host: string, how: 'lock' | 'probe'): Intent[] {
  const lead = out.length;
  let refusals: Intent[] | undefined;
  for (const disk of disks) {
    const res = state.resources.get(disk.resource.id);
    if (!res) {
      out.push(how === 'lock' ? { kind: 'lock', disk, owner, how: 'take' } : { kind: 'probe', disk, owner });
      continue;
    }
    const mine = res.holders.get(owner.uuid);
    if (mine && (mine.mode === disk.mode || mine.mode === 'exclusive')) {
      out.push({ kind: 'already', disk, owner });
      continue;
    }
    if (!mine && res.mode === 'shared' && disk.mode === 'shared') {
      if (how === 'lock') out.push({ kind: 'lock', disk, owner, how: 'join' });
      continue;
    }
    // Exclusive against anything local, or this owner asking to upgrade its shared lock:
    // an upgrade would have to drop other VMs' shared locks, so it is refused like any conflict.
    const other = [...res.holders.values()].find((h) => h.owner.uuid !== owner.uuid) ?? mine!;
    const holder: HolderInfo = { host, owner: other.owner, mode: res.mode, since: other.since, ...(other.generation !== undefined ? { generation: other.generation } : {}) };
    (refusals ??= []).push({ kind: 'refuse', disk, owner, holder });
  }
  // All or nothing: one refusal means no lock is taken for this command.
  if (refusals === undefined) return out;
  out.length = lead;
  for (const r of refusals) out.push(r);
  return out;
}

/**
 * A destination's wait for a migration hand-over: ask only for the exclusive disks this owner does
 * not hold yet (a shared one needs no hand-over: both sides may hold it); withdraw every one.
 */
function decideHandOver(cmd: Extract<ResolvedCommand, { kind: 'hand-over' }>, state: State): Intent[] {
  const disks = [...mergeDuplicates(cmd.resolved)];
  if (cmd.step === 'end') {
    return [{ kind: 'withdraw', disks, owner: cmd.owner, outcome: cmd.outcome ?? 'cancelled', ...(cmd.detail !== undefined ? { detail: cmd.detail } : {}) }];
  }
  const wanted = disks.filter((d) => d.mode === 'exclusive' && !state.resources.get(d.resource.id)?.holders.has(cmd.owner.uuid));
  return [{ kind: 'await', disks: wanted, owner: cmd.owner, from: cmd.from ?? '' }];
}

/** Appends to `out` the owner's unlocks: every holding, or those the command names. */
function decideRelease(out: Intent[], cmd: Extract<ResolvedCommand, { kind: 'release' }>, state: State): Intent[] {
  const named = cmd.resolved;
  // One disk named (every protocol call): its id, no Set.
  const one = named !== undefined && named.length === 1 ? named[0]!.resource.id : undefined;
  const wanted = named === undefined || one !== undefined ? undefined : new Set(named.map((d) => d.resource.id));
  for (const id of state.byOwner.get(cmd.owner.uuid) ?? []) {
    const res = state.resources.get(id);
    if (!res) continue;
    const mine = res.holders.get(cmd.owner.uuid);
    if (!mine || (one !== undefined ? res.ref.id !== one : wanted !== undefined && !wanted.has(res.ref.id))) continue;
    out.push({
      kind: 'unlock',
      resource: res.ref,
      path: mine.path,
      owner: cmd.owner,
      how: res.holders.size === 1 ? 'drop' : 'leave',
    });
  }
  return out;
}
