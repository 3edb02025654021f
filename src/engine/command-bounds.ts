// How many disks one command may name (review25a F9). Nothing bounded it: one domain defined with
// thousands of <disk> elements (6,000 are ~0.5 MiB of XML, well inside what libvirt accepts) made
// the qemu hook's prepare begin resolve and take every one in one synchronous turn of the event
// loop (resolveCommand and the locker's prepare: seconds during which no client, protocol
// connection or verifier round was served), and 20,000 spent every descriptor of RLIMIT_NOFILE, so
// every other VM's acquire failed with EMFILE while they were held. libvirt sets no number of disks
// per domain; what bounds one in practice is its buses (a virtio-blk disk is a PCI device: a few
// hundred with every root port and bridge filled; a virtio-scsi controller's LUNs are the wide case).
// So the bound is far above any VM seen run, and far below the descriptors the packaged unit gives
// the daemon (LimitNOFILE=65536): one VM's start can neither stall the daemon for long nor take
// the descriptors the others need. Pure: the engine refuses such a command as bad input, before
// any lock file is opened.
import { BadInputError } from './errors.js';

/** The most disks (and leases) one acquire, check or hand-over may name. */
export const MAX_DISKS_PER_COMMAND = 1024;

/** Refuse a command naming more disks than MAX_DISKS_PER_COMMAND, saying how many and the limit. */
export function checkDiskCount(kind: string, count: number): void {
  if (count <= MAX_DISKS_PER_COMMAND) return;
  throw new BadInputError(`${kind} names ${count} disks; at most ${MAX_DISKS_PER_COMMAND} per command (one VM must not stall the daemon or take the descriptors every other VM needs); no lock changed`);
}
