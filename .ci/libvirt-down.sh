#!/usr/bin/env bash
# Undoes .ci/libvirt-up.sh: destroys and undefines leftover domains, stops
# libvirtd and virtlogd, restores the files up replaced. Safe to run twice,
# after a failed up, or with no up at all.
#
# Usage: .ci/libvirt-down.sh STATE_DIR
# Env: TEST_DOMAIN_PREFIX (optional) only remove qemu:///system domains whose
#      name starts with it; default: every domain (CI machines run nothing else).
set -uo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 STATE_DIR" >&2; exit 2
fi
S="$1/libvirt"
PREFIX=${TEST_DOMAIN_PREFIX:-}
t0=$(date +%s.%N)
log() { echo "[libvirt-down +$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')s] $*" >&2; }

# Whether PID is still running. A multi-threaded daemon whose main thread exits
# first shows state Z while its other threads still shut down; only a lone
# zombie thread is really gone (PID 1 here may be slow to reap it).
running() { # running PID
  [ -d "/proc/$1" ] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null || return 0
  [ "$(ls "/proc/$1/task" 2>/dev/null | wc -l)" -gt 1 ]
}

# Pid from PIDFILE if that process is still NAME (after a crash the number may be reused).
pid_of() { # pid_of NAME PIDFILE
  local pid
  pid=$(cat "$2" 2>/dev/null || true) # libvirtd's pid file has no trailing newline
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && running "$pid"; then
    echo "$pid"
  fi
}

libvirtd_pid=$(pid_of libvirtd "$S/libvirtd.pid")
virtlogd_pid=$(pid_of virtlogd "$S/virtlogd.pid")
# The subreaper wrappers up started (they forward SIGTERM to their daemon; they
# also cover a daemon that died or hung before writing its pid file).
reaper_pids="$(pid_of perl "$S/libvirtd.reaper-pid") $(pid_of perl "$S/virtlogd.reaper-pid")"
if [ -n "$libvirtd_pid" ]; then
  # QEMU processes outlive libvirtd; destroy them while libvirtd can still do it.
  for dom in $(timeout 10 virsh -q -c qemu:///system list --all --name 2>/dev/null); do
    case "$dom" in "$PREFIX"*) ;; *) continue;; esac
    timeout 20 virsh -q -c qemu:///system destroy "$dom" >/dev/null 2>&1 && log "destroyed $dom"
    timeout 10 virsh -q -c qemu:///system undefine --nvram "$dom" >/dev/null 2>&1 \
      || timeout 10 virsh -q -c qemu:///system undefine "$dom" >/dev/null 2>&1
  done
fi

# With no domain left there is nothing for libvirtd to log, so both stop at once.
pids=$(echo $libvirtd_pid $virtlogd_pid $reaper_pids)
if [ -n "$pids" ]; then
  kill -TERM $pids 2>/dev/null
  for i in $(seq 100); do
    still=""
    for p in $pids; do
      if running "$p"; then still="$still $p"; fi
    done
    [ -n "$still" ] || break
    sleep 0.1
  done
  if [ -n "$still" ]; then
    log "pids$still ignored SIGTERM for 10 s, sending SIGKILL"
    kill -KILL $still 2>/dev/null
  fi
  [ -n "$libvirtd_pid" ] && log "stopped libvirtd pid $libvirtd_pid"
  [ -n "$virtlogd_pid" ] && log "stopped virtlogd pid $virtlogd_pid"
fi
rm -f "$S/libvirtd.pid" "$S/libvirtd.reaper-pid" "$S/virtlogd.pid" "$S/virtlogd.reaper-pid"

# Replay the manifest backwards (last change undone first).
if [ -f "$S/manifest" ]; then
  tac "$S/manifest" | while read -r action target; do
    key=$(echo "$target" | tr '/' '_')
    case "$action" in
      restore) rm -f "$target"; cp -a "$S/backup/$key" "$target" && log "restored $target" ;;
      remove) rm -f "$target" && log "removed $target" ;;
      rmdir) rmdir "$target" 2>/dev/null && log "removed $target/" ;;
      *) log "unknown manifest line: $action $target" ;;
    esac
  done
  rm -f "$S/manifest"
  rm -rf "$S/backup"
fi
rm -f "$S/env"
exit 0
