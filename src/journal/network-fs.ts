// Which filesystems are network or cluster filesystems (statfs f_type): the journal refuses them
// (open.ts), the holder records use O_DIRECT there (src/cli/shared-fs.ts). No SQLite here: `vmlockd
// who` and `cluster` read the lockspace without loading the journal (test/cli/client-imports.int.ts).

/**
 * statfs f_type values of filesystems whose locking and mmap semantics break WAL (the -shm file is
 * shared memory between processes of ONE host) or whose fsync is not local. Placing the journal on
 * the shared lockspace would also tie every host's journal to the health of the cluster filesystem.
 */
const NETWORK_FS: ReadonlyMap<number, string> = new Map([
  [0x6969, 'nfs'],
  [0x517b, 'smb'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x65735546, 'fuse (e.g. glusterfs, sshfs)'],
  [0x00c36400, 'ceph'],
  [0x01021997, '9p'],
  [0x01161970, 'gfs2'],
  [0x7461636f, 'ocfs2'],
  [0x5346414f, 'afs'],
  [0x0bd00bd0, 'lustre'],
]);

/** The name of the network filesystem with this statfs type, or undefined for a local one. */
export function networkFsName(statfsType: number | bigint): string | undefined {
  return NETWORK_FS.get(Number(BigInt.asUintN(32, BigInt(statfsType))));
}
