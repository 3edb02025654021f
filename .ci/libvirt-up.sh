#!/usr/bin/env bash
# Starts virtlogd and libvirtd in the background (no systemd on CI machines) and
# waits until both qemu:///system and the daemon-shared test driver answer.
#
# Usage: .ci/libvirt-up.sh STATE_DIR
# Env (all optional):
#   HOOK_SCRIPT=/abs/path      installed (symlinked) as /etc/libvirt/hooks/qemu;
#                              libvirtd only looks for hooks when it starts.
#   LIBVIRT_LOCK_MANAGER=lockd writes /etc/libvirt/qemu.conf with lock_manager = "lockd"
#                              and /etc/libvirt/qemu-lockd.conf (from QEMU_LOCKD_CONF
#                              if set, else `auto_disk_leases = 1`).
#   QEMU_LOCKD_CONF=/abs/path  file copied verbatim to /etc/libvirt/qemu-lockd.conf.
#   LIBVIRT_UP_TIMEOUT=30      seconds to wait for each daemon.
# Prints KEY=VALUE lines (also written to STATE_DIR/libvirt/env for `source`).
# Every file it replaces is restored by .ci/libvirt-down.sh STATE_DIR.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 STATE_DIR" >&2; exit 2
fi
STATE_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
S="$STATE_DIR/libvirt"
mkdir -p "$S/backup"
TIMEOUT=${LIBVIRT_UP_TIMEOUT:-30}
LOCK_MANAGER=${LIBVIRT_LOCK_MANAGER:-}

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "[libvirt-up +$(elapsed)s] $*" >&2; }
started=0
fail() {
  echo "libvirt-up: $*" >&2
  [ "$started" -eq 1 ] || exit 1
  for f in "$S/virtlogd.log" "$S/libvirtd.log"; do
    [ -f "$f" ] && { echo "--- last lines of $f ---" >&2; tail -n 30 "$f" >&2; }
  done
  echo "libvirt-up: state left in $S; run .ci/libvirt-down.sh $STATE_DIR to clean up" >&2
  exit 1
}

# live_pids NAME
. "$(dirname "$0")/lib.sh"

# Only root's instances: an unprivileged user's session daemons (qemu:///session,
# autostarted by virsh) use other sockets and do not conflict.
for d in libvirtd virtlogd; do
  pid=$(live_pids "$d")
  if [ -n "$pid" ]; then
    fail "$d is already running (pid $(echo $pid)); run .ci/libvirt-down.sh first or stop it"
  fi
done
# vmlockd replaces virtlockd: a running real one would take the same socket and locks.
pid=$(live_pids virtlockd)
if [ -n "$pid" ]; then
  fail "the real virtlockd is running (pid $(echo $pid)); it must not run beside vmlockd"
fi

# Replace a system file, remembering how to undo it. The manifest is what
# libvirt-down.sh replays, so a second `up` must not overwrite the first backup.
manifest="$S/manifest"
touch "$manifest"
take_over() { # take_over TARGET: back up TARGET once, so down can restore it
  local target=$1 key
  key=$(echo "$target" | tr '/' '_')
  if grep -qx "[^ ]* $target" "$manifest"; then return; fi
  if [ -e "$target" ] || [ -L "$target" ]; then
    cp -a "$target" "$S/backup/$key"
    echo "restore $target" >> "$manifest"
  else
    echo "remove $target" >> "$manifest"
  fi
}

