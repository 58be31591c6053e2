#!/usr/bin/env bash
# Runs Miri (the nightly toolchain's interpreter that detects undefined
# behaviour: out-of-bounds and use-after-free accesses, data races, invalid
# pointer provenance) on the unit tests that need no system call: mamba's
# pool bookkeeping (size classes, arena, per-thread caches, on a heap-backed
# test provider) and transforms' copy kernels on small arrays.
#
#   bash scripts/miri.sh            # both
#   bash scripts/miri.sh mamba      # one crate
#
# Exit status: 0 clean, 1 when Miri reports a problem, 3 when Miri is not
# installed for the nightly toolchain (`rustup +nightly component add miri`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "miri: Miri is unavailable (cargo +nightly miri does not run)." >&2
  echo "miri: install it with 'rustup +nightly component add miri rust-src'." >&2
  exit 3
fi
which=${1:-all}
# Ints cast to pointers are how the pool hands out addresses (the
# providers give back addresses, possibly of device memory).
export MIRIFLAGS=${MIRIFLAGS:-"-Zmiri-permissive-provenance -Zmiri-disable-isolation"}
start=$(date +%s)
status=0
if [ "$which" = all ] || [ "$which" = mamba ]; then
  cargo +nightly miri test -p mamba --lib pool:: -- --skip gpu:: || status=1
fi
if [ "$which" = all ] || [ "$which" = transforms ]; then
  cargo +nightly miri test -p mamba-transforms --lib kernels:: || status=1
fi
echo "miri: done in $(( $(date +%s) - start )) s, status $status"
exit "$status"
