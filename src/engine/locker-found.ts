// Locks the journal forgot, found again in the lockspace (issue 11.4). The holder records this host
// wrote into its lock files (decisions/0005) outlive the state directory: when the journal lost its
// last facts (a state filesystem that failed, `journal_sync = "write"`, a journal restored from a
// backup), a lock file whose exclusive record names this host with a fencing generation the journal
// never gave that disk is a grant the journal forgot. It is taken again and journaled as *found*
// (`Reacquired` / `LeaseLost` with `found: true`), never silently dropped. Read-only here: the locker
// takes the locks (reacquire), as for every other re-take. Part of the locker (invariant 4: only
// src/engine/locker*.ts opens lock files).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readAligned } from './aligned-io.js';
import { fact, type NewFact } from './facts.js';
import { decodeExclusive, RECORD_SIZE } from './holder-record.js';
import { resourceFields } from './locker.js';
import { diskIdentity, sha256Hex } from './resolve.js';
import type { LockspaceKind, ResourceRef } from './types.js';

export interface ScanDir {
  readonly dir: string;
  readonly kind: Exclude<LockspaceKind, 'direct'>;
  /** Read with O_DIRECT: on a cluster filesystem this client's page cache may hold an old record. */
  readonly direct?: boolean;
  /**
   * A lockspace of the virtlockd protocol (CREATE_LOCKSPACE): its files are named by lease name
   * (an explicit <lease>'s key, or libvirt's SHA-256 of a disk path), not only by SHA-256.
   */
  readonly leases?: boolean;
}

export interface FoundScan {
  /** One LockAcquired-shaped fact per forgotten grant, to fold into the state before the re-take (never journaled as such). */
  readonly facts: NewFact[];
  /** Lock files whose record names this host but could not be turned into a resource, with why. */
  readonly unusable: string[];
  /** Lock files read. */
  readonly scanned: number;
  /** Records naming this host that were written before `notBefore` (an earlier boot): not taken. */
  readonly older: string[];
}

/**
 * Every lock file in `dirs` whose exclusive record names `host`, holds an owner, and carries a
 * generation above what the journal gave its disk (`journalGeneration`), and whose resource the
 * state does not hold (`known`).
 */
export function findForgotten(
  dirs: readonly ScanDir[],
  host: string,
  known: (resource: string) => boolean,
  journalGeneration: (disk: string) => number,
  at: string,
  /** When set (ISO time): a record whose `since` is earlier, or not a time, is not taken (`older`). */
  notBefore?: string,
): FoundScan {
  const facts: NewFact[] = [];
  const unusable: string[] = [];
  const older: string[] = [];
  let scanned = 0;
  for (const { dir, kind, direct, leases } of dirs) {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') unusable.push(`${dir}: cannot list it: ${(e as Error).message}`);
      continue;
    }
    for (const ent of entries) {
      // Lock files are regular files; .hosts, .mounts and the like are not lock files.
      if (!ent.isFile() || ent.name.startsWith('.')) continue;
      if (kind === 'file' && leases !== true && !/^[0-9a-f]{64}$/.test(ent.name)) continue;
      const file = path.join(dir, ent.name);
      if (known(file)) continue;
      let head: Buffer;
      try {
        head = readHead(file, direct === true);
      } catch (e) {
        unusable.push(`${file}: cannot read it: ${(e as Error).message}`);
        continue;
      }
      scanned++;
      const rec = decodeExclusive(head);
      if (!rec || rec.mode !== 'exclusive' || rec.host !== host || !rec.vm || rec.disk === '') continue;
      if (rec.gen <= journalGeneration(rec.disk)) continue;
      // A file lockspace names a disk by the SHA-256 of its canonical path; a lease the virtlockd
      // protocol named (an explicit <lease>, or a name libvirt hashed itself) records the lease file
      // as its disk. A record whose disk is neither was shortened to fit (a very long path) or is
      // not ours.
      if (kind === 'file' && sha256Hex(rec.disk) !== ent.name && rec.disk !== file) {
        unusable.push(`${file}: its record names this host (VM ${rec.vm.uuid}, generation ${rec.gen}) but its disk path ${JSON.stringify(rec.disk)} does not name this file`);
        continue;
      }
      // Granted before this boot (the journal cannot tell): its VM died with the host.
      if (notBefore !== undefined && !(ISO_MS.test(rec.since) && rec.since >= notBefore)) {
        older.push(`${file} (VM ${rec.vm.uuid}, disk ${rec.disk}, since ${JSON.stringify(rec.since)})`);
        continue;
      }
      const inode = diskIdentity(rec.disk);
      const ref: ResourceRef = { id: file, name: ent.name, lockspace: dir, kind, canonical: rec.disk, ...(inode !== undefined ? { inode } : {}) };
      const since = ISO_MS.test(rec.since) && rec.since < at ? rec.since : at;
      facts.push(fact('LockAcquired', since, { ...resourceFields(ref, rec.disk), owner: rec.vm, mode: 'exclusive', source: 'found', generation: rec.gen }));
    }
  }
  return { facts, unusable, scanned, older };
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** The exclusive record's bytes, from a fresh read-only description (it disturbs no lock). */
function readHead(file: string, direct: boolean): Buffer {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | (direct ? fs.constants.O_DIRECT : 0));
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error('not a regular file');
    return readAligned(fd, RECORD_SIZE, 0);
  } finally {
    fs.closeSync(fd);
  }
}
