#!/usr/bin/env bash
# Makes signed package repositories from the packages packaging/build.sh built:
#   OUT/apt/   an apt repository: pool/main/, dists/stable/{Release,InRelease,Release.gpg},
#              dists/stable/main/binary-amd64/Packages(.gz) (apt-ftparchive, from apt-utils)
#   OUT/rpm/   a dnf/yum repository: the .rpm, repodata/ (createrepo_c) and
#              repodata/repomd.xml.asc
#   OUT/kubejoin-archive-keyring.asc  the public key both are signed with (ASCII armour),
#              and .gpg, the same key as apt's signed-by wants it (binary)
#
#   packaging/repo.sh [--key KEYID] [--test-key] OUT
#
# --key KEYID   sign with that secret key of your GnuPG keyring (GNUPGHOME as usual)
# --test-key    make a key for tests in OUT/gnupg (no passphrase: never publish it) and sign
#               with it; it is made again only when missing
# Publish OUT over HTTPS (any static web server). A worker trusts it through the key:
# `kubejoin token create --output cloud-init --repo URL --repo-key OUT/kubejoin-archive-keyring.asc`
# prints the user-data that does (apt: sources with signed-by; yum_repos with gpgcheck).
set -euo pipefail
cd "$(dirname "$0")/.."

key=""
test_key=false
while [ $# -gt 1 ]; do
  case $1 in
    --key) key=$2; shift 2 ;;
    --test-key) test_key=true; shift ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--key KEYID] [--test-key] OUT" >&2; exit 2; }
out=$(realpath -m "$1")
for tool in apt-ftparchive createrepo_c gpg; do
  command -v "$tool" >/dev/null || { echo "repo.sh: $tool is missing: apt-get install apt-utils createrepo-c gpg" >&2; exit 2; }
done
deb=$(ls -t target/debian/*.deb 2>/dev/null | head -n1 || true)
rpm=$(ls -t target/generate-rpm/*.rpm 2>/dev/null | head -n1 || true)
[ -n "$deb" ] && [ -n "$rpm" ] || { echo "repo.sh: no packages under target/: run bash packaging/build.sh first" >&2; exit 2; }

if $test_key; then
  export GNUPGHOME=$out/gnupg
  if [ ! -s "$GNUPGHOME/key-id" ]; then
    mkdir -p "$GNUPGHOME" && chmod 700 "$GNUPGHOME"
    echo "== repo: a test key in $GNUPGHOME (no passphrase: for tests only)"
    gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
      --quick-gen-key "kubejoin test repository <kubejoin-test@example.invalid>" ed25519 sign 1y
    gpg --batch --list-secret-keys --with-colons | awk -F: '/^fpr/ {print $10; exit}' >"$GNUPGHOME/key-id"
  fi
  key=$(cat "$GNUPGHOME/key-id")
fi
[ -n "$key" ] || { echo "repo.sh: give --key KEYID (a secret key of your keyring) or --test-key" >&2; exit 2; }
sign() { gpg --batch --yes --quiet --pinentry-mode loopback --passphrase '' --local-user "$key" "$@"; }

echo "== repo: $deb and $rpm into $out, signed by $key"
rm -rf "$out/apt" "$out/rpm"
mkdir -p "$out/apt/pool/main" "$out/apt/dists/stable/main/binary-amd64" "$out/rpm"

# apt: the pool, the index, the Release file with its hashes, then its two signatures.
cp "$deb" "$out/apt/pool/main/"
(
  cd "$out/apt"
  apt-ftparchive packages pool/main >dists/stable/main/binary-amd64/Packages
  gzip -9nk dists/stable/main/binary-amd64/Packages
  apt-ftparchive \
    -o APT::FTPArchive::Release::Origin=kubejoin \
    -o APT::FTPArchive::Release::Label=kubejoin \
    -o APT::FTPArchive::Release::Suite=stable \
    -o APT::FTPArchive::Release::Codename=stable \
    -o APT::FTPArchive::Release::Architectures=amd64 \
    -o APT::FTPArchive::Release::Components=main \
    release dists/stable >dists/stable/Release
)
sign --clearsign --output "$out/apt/dists/stable/InRelease" "$out/apt/dists/stable/Release"
sign --detach-sign --armor --output "$out/apt/dists/stable/Release.gpg" "$out/apt/dists/stable/Release"

# dnf: the package, its metadata, and the metadata's detached signature (repo_gpgcheck).
cp "$rpm" "$out/rpm/"
createrepo_c --quiet "$out/rpm"
sign --detach-sign --armor --output "$out/rpm/repodata/repomd.xml.asc" "$out/rpm/repodata/repomd.xml"

gpg --batch --yes --armor --export "$key" >"$out/kubejoin-archive-keyring.asc"
gpg --batch --yes --export "$key" >"$out/kubejoin-archive-keyring.gpg"
cp "$out/kubejoin-archive-keyring.asc" "$out/rpm/RPM-GPG-KEY-kubejoin"
echo "== repo: $out/apt (deb [signed-by=/etc/apt/keyrings/kubejoin.gpg] URL/apt stable main)"
echo "== repo: $out/rpm (baseurl=URL/rpm, gpgkey=URL/rpm/RPM-GPG-KEY-kubejoin)"
# The test key's agent ends with the script (its keyring stays in OUT/gnupg).
if $test_key; then gpgconf --kill all; fi
