#!/usr/bin/env bash
# First boot and reboot of worker VMs (tests/vm.rs, first_boot_and_reboot_with_each_release)
# with another Kubernetes than the sample's v1.36.2: its control plane and its kubelet in
# the guests, on cgroup v2. One VM per release, two at a time; about 10 minutes under TCG.
# Its `vm-kubelet:` lines go to the README.
#
#   scripts/vm-kubelet.sh [VERSION [RELEASE...]]   (default: 1.20 bookworm trixie)
#
# Needs what the VM tests need: scripts/real-kubernetes.sh VERSION etcd,
# scripts/vm-images.sh and packaging/build.sh (run here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-1.20}
shift || true
[ $# -gt 0 ] && export KUBEJOIN_VM_RELEASES="$*"
case "$version" in
  1.20) export KUBEJOIN_VM_KUBE=v1.20.2 ;;
  1.36) export KUBEJOIN_VM_KUBE=v1.36.2 ;;
  *) echo "usage: $0 [1.20|1.36] [RELEASE...]" >&2; exit 2 ;;
esac
bash scripts/vm-images.sh ${KUBEJOIN_VM_RELEASES:-}
bash scripts/real-kubernetes.sh "$version" etcd
ls target/debian/*.deb >/dev/null 2>&1 || bash packaging/build.sh
log=target/vm-kubelet-$version-$(date +%Y%m%d-%H%M%S).log
echo "== vm-kubelet: full log in $log"
started=$SECONDS
cargo test --locked --test vm first_boot_and_reboot_with_each_release -- --ignored --nocapture 2>&1 |
  tee "$log" | grep --line-buffered '^vm-kubelet:'
echo "== vm-kubelet: $(( (SECONDS - started) / 60 )) minutes"
