#!/usr/bin/env bash
# A one-machine GlusterFS cluster filesystem for the lock tests: glusterd with a
# private working directory, a one-brick volume with client.strict-locks on,
# mounted twice (STATE_DIR/mnt-a, STATE_DIR/mnt-b). Two FUSE mounts behave as
# two hosts for fcntl locks.
#
# Usage: .ci/gluster-up.sh STATE_DIR
# Env (optional): GLUSTER_VOLUME (default vmlockd), GLUSTER_UP_TIMEOUT (default 30 s).
# Prints KEY=VALUE lines (also written to STATE_DIR/gluster/env for `source`),
# including GLUSTER_MNT_A_PID / GLUSTER_MNT_B_PID: the glusterfs FUSE client
# process of each mount (kill -9 it to simulate that "host" dying).
# Undo with .ci/gluster-down.sh STATE_DIR.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 STATE_DIR" >&2; exit 2
fi
STATE_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
S="$STATE_DIR/gluster"
VOL=${GLUSTER_VOLUME:-vmlockd}
TIMEOUT=${GLUSTER_UP_TIMEOUT:-30}
HOST=$(hostname) # gluster refuses 127.0.0.1/localhost as a brick host
MNT_A="$STATE_DIR/mnt-a"
MNT_B="$STATE_DIR/mnt-b"

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
log() { echo "[gluster-up +$(elapsed)s] $*" >&2; }
fail() {
  echo "gluster-up: $*" >&2
  for f in "$S/glusterd.log" "$S/mnt-a.log" "$S/mnt-b.log"; do
    [ -f "$f" ] && { echo "--- last lines of $f ---" >&2; tail -n 20 "$f" >&2; }
  done
  echo "gluster-up: run .ci/gluster-down.sh $STATE_DIR to clean up" >&2
  exit 1
}
gl() { timeout 60 gluster --mode=script "$@"; } # --mode=script: never prompt for y/n

wait_until() { # wait_until DESCRIPTION COMMAND...
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not ready within ${TIMEOUT}s"
    sleep 0.1
  done
}

# live_pids NAME
. "$(dirname "$0")/lib.sh"

# glusterd listens on TCP 24007: a second one on the machine cannot start.
pid=$(live_pids glusterd)
if [ -n "$pid" ]; then
  fail "a glusterd is already running (pid $(echo $pid)); run .ci/gluster-down.sh for its STATE_DIR first"
fi
for m in "$MNT_A" "$MNT_B"; do
  # A FUSE mount whose client died (a run killed half-way) answers stat with
  # ENOTCONN: `mountpoint` cannot see it and mkdir fails. Detach it lazily.
  if grep -qF " $m fuse" /proc/mounts && ! stat "$m" >/dev/null 2>&1; then
    log "$m: stale FUSE mount (client gone), detaching"
    umount -l "$m" || fail "$m: cannot detach the stale mount"
  fi
  if mountpoint -q "$m"; then fail "$m is already mounted; run .ci/gluster-down.sh $STATE_DIR first"; fi
done

mkdir -p "$S/wd" "$S/brick" "$MNT_A" "$MNT_B"
rm -f "$S/glusterd.log" "$S/mnt-a.log" "$S/mnt-b.log"

# The stock glusterd.vol with a private working-directory, so no state is left
# in /var/lib/glusterd and each run starts from an empty cluster.
sed -e "s|^\([[:space:]]*option working-directory\).*|\1 $S/wd|" /etc/glusterfs/glusterd.vol > "$S/glusterd.vol"
grep -q "working-directory $S/wd" "$S/glusterd.vol" || fail "could not set working-directory in $S/glusterd.vol"

# glusterd daemonizes itself and writes the pid file (-p).
glusterd -f "$S/glusterd.vol" -p "$S/glusterd.pid" -l "$S/glusterd.log"
wait_until "glusterd" gl volume list
log "glusterd up, pid $(cat "$S/glusterd.pid")"

# force: the brick is on the root filesystem, which gluster refuses otherwise.
gl volume create "$VOL" "$HOST:$S/brick" force >/dev/null || fail "volume create $VOL failed"
# strict-locks: after a brick reconnect, an fd that lost its lock gets EBADFD
# instead of silently continuing without the lock (FACTS section 6).
gl volume set "$VOL" client.strict-locks on >/dev/null || fail "volume set client.strict-locks failed"
gl volume start "$VOL" >/dev/null || fail "volume start $VOL failed"

brick_online() { gl volume status "$VOL" --xml | grep -q '<status>1</status>'; }
wait_until "brick of $VOL online" brick_online
brick_pid=$(gl volume status "$VOL" --xml | sed -n 's|.*<pid>\([0-9]*\)</pid>.*|\1|p' | head -n 1)
log "volume $VOL started, brick pid $brick_pid"

# The FUSE client of a mount is the glusterfs process whose last argument is
# the mount point (mount.glusterfs execs `glusterfs ... --volfile-id=/VOL MNT`).
client_pid() { # client_pid MOUNTPOINT
  local p args
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = glusterfs ] || continue
    args=$(tr '\0' '\n' < "$p/cmdline" 2>/dev/null) || continue
    if [ "$(printf '%s\n' "$args" | tail -n 1)" = "$1" ]; then echo "${p#/proc/}"; fi
  done
}

mount_one() { # mount_one MOUNTPOINT LOGNAME
  mount -t glusterfs -o "log-file=$S/$2.log" "$HOST:/$VOL" "$1" || fail "mount of $HOST:/$VOL at $1 failed"
  mountpoint -q "$1" || fail "$1 is not a mount point after mount"
  local pids
  pids=$(client_pid "$1")
  [ "$(echo "$pids" | grep -c .)" -eq 1 ] || fail "expected one glusterfs client for $1, found: ${pids:-none}"
  echo "$pids" > "$S/$2.pid"
}
mount_one "$MNT_A" mnt-a
mount_one "$MNT_B" mnt-b
log "mounted $MNT_A (client pid $(cat "$S/mnt-a.pid")) and $MNT_B (client pid $(cat "$S/mnt-b.pid"))"

{
  echo "GLUSTER_VOLUME=$VOL"
  echo "GLUSTER_MNT_A=$MNT_A"
  echo "GLUSTER_MNT_B=$MNT_B"
  echo "GLUSTER_MNT_A_PID=$(cat "$S/mnt-a.pid")"
  echo "GLUSTER_MNT_B_PID=$(cat "$S/mnt-b.pid")"
  echo "GLUSTERD_PID=$(cat "$S/glusterd.pid")"
  echo "GLUSTER_BRICK_PID=$brick_pid"
} > "$S/env"
cat "$S/env"
log "ready"
