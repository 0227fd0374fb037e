#!/usr/bin/env bash
# Installs what kubejoin's build, tests, packages and demo need on Debian 12, as root:
# the testbed's packages (dbus iptables docker.io cloud-init; installing docker.io does
# not start it where policy-rc.d forbids, and the tests never use the host's docker),
# the package checkers, gcc for ring, and cargo-deb, cargo-generate-rpm and cargo-fuzz.
# Used by .ci/run and demo/run.sh.
set -euo pipefail

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

packages=(gcc dbus iptables docker.io cloud-init lintian rpm rpmlint)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi

for tool in cargo-deb cargo-generate-rpm cargo-fuzz; do
  command -v "$tool" >/dev/null || { echo "== cargo install $tool"; cargo install --locked --quiet "$tool"; }
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
