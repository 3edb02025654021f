// Identities learnt late (review25a F1): a disk held before its image existed (acquired with
// --create, a direct lease named ahead of its image) was journaled without a dev:ino:btime, so once
// the image is created a hard link or bind mount of it matched no held identity and could be granted
// to a second VM. Before every command is resolved (and on each verifier round) the held paths still
// without an identity are looked at again; one that now exists has its identity journaled
// (IdentityLearned) and folded into the state, so the command's own resolution already sees it.
// If the learnt identity is that of another held resource whose holders conflict with this one's,
// two VMs were granted one file under two names before anyone could tell: the fact names them
// (`conflict`) and the log says DISK CONFLICT. Nothing here opens a lock file (invariant 4): a stat
// of the disk path, as resolve does.
import { fact, type FactPayloads, type NewFact } from './facts.js';
import { diskIdentity } from './resolve.js';
import type { ResourceState, State } from './state.js';

type Conflicts = NonNullable<FactPayloads['IdentityLearned']['conflict']>;

/**
 * The IdentityLearned facts for every held resource without an identity whose disk now exists, in
 * resource order. Costs one stat per such resource (there are none in the common case).
 */
export function learnIdentities(state: State, at: string, source: string): NewFact[] {
  if (state.unidentified.size === 0) return [];
  const out: NewFact[] = [];
  // Identities learnt in this round count for the ones after (two unidentified names of one file).
  const learnt = new Map<string, string[]>();
  for (const id of [...state.unidentified].sort()) {
    const res = state.resources.get(id);
    if (res === undefined || res.ref.inode !== undefined || res.holders.size === 0) continue;
    const inode = diskIdentity(res.ref.canonical);
    if (inode === undefined) continue;
    const conflict = conflictsOf(state, res, inode, learnt.get(inode) ?? []);
    const holders = [...res.holders.values()].sort((a, b) => (a.owner.uuid < b.owner.uuid ? -1 : 1));
    const first = holders[0]!;
    const payload: FactPayloads['IdentityLearned'] = {
      resource: id,
      name: res.ref.name,
      lockspace: res.ref.lockspace,
      kind: res.ref.kind,
      disk: res.ref.canonical,
      path: first.path,
      inode,
      owner: first.owner,
      mode: res.mode,
      ...(holders.length > 1 ? { others: holders.slice(1).map((h) => h.owner) } : {}),
      source,
      ...(conflict.length > 0 ? { conflict } : {}),
    };
    out.push(fact('IdentityLearned', at, payload));
    learnt.set(inode, [...(learnt.get(inode) ?? []), id]);
  }
  return out;
}

/** "dev:ino" of a "dev:ino:btime" identity (a lock journalled before birth times). */
function withoutBirth(inode: string): string | undefined {
  const parts = inode.split(':');
  return parts.length === 3 && parts[0] !== 'blk' ? `${parts[0]}:${parts[1]}` : undefined;
}

/**
 * Holders of other held resources that are this same file and conflict with `res`'s holders: an
 * owner `res` does not hold, where either side is exclusive. A "dev:ino" record (no birth time)
 * counts only while its held path still names this identity, as resolve's alias rule says.
 */
function conflictsOf(state: State, res: ResourceState, inode: string, learntNow: readonly string[]): Conflicts {
  const ids = new Set<string>(learntNow);
  for (const id of state.byInode.get(inode) ?? []) ids.add(id);
  const legacy = withoutBirth(inode);
  if (legacy !== undefined) {
    for (const id of state.byInode.get(legacy) ?? []) {
      const other = state.resources.get(id);
      if (other !== undefined && diskIdentity(other.ref.canonical) === inode) ids.add(id);
    }
  }
  ids.delete(res.ref.id);
  const out: Array<Conflicts[number]> = [];
  for (const id of [...ids].sort()) {
    const other = state.resources.get(id);
    if (other === undefined) continue;
    if (res.mode !== 'exclusive' && other.mode !== 'exclusive') continue;
    for (const h of other.holders.values()) {
      if (res.holders.has(h.owner.uuid)) continue;
      out.push({ resource: id, disk: other.ref.canonical, path: h.path, owner: h.owner, mode: h.mode });
    }
  }
  return out;
}
