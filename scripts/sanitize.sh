#!/usr/bin/env bash
# Runs the test suites of mamba, transforms and cdo (unit and integration
# tests; not doc tests) under AddressSanitizer, with LeakSanitizer at exit,
# built by the nightly toolchain into target/asan (so the normal build is
# untouched).
#
#   bash scripts/sanitize.sh                  # mamba, transforms, cdo
#   bash scripts/sanitize.sh -p cdo --test ipc_protocol
#
# Arguments replace the default package selection. Exit status: that of the
# test run; 2 when the nightly toolchain is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "sanitize: the nightly toolchain is missing (cargo +nightly); -Zsanitizer needs it." >&2
  exit 2
fi
bash scripts/setup.sh
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-p mamba -p mamba-transforms -p cdo --lib --tests --bins --no-fail-fast)
# The explicit target keeps build scripts and proc macros (host code) out of
# the instrumentation.
export RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes ${RUSTFLAGS:-}"
export ASAN_OPTIONS=${ASAN_OPTIONS:-"detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=0"}
export LSAN_OPTIONS=${LSAN_OPTIONS:-"report_objects=1"}
start=$(date +%s)
set +e
cargo +nightly test --target x86_64-unknown-linux-gnu --target-dir target/asan "${args[@]}"
status=$?
set -e
echo "sanitize: done in $(( $(date +%s) - start )) s, status $status"
exit "$status"
