#!/usr/bin/env bash
# The README's cost figures in one run: `kubejoin discover` beside curl's floor and
# kubeadm's discovery against a real kube-apiserver v1.20.2, alternating, medians of
# ROUNDS (default 7) runs each, then a whole `kubejoin run` with a real kubelet.
#
#   bash scripts/bench.sh            (root; builds what it needs, a few minutes cold)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null; }
}
bash scripts/real-kubernetes.sh etcd 1.20
cargo build --release --locked -p kubejoin
ls -l target/release/kubejoin | awk '{ printf "kubejoin release binary: %.1f MB\n", $5 / 1048576 }'
ls -l "$(bash scripts/real-kubernetes.sh --print-cache)/v1.20.2/kubeadm" | awk '{ printf "kubeadm v1.20.2 binary: %.1f MB\n", $5 / 1048576 }'
KUBEJOIN_TEST_BIN=$PWD/target/release/kubejoin ROUNDS=${ROUNDS:-7} \
  cargo test --locked --test bench -- --ignored --nocapture --test-threads=1 2>&1 |
  grep -v '^20[0-9][0-9]-'
