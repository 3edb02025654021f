#!/usr/bin/env bash
# Installs the system packages the integration/e2e tests need (libvirt + QEMU
# under TCG, GlusterFS) and the libvirt-qemu account libvirtd insists on.
# Idempotent: a second run installs nothing and does not touch the network.
set -euo pipefail

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[install-system +$(elapsed)s] $*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system.sh must run as root (it installs packages and creates users), running as uid $(id -u)" >&2
  exit 1
fi

# qemu-utils ships qemu-img (qemu-system-x86 does not); the tests create qcow2 images with it.
# e2fsprogs, mount: test/engine/odirect.int.ts mounts ext4 on a loop device (O_DIRECT alignment);
# mount's losetup also makes the loop devices of test/daemon/takeover-direct-blockdev.int.ts and
# store-direct-blockdev.int.ts (a direct lock on a block device through a take-over and a restart).
# systemd: the fd-store test runs a real (confined) user manager, test/helpers/systemd-sandbox.
# python3 and util-linux (prlimit): the verifier tests drop a daemon's lock (pidfd_getfd) and cap its descriptors.
# strace: the socket-activation test reads what the daemon sends systemd (the sandbox has no journal).
# prometheus: its promtool checks and unit-tests contrib/prometheus/vmlockd.rules.yml
# (test/contrib/prometheus-rules.int.ts); its own service is never left running (below).
# bindfs: a FUSE pass-through the publication test mounts over the lockspace's .journal and freezes
# (SIGSTOP) or kills, to hang or break the published history's filesystem (test/daemon/publish-hang.int.ts).
# man-db: test/contrib/package.int.ts reads the installed vmlockd(8) and vmlockd.conf(5) with man and
# systemd-analyze verify finds Documentation=man:vmlockd(8) through it; dpkg-deb (dpkg) and
# deb-systemd-helper (init-system-helpers, with systemd) build and install the package.
# dpkg-dev: packaging/build-deb.sh computes the native modules' Depends (libc6, libstdc++6) with dpkg-shlibdeps.
# faketime: libfaketime starts a daemon with its wall clock ahead (test/daemon/publish-prune-clock-ahead.int.ts).
PACKAGES=(libvirt-daemon libvirt-clients qemu-system-x86 qemu-utils glusterfs-server glusterfs-client e2fsprogs mount systemd python3 util-linux strace prometheus bindfs man-db dpkg-dev faketime)
# VMLOCKD_CI_SYSTEMD_CONTAINER=1: the "system" test tier (test/contrib/package-systemd.system.ts) runs
# the package's maintainer scripts under a real systemd system manager, in a Debian container booted
# with systemd-nspawn: systemd-container (nspawn; on Debian 12 it pulls the point release of systemd
# itself), debootstrap (its root file system, made below), dpkg-repack (the machine's nodejs as a .deb
# for the container). Measured here: the packages 29 s, the root file system 2 min 49 s to 8 min 41 s (load 10;
# once: kept in $VMLOCKD_CONTAINER_ROOTFS), the tier itself 1 min 16 s to 7 min 23 s (docs/ci.md).
CONTAINER_ROOTFS=${VMLOCKD_CONTAINER_ROOTFS:-/var/cache/vmlockd-ci/rootfs-bookworm-systemd}
if [ "${VMLOCKD_CI_SYSTEMD_CONTAINER:-0}" = 1 ]; then
  PACKAGES+=(systemd-container debootstrap dpkg-repack)
fi

# Which of the packages are not installed yet (dpkg status, no network).
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "missing packages: ${missing[*]}"
  # Refresh the package lists only if one of the missing packages has no
  # install candidate: a fresh image may ship without lists, but an update
  # costs ~10 s and a network round trip we avoid when the lists already know them.
  need_update=0
  for p in "${missing[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then need_update=1; fi
  done
  if [ "$need_update" -eq 1 ]; then
    log "apt-get update"
    apt-get update -q
  fi
  # policy-rc.d 101 stops the maintainer scripts from starting daemons
  # (virtlockd, libvirtd, glusterd): the tests start their own, and the real
  # virtlockd must never run beside vmlockd.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; created_policy=1
  fi
  trap 'if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi' EXIT
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "all packages already installed"
fi

