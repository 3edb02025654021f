// The command line's usage table: `vmlockd --help`, each command's --help and usage errors (src/main.ts),
// and at build time the bash completion and the man page's command list (src/cli/completion.ts,
// packaging/gen-docs.sh). A command is a line indented by two spaces, its continuation lines by more;
// flags are written `--name` with their value's placeholder after them (FILE, DIR, a|b|c).
export const USAGE = `usage: vmlockd <command> [options]

  serve [--config FILE]... [--state-dir DIR] [--lockspace DIR] [--host-id ID] [--socket PATH]
        [--virtlockd-socket PATH] [--libvirt URI] [--verify-interval SECONDS] [--on-conflict report|suspend]
        [--log-level debug|info|warning|error] [--log-format text|json]
        [--metrics-address HOST:PORT] [--journal-sync fdatasync|write] [--lockspace-init auto|explicit] [--publish 0|1] [--takeover]
        run the daemon in the foreground (--lockspace "" locks the images themselves);
        --takeover: take the locks over from the daemon running on the same state directory, no gap
  acquire --vm UUID [--name NAME] [--shared] [--readonly] [--create] DISK...
  release --vm UUID [DISK...]
  check --vm UUID [--shared] DISK...       would these disks be granted now? (takes nothing)
  locks [--json]                           locks this daemon holds
  locks --cluster [--json] [--lockspace DIR]  every held resource in the lockspace, with its holder
  who DISK [--json] [--lockspace DIR]      who holds a disk, from any host, without taking a lock
  generation DISK [--lockspace DIR]        the disk's current fencing generation
  cluster [--json] [--lockspace DIR]       hosts (alive or gone), their locks, settings mismatches
  ingest FILE|-                            JSON-lines events, one result line per event
  audit [--disk PATH [--at TIME|--timeline]] [--vm UUID|NAME] [--conflicts] [--since T] [--until T] [--host ID]
        [--kind K,..] [--limit N] [--follow] [--json|--csv] [--archive] [--state-dir DIR|--journal FILE]   (audit --help)
  audit --cluster [any question above | --overlaps [--disk PATH]] [--lockspace DIR] [--cache DIR]   every host's published history
  journal compact --before TIME [--archive FILE] | journal verify      [--state-dir DIR | --journal FILE]
  journal verify --cluster [--lockspace DIR]  every host's published chain, and this host's against its journal
  status [--json]
  integrity [--state-dir DIR | --journal FILE]     same as journal verify
  config show [--config FILE]... [--defaults] | config check FILE...
  lockspace init [DIR...] [--config FILE]... [--state-dir DIR] [--lockspace DIR]
        create (or accept) a lockspace on purpose: its id file, and the id this host expects there
  hook qemu NAME OP SUBOP [EXTRA] [--socket PATH] [--fail-open] [--timeout S]
        libvirt's qemu hook (domain XML on stdin); see docs/libvirt.md

Client commands find the daemon with --socket PATH, else $VMLOCKD_SOCKET, else socket = (or state_dir =)
in the --config FILE(s), else ./var/vmlockd.sock (installed package: /etc/vmlockd/vmlockd.conf's, else
/run/vmlockd/vmlockd.sock). Every command answers --help; vmlockd --version prints the version.
Exit codes: 0 done; 3 refused because a lock is held; 2 bad input or usage; 1 any other failure.`;
