#!/usr/bin/env bash
# Kubernetes' own end-to-end specs on kubejoin workers (tests/workloads.rs, the test CI
# runs, on its own and with its output): a v1.36.2 cluster with kube-scheduler, kube-proxy
# and a DNS server in a network namespace of the test's own, two workers on one L2 segment
# with it, each joined by `kubejoin run`, a pod network with host-gw routes between them,
# and e2e.test (built from the same tree) run on the conformance list, whose agnhost image
# is built here from test/images/agnhost. e2e.test's JUnit report goes to
# target/conformance/testbed-v1.36.2/junit_01.xml, its log beside it; one line per spec
# (`passed: ...`, `failed: ...`) for the README. About 8 minutes on 2 cores.
#
#   scripts/conformance.sh [SUBSTRING]        only the list's specs whose name contains it
#   scripts/conformance.sh --vm [SUBSTRING]   the same on two worker VMs instead of testbeds:
#       Debian 12 and 13 (scripts/vm-images.sh), each from `kubejoin token create --output
#       cloud-init`, the .deb of packaging/build.sh; report under target/conformance/vm-v1.36.2/.
#       About 30 minutes under emulation.
#
# Needs: scripts/real-kubernetes.sh etcd 1.36 workloads (run here when missing), and
# install-deps.sh's containernetworking-plugins, busybox-static and bind9-dnsutils.
set -euo pipefail
cd "$(dirname "$0")/.."

test=kubejoin_workers_run_the_clusters_pods
report=testbed-v1.36.2
ignored=()
if [ "${1:-}" = --vm ]; then
  shift
  test=kubejoin_worker_vms_pass_kubernetes_own_specs
  report=vm-v1.36.2
  ignored=(--ignored)
  bash scripts/vm-images.sh bookworm trixie
  ls target/debian/*.deb >/dev/null 2>&1 || bash packaging/build.sh
fi
bash scripts/real-kubernetes.sh etcd 1.36 workloads
export KUBEJOIN_CONFORMANCE_FOCUS=${1:-}
mkdir -p target/conformance
log=target/conformance/conformance-$(date +%Y%m%d-%H%M%S).log
echo "== conformance: full log in $log"
started=$SECONDS
status=0
cargo test --locked --test workloads "$test" -- --nocapture "${ignored[@]}" \
  >"$log" 2>&1 || status=$?
grep -E '^  (passed|failed|skipped|timedout|panicked|interrupted|aborted|left out): |^worker-[a-z]+ \([a-z]+\): ' "$log" || true
[ $status -eq 0 ] || grep -E 'e2e.test: [0-9]+ of [0-9]+ specs ran' "$log" || true
echo "== conformance: $(( (SECONDS - started) / 60 )) minutes, report: target/conformance/$report/"
exit $status
