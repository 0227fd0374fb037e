#!/usr/bin/env bash
# Installs what kubejoin needs on Debian 12, as root, and says what each step is as it starts:
#   install-deps.sh demo   what the quick-start demo needs: gcc (for ring), and the
#                          testbed's packages dbus iptables docker.io cloud-init (installing
#                          docker.io does not start it where policy-rc.d forbids; the tests
#                          never use the machine's docker). From Debian's archive.
#   install-deps.sh [all]  that, and what the tests, packages and CI need: rustfmt and
#                          clippy (rustup), lintian rpm rpmlint, and for the workload tests
#                          containernetworking-plugins (the pod network's CNI plugins, in
#                          /usr/lib/cni), busybox-static, netcat-openbsd, curl and
#                          bind9-dnsutils (the programs of the e2e busybox, agnhost and
#                          glibc-dns-testing images), apt-utils, createrepo-c and gnupg
#                          (packaging/repo.sh) (Debian's archive), cargo-deb
#                          and cargo-generate-rpm (built from crates.io), and this machine's
#                          systemd-resolved .deb for a testbed test (Debian's archive).
# scripts/fuzz.sh installs cargo-fuzz itself. Used by demo/run.sh (demo) and .ci/run (all).
set -euo pipefail

what=${1:-all}
case "$what" in demo|all) ;; *) echo "usage: $0 [demo|all]" >&2; exit 2 ;; esac

packages=(gcc dbus iptables docker.io cloud-init)
[ "$what" = all ] && packages+=(lintian rpm rpmlint containernetworking-plugins busybox-static netcat-openbsd curl bind9-dnsutils apt-utils createrepo-c gnupg)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 DEBCONF_NOWARNINGS=yes
  apt-get update -q
  # What apt will do, counted before it does it: the packages named pull in many more.
  plan=$(apt-get install -s "${missing[@]}" 2>/dev/null | grep -c '^Inst ' || true)
  echo "== apt-get install ${missing[*]}: $plan packages installed or upgraded, with what they depend on (from Debian's archive: about a minute)"
  # Where a policy-rc.d forbids starting services (containers, chroots), or no init tells
  # the runlevel, dpkg says "invoke-rc.d: policy-rc.d denied execution of start." or
  # "invoke-rc.d: could not determine current runlevel" for docker, containerd and dbus:
  # the tests never use this machine's, so those lines are left out.
  apt-get install -y -q "${missing[@]}" 2>&1 |
    { grep -v -e '^invoke-rc.d: policy-rc.d denied execution of' -e '^invoke-rc.d: could not determine current runlevel' || true; }
fi
[ "$what" = demo ] && exit 0

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || {
    echo "== rustup component add $component"
    rustup component add "$component"
  }
done

# Built from source from crates.io, once; cargo shows each crate it compiles. Measured on a
# fresh, otherwise idle 2-core machine: cargo-generate-rpm 161 s, cargo-deb 56 s (up to 2.5
# times as long with other work beside them).
declare -A minutes=([cargo-deb]=1 [cargo-generate-rpm]=3)
for tool in cargo-deb cargo-generate-rpm; do
  command -v "$tool" >/dev/null && continue
  echo "== cargo install $tool (for packaging/build.sh; built from crates.io: about ${minutes[$tool]} min on 2 cores, once)"
  cargo install --locked "$tool"
done

# systemd-resolved for a testbed (tests/run.rs: kubelet's resolvConf under it), as a .deb of
# this machine's systemd version, installed only inside testbeds: installing it here would
# take over this machine's /etc/resolv.conf. Cached in $KUBEJOIN_DEB_CACHE.
debs=${KUBEJOIN_DEB_CACHE:-/var/cache/kubejoin-debs}
systemd_version=$(dpkg-query -W -f='${Version}' systemd)
if ! ls "$debs"/systemd-resolved_"${systemd_version/:/%3a}"_*.deb >/dev/null 2>&1; then
  echo "== apt-get download systemd-resolved=$systemd_version into $debs"
  mkdir -p "$debs"
  (cd "$debs" && apt-get download -q "systemd-resolved=$systemd_version" 2>&1 | grep -v '^W: Download is performed unsandboxed') ||
    echo "== systemd-resolved $systemd_version is not in the archive: its testbed test will skip, saying so"
fi
