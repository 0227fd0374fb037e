#!/usr/bin/env bash
# Builds the .deb and the .rpm from one release build, into target/debian/ and
# target/generate-rpm/. Needs cargo-deb and cargo-generate-rpm (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== packaging: the release build, man pages and completions, then the .deb and the .rpm (about 5 minutes cold on 2 cores, 1.5 after a change)"
cargo build --release --locked -p kubejoin
out=target/packaging
mkdir -p "$out"
bin=target/release/kubejoin
rm -rf "$out/man"
"$bin" manpage --dir "$out/man"   # kubejoin(8), one page per command, kubejoin-config.toml(5)
gzip -9n "$out"/man/*.8 "$out"/man/*.5
"$bin" completions bash >"$out/kubejoin.bash"
"$bin" completions zsh >"$out/_kubejoin"
"$bin" completions fish >"$out/kubejoin.fish"

# Both tools print the package's path; it is said once, below.
cargo deb --no-build --locked -p kubejoin >/dev/null
cargo generate-rpm -p . >/dev/null
for f in "$bin" target/debian/*.deb target/generate-rpm/*.rpm; do
  echo "== packaging: $f ($(stat -c %s "$f") bytes)"
done
