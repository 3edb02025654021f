// Published-history segments for tests and the bench, written with the one encoder (src/journal/segment.ts):
// a real journal's facts copied as its daemon's publisher would, or synthetic facts chained properly.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { encodeFact, encodeHeader, encodeSeal, hostSegmentDir, segmentFileName } from '../../src/journal/segment.js';

export interface SegmentWriter {
  /** Appends facts (already chained) to the current segment, rotating at `segmentBytes`. */
  add(row: ChainRow, hash: Buffer): void;
  /** Writes what is buffered; `seal` also seals the current segment (as a rotation would). */
  flush(): void;
  readonly dir: string;
  readonly files: string[];
}

/** A writer for one (host, journal id) chain, starting at seq `first` after hash `prev`. */
export function segmentWriter(lockspace: string, host: string, journalId: string, opts: { segmentBytes?: number; first?: number; prev?: Buffer; created?: string } = {}): SegmentWriter {
  const dir = hostSegmentDir(lockspace, host);
  fs.mkdirSync(dir, { recursive: true });
  const limit = opts.segmentBytes ?? 8 * 1024 * 1024;
  const created = opts.created ?? '2026-01-01T00:00:00.000Z';
  const files: string[] = [];
  let file: string | undefined;
  let size = 0;
  let count = 0;
  let lastSeq = (opts.first ?? 1) - 1;
  let lastHash = opts.prev ?? GENESIS_HASH;
  let buf: string[] = [];
  const open = (first: number) => {
    file = path.join(dir, segmentFileName(journalId, first));
    files.push(file);
    const h = encodeHeader({ host, journal: journalId, first, prev: lastHash, created });
    fs.writeFileSync(file, h);
    size = Buffer.byteLength(h);
    count = 0;
  };
  const write = () => {
    if (buf.length > 0) fs.appendFileSync(file!, buf.join(''));
    buf = [];
  };
  return {
    dir,
    files,
    add(row, hash) {
      if (file === undefined) open(row.seq);
      const line = encodeFact(row, hash);
      buf.push(line);
      size += line.length;
      count++;
      lastSeq = row.seq;
      lastHash = hash;
      if (buf.length >= 4096) write();
      if (size >= limit) {
        buf.push(encodeSeal({ last: lastSeq, hash: lastHash, count }));
        write();
        file = undefined;
        open(lastSeq + 1);
      }
    },
    flush() {
      if (file === undefined) open(lastSeq + 1);
      write();
    },
  };
}

/**
 * Copies a real journal's facts (from seq `after` + 1) into `<lockspace>/.journal/<host>/` segments,
 * as the daemon's publisher does; returns the writer so a test can append more later.
 */
export function publishJournal(journalFile: string, lockspace: string, host: string, journalId: string, opts: { segmentBytes?: number } = {}): SegmentWriter {
  const db = new Database(journalFile, { readonly: true });
  try {
    const w = segmentWriter(lockspace, host, journalId, opts);
    for (const r of db.prepare('SELECT seq, at, host, kind, resource, disk, owner, owner_name, payload, hash FROM facts ORDER BY seq').iterate() as IterableIterator<ChainRow & { hash: Buffer }>) {
      const { hash, ...row } = r;
      w.add(row, hash);
    }
    w.flush();
    return w;
  } finally {
    db.close();
  }
}

/** Chains a synthetic row: its hash from the previous one. */
export function chained(prev: Buffer, row: ChainRow): Buffer {
  return chainHash(prev, row);
}
