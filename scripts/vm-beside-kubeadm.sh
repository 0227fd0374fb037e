#!/usr/bin/env bash
# Worker VMs beside kubeadm: the same Debian image and the same real v1.36.2 control plane
# (given kubeadm's objects by `kubeadm init phase`), one worker joined by kubejoin from
# `kubejoin token create --output cloud-init`, one by `kubeadm join` v1.36.2 following
# kubeadm's install guide, side by side (tests/vm.rs beside_kubeadm), with the same pod
# network. Prints, from power-on, Node registered, Node Ready and the first pod the cluster
# created Running for each, and what each node ends up with; the README records a run.
#
#   scripts/vm-beside-kubeadm.sh          KUBEJOIN_VM_RELEASE=bookworm|trixie (bookworm)
#
# Builds kubeadm v1.36.2 once (about 4 minutes), the images and the package if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/real-kubernetes.sh etcd 1.36 kubeadm-1.36
bash scripts/vm-images.sh
[ -n "$(ls target/debian/*.deb 2>/dev/null)" ] || bash packaging/build.sh
log=target/vm-beside-kubeadm-$(date -u +%Y%m%d-%H%M%S).log
echo "== tests/vm.rs beside_kubeadm, log in $log"
cargo test --locked --test vm beside_kubeadm -- --ignored --nocapture 2>&1 | tee "$log"
