#!/usr/bin/env bash
# The whole power-cut matrix on worker VMs (tests/vm.rs, power_cut_matrix): for each
# release, a reference first boot that names every fail point of `kubejoin run`, then a
# VM per fail point whose power is cut there (sysrq b: no sync), and cuts at random
# moments of the first boot (qemu killed); each VM boots again and must converge with no
# torn file. Two VMs at a time; hours under TCG. Its summary lines go to the README.
#
#   scripts/vm-matrix.sh [RELEASE...]      (default: bookworm trixie)
#   KUBEJOIN_VM_POINTS=0,5,9  only those fail points (by number in the reference's list)
#   KUBEJOIN_VM_RANDOM=4      how many random cuts per release
#
# Needs what the VM tests need: scripts/real-kubernetes.sh 1.36 etcd,
# scripts/vm-images.sh and packaging/build.sh (run here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -gt 0 ] && export KUBEJOIN_VM_RELEASES="$*"
bash scripts/vm-images.sh ${KUBEJOIN_VM_RELEASES:-}
bash scripts/real-kubernetes.sh 1.36 etcd
ls target/debian/*.deb >/dev/null 2>&1 || bash packaging/build.sh
log=target/vm-matrix-$(date +%Y%m%d-%H%M%S).log
echo "== vm-matrix: full log in $log"
started=$SECONDS
cargo test --locked --test vm power_cut_matrix -- --ignored --nocapture 2>&1 | tee "$log" | grep --line-buffered '^vm-matrix:'
echo "== vm-matrix: $(( (SECONDS - started) / 60 )) minutes"
