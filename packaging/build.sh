#!/usr/bin/env bash
# Builds the .deb and the .rpm from one release build, into target/debian/ and
# target/generate-rpm/. Needs cargo-deb and cargo-generate-rpm (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

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

cargo deb --no-build --locked -p kubejoin
cargo generate-rpm -p . 
ls -1 target/debian/*.deb target/generate-rpm/*.rpm
