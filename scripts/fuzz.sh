#!/usr/bin/env bash
# Fuzzes kubejoin's parsers of untrusted input with cargo fuzz (libFuzzer), each target for
# a set number of executions, and prints one line per target: executions, seconds, result.
#
#   bash scripts/fuzz.sh [RUNS] [TARGET...]      RUNS default 100000; all targets by default
#
# The corpora start from the project's fixtures (tests/fixtures: Kubernetes' own test
# vectors, a real kube-apiserver's answers, the test PKI, the example configuration) and
# grow in target/fuzz-corpus/<target>; a crash is kept in fuzz/artifacts/<target>. With a
# nightly toolchain the targets run under AddressSanitizer (FUZZ_SANITIZER=none for speed);
# without one, stable builds them (RUSTC_BOOTSTRAP for libFuzzer's flags) with none. A crash, a panic, a
# timeout (a run over 10 s: a hang) or running out of memory (2 GB) fails the script. Inputs are
# up to FUZZ_MAX_LEN bytes (16384: four times a real cluster-info).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-100000}
shift || true

command -v cargo-fuzz >/dev/null || { echo "== cargo install cargo-fuzz (built from crates.io: a few minutes on 2 cores, once)"; cargo install --locked cargo-fuzz; }

if rustup run nightly rustc --version >/dev/null 2>&1; then
  sanitizer=${FUZZ_SANITIZER:-address}
  build=(cargo +nightly fuzz build -O -s "$sanitizer")
else
  export RUSTC_BOOTSTRAP=1
  sanitizer=none
  build=(cargo fuzz build -O -s none)
fi
build+=(--target-dir "target/$sanitizer")

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

echo "== ${build[*]} (sanitizer: $sanitizer)"
(cd fuzz && "${build[@]}")
bin="$root/fuzz/target/$sanitizer/x86_64-unknown-linux-gnu/release"

# Seeds from the fixtures, per target.
# Per invocation, so that two invocations (one per core) can run side by side.
seeds="$root/target/fuzz-seeds/$$"
rm -rf "$seeds"
trap 'rm -rf "$seeds"' EXIT
python3 - "$root/tests/fixtures" "$root/packaging" "$seeds" <<'PY'
import base64, glob, json, os, re, sys
fixtures, packaging, out = sys.argv[1:4]
def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
for path in sorted(glob.glob(f"{fixtures}/real-apiserver/*.json")):
    name = os.path.basename(path)
    body = open(path, "rb").read()
    put("cluster_info", name, body)
    try:
        doc = json.loads(body)
    except ValueError:
        continue
    data = doc.get("data") if isinstance(doc, dict) else None
    for key, value in (data if isinstance(data, dict) else {}).items():
        if key == "kubeconfig":
            put("cluster_info_signed", name, value)
            put("kubeconfig", name, value)
        elif key.startswith("jws-kubeconfig-"):
            put("jws", f"{name}-{key}", value)
for path in sorted(glob.glob(f"{fixtures}/real-apiserver/*.headers")):
    for line in open(path):
        k, _, v = line.partition(":")
        if k.strip().lower() in ("date", "retry-after"):
            put("http_headers", f"{os.path.basename(path)}-{k.strip().lower()}", v.strip())
for path in sorted(glob.glob(f"{fixtures}/vectors/*.json")):
    vec = json.load(open(path))
    for i, s in enumerate(strings(vec)):
        name = f"{os.path.basename(path)}-{i}"
        if "apiVersion" in s and "clusters" in s:
            put("kubeconfig", name, s)
            put("cluster_info_signed", name, s)
        if re.fullmatch(r"[A-Za-z0-9_-]*\.\.?[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*)?", s) and "." in s:
            put("jws", name, s)
            put("token", name, s)
        if len(s) < 100:
            put("token", name, s)
            put("pin", name, s)
        if "BEGIN CERTIFICATE" in s:
            put("x509", name, s)
for path in sorted(glob.glob(f"{fixtures}/pki/*.crt") + glob.glob(f"{fixtures}/pki/*.pem")):
    pem = open(path).read()
    name = os.path.basename(path)
    put("x509", name, pem)
    for j, b64 in enumerate(re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)):
        put("x509", f"{name}-{j}.der", base64.b64decode("".join(b64.split())))
put("config", "config.toml.example", open(f"{packaging}/config.toml.example").read())
for i, d in enumerate(["30s", "5m", "1h30m", "250ms", "0s"]):
    put("config", f"duration-{i}", d)
for i, t in enumerate(["2036-11-26T05:26:29Z", "Tue, 01 Dec 2026 14:00:00 GMT", "120"]):
    put("http_headers", f"time-{i}", t)
PY

status=0
printf '%-22s %12s %9s %10s  %s\n' target executions seconds "execs/s" result
for t in "${targets[@]}"; do
  corpus="$root/target/fuzz-corpus/$t"
  artifacts="$root/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts" "$seeds/$t"
  log="$root/target/fuzz-$t.log"
  start=$(date +%s.%N)
  if "$bin/$t" -runs="$runs" -timeout=10 -rss_limit_mb=2048 -max_len="${FUZZ_MAX_LEN:-16384}" \
      -artifact_prefix="$artifacts/" "$corpus" "$seeds/$t" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED: $(grep -m1 -E 'ERROR|panicked|Timeout|out-of-memory' "$log" || tail -1 "$log") (log: $log)"
    status=1
  fi
  done_runs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
  awk -v t="$t" -v n="$done_runs" -v s0="$start" -v s1="$(date +%s.%N)" -v r="$result" \
    'BEGIN { s = s1 - s0; printf "%-22s %12d %9.0f %10.0f  %s\n", t, n, s, n / (s + 0.001), r }' 
done
exit $status