if [ -n "${HOOK_SCRIPT:-}" ]; then
  case "$HOOK_SCRIPT" in /*) ;; *) fail "HOOK_SCRIPT must be an absolute path, got \"$HOOK_SCRIPT\"";; esac
  [ -f "$HOOK_SCRIPT" ] || fail "HOOK_SCRIPT=$HOOK_SCRIPT does not exist"
  [ -x "$HOOK_SCRIPT" ] || fail "HOOK_SCRIPT=$HOOK_SCRIPT is not executable (libvirtd silently ignores a non-executable hook)"
  if [ ! -d /etc/libvirt/hooks ]; then
    mkdir -p /etc/libvirt/hooks
    echo "rmdir /etc/libvirt/hooks" >> "$manifest"
  fi
  take_over /etc/libvirt/hooks/qemu
  # A symlink, not a copy: the hook can find its repository and edits take effect
  # without restarting libvirtd.
  ln -sfn "$HOOK_SCRIPT" /etc/libvirt/hooks/qemu
  log "hook installed: /etc/libvirt/hooks/qemu -> $HOOK_SCRIPT"
fi

case "$LOCK_MANAGER" in
  "") ;;
  lockd)
    take_over /etc/libvirt/qemu.conf
    take_over /etc/libvirt/qemu-lockd.conf
    printf '# written by .ci/libvirt-up.sh\nlock_manager = "lockd"\n' > /etc/libvirt/qemu.conf
    if [ -n "${QEMU_LOCKD_CONF:-}" ]; then
      cp "$QEMU_LOCKD_CONF" /etc/libvirt/qemu-lockd.conf
    else
      printf '# written by .ci/libvirt-up.sh\nauto_disk_leases = 1\n' > /etc/libvirt/qemu-lockd.conf
    fi
    log "lock manager: lockd (libvirtd will connect to /run/libvirt/virtlockd-sock at VM start)"
    ;;
  *) fail "LIBVIRT_LOCK_MANAGER must be empty or \"lockd\", got \"$LOCK_MANAGER\"";;
esac

wait_for() { # wait_for DESCRIPTION PID COMMAND...
  local what=$1 pid=$2; shift 2
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then fail "$what exited during startup"; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then fail "$what did not answer within ${TIMEOUT}s"; fi
    sleep 0.1
  done
}

# PID 1 on these machines reaps orphans only every ~2 s, and libvirt waits for a
# killed QEMU (an orphan: it double-forks) to vanish, so each `virsh destroy`
# took 1.3-2.1 s. Running the daemons under a child subreaper that reaps at once
# brings it to ~0.2 s. Perl because perl-base is Essential on Debian;
# 157 = prctl on x86_64, 36 = PR_SET_CHILD_SUBREAPER. It forwards SIGTERM and
# exits with the daemon.
REAPER='syscall(157, 36, 1) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
my $child = fork() // die "fork: $!\n";
if ($child == 0) { exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n"; }
$SIG{TERM} = sub { kill "TERM", $child };
while (1) { my $pid = waitpid(-1, 0); exit($? >> 8) if $pid == $child; exit(0) if $pid == -1; }'
[ "$(uname -m)" = x86_64 ] || REAPER='exec { $ARGV[0] } @ARGV or die "exec: $!\n";'

# setsid: the daemons must not receive the terminal's or the test runner's
# SIGINT/SIGHUP; only libvirt-down.sh stops them.
# -p: the daemons write their own pid files, so the recorded pid is the daemon's
# and a second instance refuses to start instead of fighting over sockets.
started=1
rm -f "$S/virtlogd.log" "$S/libvirtd.log"
rm -f "$S/virtlogd.pid" "$S/libvirtd.pid" "$S/virtlogd.reaper-pid" "$S/libvirtd.reaper-pid"
setsid perl -e "$REAPER" /usr/sbin/virtlogd -p "$S/virtlogd.pid" </dev/null >>"$S/virtlogd.log" 2>&1 &
pid=$!
echo "$pid" > "$S/virtlogd.reaper-pid"
wait_for "virtlogd" "$pid" test -S /run/libvirt/virtlogd-sock
wait_for "virtlogd (pid file)" "$pid" test -s "$S/virtlogd.pid"
log "virtlogd up, pid $(cat "$S/virtlogd.pid")"

setsid perl -e "$REAPER" /usr/sbin/libvirtd -p "$S/libvirtd.pid" </dev/null >>"$S/libvirtd.log" 2>&1 &
pid=$!
echo "$pid" > "$S/libvirtd.reaper-pid"
wait_for "libvirtd (qemu:///system)" "$pid" timeout 5 virsh -c qemu:///system list
wait_for "libvirtd (test+unix:///default)" "$pid" timeout 5 virsh -c test+unix:///default list
wait_for "libvirtd (pid file)" "$pid" test -s "$S/libvirtd.pid"
log "libvirtd up, pid $(cat "$S/libvirtd.pid")"

{
  echo "LIBVIRT_URI=qemu:///system"
  echo "LIBVIRT_TEST_URI=test+unix:///default"
  echo "LIBVIRTD_PID=$(cat "$S/libvirtd.pid")"
  echo "VIRTLOGD_PID=$(cat "$S/virtlogd.pid")"
  echo "LIBVIRTD_LOG=$S/libvirtd.log"
} > "$S/env"
cat "$S/env"
log "ready"
