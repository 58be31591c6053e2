#!/usr/bin/env bash
# Builds and runs the GPU tests and the GPU benchmark, and prints their results.
#
#   bash scripts/gpu-check.sh                 build here, then run here (needs an NVIDIA GPU)
#   bash scripts/gpu-check.sh --bundle DIR    build here only: the test binaries, the benchmark
#                                             and DIR/run.sh, for a GPU node without a Rust toolchain
#   bash DIR/run.sh                           run a bundle on the GPU node
#
# The GPU tests are the test binaries of mamba (its unit tests and every
# `tests/gpu*.rs`), gpu-kernels and the sirius example; each GPU test prints
# "skipped: ..." and passes where no GPU is found, so on a machine without one
# this script says so instead of failing. The benchmark is `compare gpu`.
# The bundle needs libhwloc.so.15 on the GPU node (Debian/Ubuntu: libhwloc15).
set -euo pipefail
cd "$(dirname "$0")/.."

bundle=""
if [ "${1:-}" = "--bundle" ]; then
  bundle="${2:?--bundle needs a directory}"
fi

[ -n "$bundle" ] || bash scripts/setup.sh

# Test binaries of the crates that hold GPU code, in the test profile
# (debug assertions on), stripped when bundled.
mamba_tests=(--lib)
for t in mamba/tests/gpu*.rs; do
  [ -e "$t" ] && mamba_tests+=(--test "$(basename "$t" .rs)")
done
selections=("-p mamba ${mamba_tests[*]}" "-p mamba-gpu-kernels --lib --tests")
[ -d examples/sirius/tests ] && selections+=("-p sirius --lib --tests")
tests=()
for selection in "${selections[@]}"; do
  # shellcheck disable=SC2086 # each selection is a list of cargo arguments
  mapfile -t -O "${#tests[@]}" tests < <(cargo test --locked --no-run --message-format=json $selection |
    grep '"test":true' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
done
cargo build --locked --release -p mamba-benches --bin compare
compare=target/release/compare

if [ -n "$bundle" ]; then
  mkdir -p "$bundle"
  rm -f "$bundle"/*.test "$bundle"/compare
  for t in "${tests[@]}"; do
    name=$(basename "$t")
    cp "$t" "$bundle/${name%-*}.test"
  done
  cp "$compare" "$bundle/compare"
  strip "$bundle"/*.test "$bundle/compare"
  cat >"$bundle/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs a bundle made by `scripts/gpu-check.sh --bundle`: every test binary,
# then the GPU benchmark. Exit status: non-zero when a test failed.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
status=0
for t in "$here"/*.test; do
  echo "== $(basename "$t" .test)"
  "$t" --test-threads 4 --nocapture 2>&1 || status=1
done
echo "== compare gpu"
"$here/compare" gpu || status=1
exit $status
EOF
  chmod +x "$bundle/run.sh"
  du -sh "$bundle"
  exit 0
fi

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU found (nvidia-smi); the GPU tests would only skip."
  exit 0
fi
nvidia-smi -L
status=0
for t in "${tests[@]}"; do
  echo "== $(basename "$t")"
  "$t" --test-threads 4 || status=1
done
echo "== compare gpu"
"$compare" gpu || status=1
exit $status
