#!/usr/bin/env bash
# Undoes .ci/gluster-up.sh: unmounts both mounts (lazily if busy), stops and
# deletes the volume, stops glusterd and the brick, removes all state.
# Safe to run twice, after a failed up, or after a test killed a FUSE client.
#
# Usage: .ci/gluster-down.sh STATE_DIR
set -uo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 STATE_DIR" >&2; exit 2
fi
[ -d "$1" ] || exit 0
STATE_DIR=$(cd "$1" && pwd)
S="$STATE_DIR/gluster"
VOL=${GLUSTER_VOLUME:-vmlockd}
t0=$(date +%s.%N)
log() { echo "[gluster-down +$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s] $*" >&2; }
gl() { timeout 30 gluster --mode=script "$@"; }

alive_as() { # alive_as PID COMM: the pid is still that program (not a reused pid, not a zombie)
  [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  # A killed FUSE client may stay a zombie (PID 1 here need not reap it). But a
  # multi-threaded daemon whose main thread exited first also shows state Z
  # while its other threads still shut down: only a lone zombie thread is dead.
  grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null || return 0
  [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -gt 1 ]
}
stop_pid() { # stop_pid PID COMM: TERM, then KILL after 5 s
  local pid=$1 comm=$2 i
  alive_as "$pid" "$comm" || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do alive_as "$pid" "$comm" || break; sleep 0.1; done
  if alive_as "$pid" "$comm"; then kill -KILL "$pid" 2>/dev/null; sleep 0.1; fi
  log "stopped $comm pid $pid"
}

for name in mnt-a mnt-b; do
  m="$STATE_DIR/$name"
  if grep -q " $m fuse" /proc/mounts; then
    # A killed client leaves a dead mount ("Transport endpoint is not connected"):
    # plain umount still works for it; -l covers a mount some process still uses.
    if umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; then log "unmounted $m"; else log "could not unmount $m"; fi
  fi
done
# Unmounting makes each client exit by itself; stop whichever is still there.
for name in mnt-a mnt-b; do
  stop_pid "$(cat "$S/$name.pid" 2>/dev/null)" glusterfs
  rmdir "$STATE_DIR/$name" 2>/dev/null
done

glusterd_pid=$(cat "$S/glusterd.pid" 2>/dev/null)
if alive_as "$glusterd_pid" glusterd; then
  gl volume stop "$VOL" force >/dev/null 2>&1 && log "stopped volume $VOL"
  gl volume delete "$VOL" >/dev/null 2>&1 && log "deleted volume $VOL"
fi
stop_pid "$glusterd_pid" glusterd

# Brick (glusterfsd) and helper (glusterfs) processes of this volume that
# survived: those whose command line names this state directory or volume.
for p in /proc/[0-9]*; do
  comm=$(cat "$p/comm" 2>/dev/null) || continue
  case "$comm" in glusterfs|glusterfsd) ;; *) continue;; esac
  args=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
  case "$args" in
    *"$S/"*|*"--volfile-id $VOL."*|*"--volfile-id shd/$VOL "*) stop_pid "${p#/proc/}" "$comm" ;;
  esac
done

rm -rf "/var/run/gluster/vols/$VOL" "/var/run/gluster/shd/$VOL"
# The brick carries trusted.* xattrs and a .glusterfs tree; all of it goes.
rm -rf "$S"
exit 0
