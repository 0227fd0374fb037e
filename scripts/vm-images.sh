#!/usr/bin/env bash
# Builds the worker VM images of kubejoin's VM tests, idempotently, into a cache directory
# (facts behind every step: ../shared/vm.md):
#   $CACHE/<release>/vmlinuz initrd.img   the image's own kernel and initrd (booted directly:
#                                         no bootloader)
#   $CACHE/<release>/root.img             a raw ext4 file system labelled root
#   $CACHE/<release>/swap.img             a swap device labelled swap, declared in the image's
#                                         /etc/fstab as many cloud images declare theirs
#   $CACHE/<release>/packages.txt         what is installed, with versions
# for <release> bookworm (Debian 12) and trixie (Debian 13), from Debian's archive only:
# kernel, systemd, cloud-init (NoCloud), containerd, and qemu-guest-agent (the tests' way
# into the guest; no network reaches it). kubejoin is NOT in the image: cloud-init installs
# the .deb at first boot. Tests give each VM a qcow2 overlay of these files, so the cache
# stays clean.
#
#   scripts/vm-images.sh [--print-cache] [bookworm|trixie]...
#
# CACHE is $KUBEJOIN_VM_CACHE, else /var/cache/kubejoin-vm. Needs root and Debian's archive.
# Cold: about a minute per release on 2 cores (measured 56 s and 49 s, downloads included);
# warm: instant.
set -euo pipefail

cache=${KUBEJOIN_VM_CACHE:-/var/cache/kubejoin-vm}
if [ "${1:-}" = --print-cache ]; then echo "$cache"; exit 0; fi
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(bookworm trixie)

log() { echo "== vm-images: $*" >&2; }

# qemu and the image tools. This machine may carry qemu-utils from bookworm-backports,
# which breaks bookworm's qemu-system-x86: take both from bookworm (a downgrade of
# qemu-img, which the tests only use to make overlays).
install_tools() {
  local missing=()
  for p in qemu-system-x86 qemu-utils mmdebstrap genisoimage e2fsprogs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  command -v qemu-system-x86_64 >/dev/null || [[ " ${missing[*]} " == *" qemu-system-x86 "* ]] ||
    missing+=(qemu-system-x86)
  [ ${#missing[@]} -eq 0 ] && return
  log "apt-get install ${missing[*]} (about a minute)"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 DEBCONF_NOWARNINGS=yes
  apt-get update -q >/dev/null
  local utils=qemu-utils
  # Read whole before grep -q: under pipefail, grep -q quitting early fails the pipe.
  local utils_policy system_policy
  utils_policy=$(apt-cache policy qemu-utils)
  system_policy=$(apt-cache policy qemu-system-x86)
  if grep -q 'Installed: .*bpo' <<<"$utils_policy" && ! grep -q 'Candidate: .*bpo' <<<"$system_policy"; then
    utils="qemu-utils=$(awk '/Candidate:/ {print $2}' <<<"$system_policy")"
  fi
  apt-get install -y -q --allow-downgrades qemu-system-x86 "$utils" mmdebstrap genisoimage e2fsprogs >/dev/null
}

common=(systemd-sysv udev dbus linux-image-cloud-amd64 cloud-init containerd iproute2 iptables
        kmod ca-certificates procps netbase e2fsprogs locales qemu-guest-agent)

packages_of() {
  case $1 in
    bookworm) echo "${common[*]}" ;;
    trixie) echo "${common[*]} systemd-resolved" ;;
    *) echo "unknown release $1 (bookworm or trixie)" >&2; exit 2 ;;
  esac
}

# Everything that decides the image's contents: a change rebuilds it.
recipe() {
  packages_of "$1"
  sed -n '/^customize()/,/^}/p' "$0"
}

customize() {
  local root=$1 release=$2
  printf 'LABEL=root / ext4 defaults 0 1\nLABEL=swap none swap sw 0 0\n' > "$root/etc/fstab"
  # systemd-networkd, DHCP on qemu's user-mode network (ifupdown would wait for a name
  # that does not exist).
  mkdir -p "$root/etc/systemd/network"
  printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$root/etc/systemd/network/10-dhcp.network"
  chroot "$root" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
  if [ "$release" = trixie ]; then chroot "$root" systemctl enable systemd-resolved.service >/dev/null 2>&1; fi
  # cloud-init: NoCloud only (a disk labelled cidata), and the network left to networkd.
  mkdir -p "$root/etc/cloud/cloud.cfg.d"
  printf 'datasource_list: [NoCloud, None]\nnetwork: {config: disabled}\n' > "$root/etc/cloud/cloud.cfg.d/90-kubejoin-vm.cfg"
  # Each VM gets its own machine-id at first boot.
  : > "$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  echo "en_US.UTF-8 UTF-8" > "$root/etc/locale.gen"
  chroot "$root" locale-gen >/dev/null 2>&1 || true
  # No root password and no console login are needed: the tests use qemu-guest-agent.
  chroot "$root" apt-get clean
}

build() {
  local release=$1 out=$cache/$1
  local stamp; stamp=$(recipe "$release" | sha256sum | cut -c1-16)
  if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then return; fi
  log "$release: building the image with mmdebstrap from Debian's archive (about a minute)"
  local t; t=$(mktemp -d "$cache/.build-$release.XXXXXX")
  local started=$SECONDS
  # shellcheck disable=SC2046
  mmdebstrap --variant=minbase --components=main \
    --include="$(packages_of "$release" | tr ' ' ',')" \
    "$release" "$t/rootfs" http://deb.debian.org/debian >"$t/mmdebstrap.log" 2>&1 ||
    { tail -n 30 "$t/mmdebstrap.log" >&2; rm -rf "$t"; exit 1; }
  customize "$t/rootfs" "$release"
  chroot "$t/rootfs" dpkg-query -W -f='${Package} ${Version}\n' > "$t/packages.txt"
  cp "$t"/rootfs/boot/vmlinuz-* "$t/vmlinuz"
  cp "$t"/rootfs/boot/initrd.img-* "$t/initrd.img"
  truncate -s 6G "$t/root.img"
  mkfs.ext4 -q -L root -d "$t/rootfs" "$t/root.img"
  truncate -s 512M "$t/swap.img"
  chmod 0600 "$t/swap.img"
  # A whole virtual disk in the guest: the file's holes do not matter there.
  mkswap -L swap "$t/swap.img" >/dev/null 2>&1
  rm -rf "$t/rootfs"
  echo "$stamp" > "$t/stamp"
  rm -rf "$out"
  mv "$t" "$out"
  log "$release: done in $((SECONDS - started)) s: $(grep -E '^(linux-image-[0-9]|systemd |containerd |cloud-init )' "$out/packages.txt" | tr '\n' ' ')"
}

install_tools
mkdir -p "$cache"
for r in "${wanted[@]}"; do build "$r"; done