# libvirtd refuses to start ("Failed to parse user 'libvirt-qemu'") without this account.
if ! getent group libvirt-qemu >/dev/null; then
  groupadd -r libvirt-qemu
  log "created group libvirt-qemu"
fi
if ! getent passwd libvirt-qemu >/dev/null; then
  useradd -r -g libvirt-qemu -s /usr/sbin/nologin -d /var/lib/libvirt libvirt-qemu
  log "created user libvirt-qemu"
fi

# Without udev nothing gives /dev/kvm its usual root:kvm 0660, so libvirt-qemu
# cannot open it. libvirt's capability probe (run as root) then records "KVM
# enabled" while the per-start check (as libvirt-qemu) finds it unusable, which
# invalidates the capability cache and re-probes QEMU on EVERY domain start:
# 4.4 s per `virsh start` instead of ~0.4 s. Domains still run under TCG
# (type='qemu'); this only makes the two checks agree.
if [ -c /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd -r kvm
  chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
  id -nG libvirt-qemu | tr ' ' '\n' | grep -qx kvm || usermod -aG kvm libvirt-qemu
fi

# The real virtlockd must not hold any locks or socket while vmlockd is tested.
# There is no systemd here, so nothing socket-activates it; stop one started by
# a maintainer script (only processes whose executable is virtlockd, by pid).
for pid in $(pgrep -u 0 -x virtlockd || true); do
  log "stopping stray virtlockd pid $pid"
  kill "$pid" 2>/dev/null || true
done
if [ -d /run/systemd/system ]; then
  systemctl disable --now virtlockd.socket virtlockd-admin.socket virtlockd.service 2>/dev/null || true
  systemctl mask virtlockd.socket virtlockd-admin.socket virtlockd.service 2>/dev/null || true
fi

# The prometheus package's own server must not run (the tests start their own on free ports):
# policy-rc.d kept its maintainer script from starting it; under systemd disable it as well.
if [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service 2>/dev/null || true
fi
for pid in $(pgrep -u prometheus -x prometheus || true); do
  log "stopping the prometheus package's server pid $pid"
  kill "$pid" 2>/dev/null || true
done

if [ "${VMLOCKD_CI_SYSTEMD_CONTAINER:-0}" = 1 ] && [ ! -x "$CONTAINER_ROOTFS/lib/systemd/systemd" ]; then
  # Debian 12 with systemd as init, D-Bus (systemctl, systemd-run), python3 and ca-certificates (the
  # NodeSource nodejs package depends on them: the test then needs no network inside the container).
  log "debootstrap bookworm -> $CONTAINER_ROOTFS (systemd container for the system test tier)"
  rm -rf "$CONTAINER_ROOTFS.tmp"; mkdir -p "$(dirname "$CONTAINER_ROOTFS")"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,init-system-helpers,python3,ca-certificates \
    bookworm "$CONTAINER_ROOTFS.tmp" http://deb.debian.org/debian >"$CONTAINER_ROOTFS.log" 2>&1 \
    || { echo "install-system.sh: debootstrap failed; see $CONTAINER_ROOTFS.log" >&2; exit 1; }
  mv "$CONTAINER_ROOTFS.tmp" "$CONTAINER_ROOTFS"
  log "container root file system ready"
fi

for bin in /usr/bin/man /usr/bin/dpkg-deb /usr/bin/deb-systemd-helper /usr/bin/promtool /lib/systemd/systemd /usr/bin/strace /usr/bin/virsh /usr/sbin/libvirtd /usr/sbin/virtlogd /usr/bin/qemu-system-x86_64 /usr/bin/qemu-img /usr/sbin/glusterd /usr/sbin/glusterfs; do
  [ -x "$bin" ] || { echo "install-system.sh: expected $bin after install, it is missing" >&2; exit 1; }
done
log "done (kvm: $([ -e /dev/kvm ] && echo present || echo absent))"
