# Helpers sourced by the .ci scripts.

# Root-owned processes named $1, leaving out exited ones that PID 1 has not reaped yet.
live_pids() {
  local pid
  for pid in $(pgrep -u 0 -x "$1"); do
    if grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null \
       && [ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -le 1 ]; then continue; fi
    echo "$pid"
  done
}
