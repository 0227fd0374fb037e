#!/usr/bin/env bash
# The quick-start demo. As root it first installs what it and the tests need
# (scripts/install-deps.sh). Part 1: kubejoin discovers a cluster served by the bundled
# kube-apiserver double on loopback, writes the bootstrap kubeconfig, then refuses an
# impostor. Part 2 (as root): the whole join, `kubejoin run` under kubejoin.service, in a
# testbed — a private copy of this machine booted by the real systemd in namespaces, with
# docker running and swap on — each phase with its time, and the state it leaves.
# Part 3 (as root; builds etcd and Kubernetes v1.20.2 with scripts/real-kubernetes.sh the
# first time): the control plane's half and the join against a REAL control plane that
# starts bare: `kubejoin cluster prepare` creates the seed's objects, `kubejoin token
# create` mints the worker's configuration, `kubejoin doctor` on the worker says a join
# would succeed, and the real kubelet joins, ending with the node registered.
# Everything stays on loopback, in a temporary directory or in the testbed; nothing on
# the host changes.
set -euo pipefail
cd "$(dirname "$0")/.."

# As root: install what the demo and the tests need (scripts/install-deps.sh).
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install-deps.sh demo
fi
echo "== building kubejoin and the API server double (cargo build: a few minutes the first time, seconds after)"

cargo build --quiet --workspace --bins
bin=target/debug
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts the double with the given flags on a free port; prints its URL.
start_double() {
  local log="$work/double-$#-$RANDOM.log"
  "$bin/apiserver-double" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$log"; then sed -n 's/^listening on //p' "$log"; return; fi
    sleep 0.05
  done
  echo "the API server double did not start:" >&2; cat "$log" >&2; exit 1
}

# The cluster: the real captured kube-apiserver's CA and cluster-info; its bootstrap
# signer signs for token 0ve35r one second after start (as a real one lags).
token=0ve35r.l8o5vx90ot05g17z
pin=$("$bin/apiserver-double" --print-pin)
url=$(start_double --token "$token" --sign-after 1)

# What cloud-init would write: the config and the token, both mode 0600.
mkdir -p "$work/etc/kubejoin"
( umask 077
  printf '%s\n' "$token" >"$work/etc/kubejoin/token"
  cat >"$work/etc/kubejoin/config.toml" <<TOML
[cluster]
server = "$url"
token_file = "$work/etc/kubejoin/token"
ca_cert_hashes = ["$pin"]
discovery_timeout = "30s"
TOML
)
kubeconfig="$work/var/lib/kubelet/bootstrap-kubeconfig"

echo "== kubejoin discover against $url (CA pin $pin)"
echo "   (the double's bootstrap signer signs cluster-info a second late, as a real one lags a"
echo "   new token: the warning \"cluster-info not usable yet\" and a retry are expected)"
"$bin/kubejoin" discover --config "$work/etc/kubejoin/config.toml" --write-kubeconfig "$kubeconfig"
echo
echo "== $(stat -c '%A %n' "$kubeconfig"), token redacted here:"
sed -e 's/^\(    token: [a-z0-9]*\)\..*/\1.<redacted>/' -e 's/\(certificate-authority-data: .\{24\}\).*/\1.../' "$kubeconfig"

echo
echo "== the same against a server that signs cluster-info without knowing the token secret"
forged=$(start_double --token "$token" --forge)
set +e
"$bin/kubejoin" discover --config "$work/etc/kubejoin/config.toml" --server "$forged" \
  --write-kubeconfig "$work/forged-kubeconfig"
code=$?
set -e
echo "== exit status $code (3 = trust failure, never retried); kubeconfig written: $([ -e "$work/forged-kubeconfig" ] && echo yes || echo no)"
[ "$code" -eq 3 ]

echo
if [ "$(id -u)" -ne 0 ]; then
  echo "== part 2 (kubejoin run in a testbed) needs root: sudo bash demo/run.sh"
  exit 0
fi
for tool in dbus-daemon iptables dockerd cloud-init; do
  if ! command -v "$tool" >/dev/null; then
    echo "== part 2 (kubejoin run in a testbed) needs: apt-get install dbus iptables docker.io cloud-init"
    exit 0
  fi
done
# A part of the demo is a test of tests/demo.rs; what it says is the demo, libtest's own
# lines ("running 1 test", its progress dot, "test result: ...") are not.
part() {
  cargo test --quiet --test demo -- --ignored --nocapture --exact "$1" 2>&1 |
    { grep --line-buffered -v -E '^(running [0-9]+ tests?|test result: .*|\.)$' || true; }
}

echo "== part 2: kubejoin run, as kubejoin.service, in a testbed"
part join_a_worker_in_a_testbed

cache=$(bash scripts/real-kubernetes.sh --print-cache)
if [ ! -x "$cache/v1.36.2/kubelet" ] && [ ! -x "$cache/v1.20.2/kubelet" ]; then
  echo
  echo "== part 3 needs a real Kubernetes: building etcd and v1.20.2 once into $cache"
  echo "   (scripts/real-kubernetes.sh: about 6 minutes the first time on 2 cores, cached after)"
  bash scripts/real-kubernetes.sh etcd 1.20
fi
echo
echo "== part 3: the control plane's half and the join with REAL Kubernetes: a bare cluster,"
echo "   kubejoin cluster prepare, kubejoin token create, kubejoin doctor, then the join"
part join_a_worker_to_real_kubernetes
